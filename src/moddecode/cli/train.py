"""`moddecode make-prefs` (preference pairs from the reference policy) and `moddecode train` (f-DPO)."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import run_guarded


def make_prefs_command(
    prompts_file: Path = typer.Argument(..., help="Prompts: JSONL with a 'prompt' field (and 'id'), or one per line."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Folder for samples.jsonl and one <objective>.jsonl of pairs per scorer."),
    scorer: list[str] = typer.Option(..., "--scorer", help="Scorer per objective (repeat): vader, readability, length, conciseness, ..."),
    source: str = typer.Option("smollm2", "--source", help="Reference policy to sample from."),
    k: int = typer.Option(4, "-k", help="Responses sampled per prompt."),
    seed: int = typer.Option(0, help="Sampling seed (each batch uses seed + batch index)."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", "-n"),
    temperature: float = typer.Option(1.0),
    top_p: float = typer.Option(0.95),
    pairs_per_prompt: int = typer.Option(1, help="k-th best vs k-th worst pairs per prompt."),
    margin: list[str] = typer.Option(["0"], help="Keep a pair only if chosen beats rejected by more than this: "
                                     "a number for every objective, or OBJECTIVE=NUMBER (repeat; scorers differ in scale)."),
    style: list[str] = typer.Option([], help="OBJECTIVE=SYSTEM PROMPT (repeat): also answer each prompt once under "
                                    "this system prompt; that objective's pairs come from the plain answers and this one."),
    prompts_per_batch: int = typer.Option(8, help="Prompts decoded together (each with k + styles rows)."),
    limit: int = typer.Option(None, min=1, help="Use only the first N prompts (raise it later to extend the "
                              "same run: finished batches are kept)."),
    engine: str = typer.Option("transformers", help="Decoding engine: transformers, or vllm (for GPUs; needs the "
                               "environment of `bash scripts/setup.sh --vllm`)."),
    engine_option: list[str] = typer.Option([], help="KEY=VALUE for the engine (repeat; JSON values), e.g. "
                                            "gpu_memory_utilization=0.3 for vLLM."),
) -> None:
    """Sample K responses per prompt from the reference policy, score them, write chosen/rejected pairs.

    Interrupt it at any time: running the same command again resumes after the last finished batch."""

    def go():
        from ..train.prefs import make_prefs

        files = make_prefs(source, prompts_file, scorer, out_dir, k=k, seed=seed, max_new_tokens=max_new_tokens,
                           temperature=temperature, top_p=top_p, pairs_per_prompt=pairs_per_prompt,
                           margin=_parse_margins(margin), styles=_parse_named(style, "--style", str),
                           prompts_per_batch=prompts_per_batch, limit=limit, engine=engine,
                           engine_options=_parse_named(engine_option, "--engine-option", _json_or_text))
        for objective, path in files.items():
            count = sum(1 for _ in path.open())
            typer.echo(f"{objective}: {count} pairs -> {path}")

    run_guarded(go)


def _parse_named(items: list[str], option: str, convert) -> dict:
    """{name: converted value} from NAME=VALUE options, with an error naming the bad one."""
    from ..errors import ConfigError
    from .common import split_named

    out = {}
    for name, value in split_named(items, option, f"write OBJECTIVE=VALUE, e.g. {option} conciseness=...").items():
        try:
            out[name] = convert(value)
        except ValueError:
            raise ConfigError(f"{option} {name + '=' + value!r}: {value!r} is not a number") from None
    return out


def _json_or_text(value: str):
    import json

    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def _parse_margins(items: list[str]):
    """One bare number applies to every objective; OBJECTIVE=NUMBER entries set one each."""
    from ..errors import ConfigError

    bare = [item for item in items if "=" not in item]
    if len(bare) > 1:
        raise ConfigError(f"--margin: give at most one bare number (the default), got {bare}")
    margins = _parse_named([item for item in items if "=" in item], "--margin", float)
    if bare:
        try:
            margins["*"] = float(bare[0])
        except ValueError:
            raise ConfigError(f"--margin {bare[0]!r} is not a number") from None
    return margins


def train(
    data: str = typer.Argument(..., help="Pairs JSONL (prompt/chosen/rejected) or, online, a HF dataset name[:split]."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Adapter folder to write (checkpoints in <out>/checkpoints)."),
    objective: str = typer.Option(..., "--objective", help="Objective name, stored in the adapter's moddecode.json."),
    source: str = typer.Option("smollm2", "--source", help="Base model (reference policy)."),
    divergence: str = typer.Option("reverse_kl", "--divergence", "-d", help="reverse_kl, forward_kl, jsd or alpha:<a>."),
    beta: float = typer.Option(0.1, help="Regularisation strength."),
    epochs: float = typer.Option(2.0),
    max_steps: int = typer.Option(-1, help="Stop after this many steps (-1: run the epochs)."),
    learning_rate: float = typer.Option(5e-4, "--lr"),
    batch_size: int = typer.Option(8),
    lora_r: int = typer.Option(8),
    lora_alpha: int = typer.Option(16),
    max_length: int = typer.Option(256, help="Tokens per prompt+response."),
    save_steps: int = typer.Option(10, help="Checkpoint every N steps."),
    seed: int = typer.Option(0),
    overwrite: bool = typer.Option(False, "--overwrite", help="Discard the checkpoints and adapter already in --out (another run's) and train from scratch."),
) -> None:
    """Train one LoRA adapter with f-DPO (TRL). Running the same command again resumes from the last checkpoint;
    a folder holding a different run is refused unless --overwrite."""

    def go():
        from ..train.dpo import TrainSettings, train_dpo

        settings = TrainSettings(source=source, data=data, out_dir=str(out_dir), objective=objective,
                                 divergence=divergence, beta=beta, epochs=epochs, max_steps=max_steps,
                                 learning_rate=learning_rate, batch_size=batch_size, lora_r=lora_r,
                                 lora_alpha=lora_alpha, max_length=max_length, save_steps=save_steps, seed=seed)
        path = train_dpo(settings, overwrite=overwrite)
        typer.echo(f"adapter for {objective!r} -> {path}")

    run_guarded(go)
