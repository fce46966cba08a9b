"""The `moddecode` command line. Errors become one line on stderr and a non-zero exit."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from .errors import ConfigError, ModDecodeError

app = typer.Typer(
    help="Decoding-time multi-objective alignment (MOD): combine policies tuned for different objectives, "
    "weighted per request, with no retraining.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def quiet_libraries() -> None:
    """Keep the terminal for our output: no per-load progress bars or advisory warnings from transformers."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)


def run_guarded(fn):
    """Run fn, turning user errors into one clear line (set MODDECODE_DEBUG=1 for tracebacks)."""
    try:
        quiet_libraries()
        return fn()
    except typer.Exit:
        raise
    except (ModDecodeError, OSError) as exc:
        if os.environ.get("MODDECODE_DEBUG"):
            raise
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except Exception as exc:  # noqa: BLE001 - last resort: still no traceback for users
        if os.environ.get("MODDECODE_DEBUG"):
            raise
        fail(f"unexpected {type(exc).__name__}: {exc} (rerun with MODDECODE_DEBUG=1 for details)", 1)


def parse_weights(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--weights must be comma-separated numbers like 0.3,0.7; got {text!r}") from None


def split_named(values: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"{flag} takes NAME=VALUE (NAME being a --policy name), got {item!r}")
        out[name] = value
    return out


def policy_set_from_flags(policies: list[str], systems: list[str], adapters: list[str],
                          reference: str | None, divergence: str) -> dict:
    """The same dict a YAML policy set holds, built from command-line flags."""
    specs = []
    for i, item in enumerate(policies):
        name, sep, source = item.partition("=")
        if not sep:
            name, source = f"policy{i}", item
        specs.append({"name": name, "source": source})
    names = [s["name"] for s in specs]
    for flag, mapping, key in (("--system", split_named(systems, "--system"), "system_prompt"),
                               ("--adapter", split_named(adapters, "--adapter"), "adapter")):
        for name, value in mapping.items():
            if name not in names:
                raise ConfigError(f"{flag} names policy {name!r}, but the policies are {', '.join(names)}")
            specs[names.index(name)][key] = value
    config = {"policies": specs, "divergence": divergence}
    if reference:
        config["reference"] = {"source": reference}
    return config


def read_prompts(prompts: list[str], prompts_file: Optional[Path]) -> list[str]:
    out = list(prompts)
    if prompts_file is not None:
        text = sys.stdin.read() if str(prompts_file) == "-" else prompts_file.read_text()
        out += [line for line in text.splitlines() if line.strip()]
    if not out:
        raise ConfigError("give at least one prompt (as arguments, or --prompts-file FILE, '-' for stdin)")
    return out


@app.command()
def generate(
    prompts: list[str] = typer.Argument(None, help="Prompts to answer (each one is a user message)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML policy set (policies, reference, divergence)."),
    policy: list[str] = typer.Option([], "--policy", "-p", help="NAME=SOURCE (repeat): HF folder, .gguf file, hub id or 'smollm2'."),
    system: list[str] = typer.Option([], "--system", help="NAME=TEXT: give policy NAME a system prompt (repeat)."),
    adapter: list[str] = typer.Option([], "--adapter", help="NAME=FOLDER: give policy NAME a PEFT LoRA adapter (repeat)."),
    reference: Optional[str] = typer.Option(None, "--reference", help="Reference policy source (needed by jsd, or weights not summing to 1)."),
    weights: Optional[str] = typer.Option(None, "--weights", "-w", help="One weight per policy, e.g. 0.3,0.7 (default: the policy set's, else equal)."),
    divergence: Optional[str] = typer.Option(None, "--divergence", "-d", help="reverse_kl (default), forward_kl, jsd or alpha:<a>; overrides the policy set's."),
    strategy: Optional[str] = typer.Option(None, "--strategy", "-s", help="greedy (default), sample or beam."),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", "-n", help="Stop after this many tokens (default 128)."),
    temperature: Optional[float] = typer.Option(None, help="Sampling temperature (strategy sample; default 1)."),
    top_k: Optional[int] = typer.Option(None, help="Sample among the k best tokens only."),
    top_p: Optional[float] = typer.Option(None, help="Nucleus sampling mass."),
    seed: Optional[int] = typer.Option(None, help="Seed for reproducible sampling."),
    num_beams: Optional[int] = typer.Option(None, help="Beams (strategy beam; default 4)."),
    scope: Optional[str] = typer.Option(None, help="sequence (default): score whole prefixes (Eq. 6); token: next token only."),
    stop: list[str] = typer.Option([], "--stop", help="Stop string (repeat)."),
    prompts_file: Optional[Path] = typer.Option(None, "--prompts-file", help="File with one prompt per line ('-' = stdin)."),
    stream: bool = typer.Option(False, "--stream", help="Print text as it is decoded."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per prompt."),
) -> None:
    """Answer prompts with several policies combined under one weighting."""

    def go():
        from .config import load_policy_set

        if config is None and not policy:
            raise ConfigError("give policies with --config FILE.yaml or --policy NAME=SOURCE (e.g. --policy a=smollm2)")
        if config is not None and (policy or system or adapter or reference):
            raise ConfigError("--config holds the policies: --policy, --system, --adapter and --reference go in the "
                              "YAML file (policies: [...], reference: {...}), not on the command line with it")
        spec = str(config) if config is not None else policy_set_from_flags(policy, system, adapter, reference,
                                                                             divergence or "reverse_kl")
        mod, meta = load_policy_set(spec)
        prompt_list = read_prompts(prompts or [], prompts_file)
        w = parse_weights(weights) if weights else meta.default_weights
        # the policy set's decoding defaults (its divergence included), overridden by the flags given
        decoding = meta.decoding.merged(strategy=strategy, max_new_tokens=max_new_tokens, temperature=temperature,
                                        top_k=top_k, top_p=top_p, seed=seed, num_beams=num_beams, scope=scope,
                                        stop=stop or None, divergence=divergence)
        if stream:
            if as_json:
                raise ConfigError("--stream and --json do not combine; pick one")
            for i, prompt in enumerate(prompt_list):
                if len(prompt_list) > 1:
                    typer.echo(f"\n### {prompt}")
                for delta in mod.stream(prompt, w, decoding):
                    typer.echo(delta.text, nl=False)
                typer.echo()
            return
        results = mod.generate(prompt_list, w, decoding, return_diagnostics=True)
        for prompt, result in zip(prompt_list, results):
            if as_json:
                typer.echo(json.dumps({"prompt": prompt, "weights": w, "divergence": decoding.as_mapping()["divergence"],
                                       "policies": mod.names, "text": result.text,
                                       "finish_reason": result.finish_reason, "num_tokens": len(result.token_ids)}))
            elif len(prompt_list) > 1:
                typer.echo(f"### {prompt}\n{result.text}\n")
            else:
                typer.echo(result.text)

    run_guarded(go)


@app.command()
def demo(
    max_new_tokens: int = typer.Option(48, "--max-new-tokens", "-n", help="Tokens per response."),
    prompt: list[str] = typer.Option([], "--prompt", help="Prompt to use instead of the built-in ones (repeat)."),
    weights: list[str] = typer.Option([], "--weights", "-w", help="A weighting like 1,0,0 (repeat; default: five)."),
    divergence: str = typer.Option("reverse_kl", "--divergence", "-d", help="reverse_kl, forward_kl, jsd or alpha:<a>."),
    prompted: bool = typer.Option(False, "--prompted", help="Use three system prompts instead of the bundled adapters."),
) -> None:
    """Show the steering: the bundled SmolLM2 with one f-DPO adapter per objective, at several weightings."""

    def go():
        from rich.console import Console
        from rich.table import Table

        from .demo import demo_objectives, run_demo

        weightings = [parse_weights(w) for w in weights] or None
        console = Console()
        kind = "system prompts" if prompted else "bundled LoRA adapters"
        console.print(f"[bold]moddecode demo[/bold]: SmolLM2-135M-Instruct (bundled) as three policies ({kind}), "
                      "one per objective:")
        for name, text in demo_objectives(prompted).items():
            console.print(f"  [cyan]{name}[/cyan]: {text}")
        console.print("Every prompt x weighting below decodes together in one batch. Loading the model...")
        names, rows = run_demo(prompt or None, weightings, max_new_tokens=max_new_tokens, divergence=divergence,
                               prompted=prompted)
        for p in dict.fromkeys(r.prompt for r in rows):
            table = Table(title=f"[bold]{p}[/bold]", show_lines=True, expand=True)
            table.add_column("weights\n" + "\n".join(names), no_wrap=True, ratio=1)
            table.add_column("response", ratio=5)
            for r in rows:
                if r.prompt == p:
                    table.add_row(", ".join(f"{x:g}" for x in r.weights), r.response.strip())
            console.print(table)

    run_guarded(go)


@app.command("make-prefs")
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
    margin: float = typer.Option(0.0, help="Keep a pair only if chosen beats rejected by more than this."),
) -> None:
    """Sample K responses per prompt from the reference policy, score them, write chosen/rejected pairs.

    Interrupt it at any time: running the same command again resumes after the last finished batch."""

    def go():
        from .train.prefs import make_prefs

        files = make_prefs(source, prompts_file, scorer, out_dir, k=k, seed=seed, max_new_tokens=max_new_tokens,
                           temperature=temperature, top_p=top_p, pairs_per_prompt=pairs_per_prompt, margin=margin)
        for objective, path in files.items():
            count = sum(1 for _ in path.open())
            typer.echo(f"{objective}: {count} pairs -> {path}")

    run_guarded(go)


@app.command()
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
        from .train.dpo import TrainSettings, train_dpo

        settings = TrainSettings(source=source, data=data, out_dir=str(out_dir), objective=objective,
                                 divergence=divergence, beta=beta, epochs=epochs, max_steps=max_steps,
                                 learning_rate=learning_rate, batch_size=batch_size, lora_r=lora_r,
                                 lora_alpha=lora_alpha, max_length=max_length, save_steps=save_steps, seed=seed)
        path = train_dpo(settings, overwrite=overwrite)
        typer.echo(f"adapter for {objective!r} -> {path}")

    run_guarded(go)


@app.command()
def serve(
    config: Path = typer.Argument(..., help="YAML policy set (see examples/server.yaml); its `server:` section sets limits."),
    host: str = typer.Option("127.0.0.1", help="Address to bind. Anything but loopback should come with an API key."),
    port: int = typer.Option(8000, help="Port to listen on."),
    api_key: Optional[str] = typer.Option(
        None, "--api-key", help="Require 'Authorization: Bearer KEY'. Warning: other users of this machine can "
                                "read it in `ps`; prefer $MODDECODE_API_KEY or --api-key-file."),
    api_key_file: Optional[Path] = typer.Option(
        None, "--api-key-file", help="Read the API key from this file (default: $MODDECODE_API_KEY)."),
    allowed_hosts: Optional[str] = typer.Option(
        None, "--allowed-hosts", help="Comma-separated Host names to answer besides localhost, IP addresses and "
                                      "--host, e.g. gpu-box.lan,*.example.com ('*': any). Others get 421 "
                                      "(protection against DNS rebinding)."),
) -> None:
    """Serve an OpenAI-compatible API (/v1/chat/completions, /v1/completions, /v1/models) with per-request
    `weights` and `divergence`, and a playground page at /."""

    def go():
        import logging

        from .server import run_server

        if api_key is not None:
            logging.getLogger("moddecode.server").warning(
                "--api-key is visible to every user of this machine (`ps`); prefer $MODDECODE_API_KEY or --api-key-file")
        hosts = [h.strip() for h in (allowed_hosts or "").split(",") if h.strip()]
        run_server(config, host=host, port=port, api_key=api_key, api_key_file=api_key_file, allowed_hosts=hosts)

    run_guarded(go)


def _register_subcommands() -> None:
    from .eval.commands import register

    register(app)  # sweep, report


_register_subcommands()


def main() -> None:  # pragma: no cover - console entry point
    app()
