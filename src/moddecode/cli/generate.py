"""`moddecode generate` (policies combined under one weighting) and `moddecode demo` (the bundled model)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..errors import ConfigError
from .common import parse_weights, run_guarded, split_named


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
    """The prompts given as arguments, then those of --prompts-file (the shared prompt-file reader)."""
    from ..prompts import read_prompt_file

    out = list(prompts)
    if prompts_file is not None:
        out += [item.prompt for item in read_prompt_file(prompts_file)]
    if not out:
        raise ConfigError("give at least one prompt (as arguments, or --prompts-file FILE, '-' for stdin)")
    return out


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
    # None unless given, so a policy set's `ignore_eos: true` holds unless --no-ignore-eos
    ignore_eos: Optional[bool] = typer.Option(None, "--ignore-eos/--no-ignore-eos", help="Keep decoding past EOS (benchmarks: fixed-length outputs)."),
    prompts_file: Optional[Path] = typer.Option(None, "--prompts-file", help="File with one prompt per line ('-' = stdin), or .jsonl/.csv with a 'prompt' field."),
    stream: bool = typer.Option(False, "--stream", help="Print text as it is decoded."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per prompt."),
) -> None:
    """Answer prompts with several policies combined under one weighting."""

    def go():
        from ..config import load_policy_set

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
                                        stop=stop or None, ignore_eos=ignore_eos, divergence=divergence)
        if stream:
            if as_json:
                raise ConfigError("--stream and --json do not combine; pick one")
            for prompt in prompt_list:
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


def demo(
    max_new_tokens: int = typer.Option(160, "--max-new-tokens", "-n", help="Most tokens per response (EOS ends one sooner)."),
    prompt: list[str] = typer.Option([], "--prompt", help="Prompt to use instead of the built-in ones (repeat)."),
    weights: list[str] = typer.Option([], "--weights", "-w", help="A weighting like 1,0,0 (repeat; default: five)."),
    divergence: str = typer.Option("reverse_kl", "--divergence", "-d", help="reverse_kl, forward_kl, jsd or alpha:<a>."),
    prompted: bool = typer.Option(False, "--prompted", help="Use three system prompts instead of the bundled adapters."),
) -> None:
    """Show the steering: the bundled SmolLM2 with one f-DPO adapter per objective, at several weightings."""

    def go():
        from rich.console import Console
        from rich.table import Table

        from ..demo import demo_objectives, run_demo

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
            table.add_column("words\nVADER\nFlesch", no_wrap=True, justify="right", ratio=1)
            for r in rows:
                if r.prompt == p:
                    s = r.scores
                    table.add_row(", ".join(f"{x:g}" for x in r.weights), r.response.strip(),
                                  f"{s['words']:.0f}\n{s['VADER']:+.2f}\n{s['Flesch']:.0f}")
            console.print(table)
        console.print("words: length; VADER: sentiment, -1 (negative) to +1 (positive); Flesch: reading ease, "
                      "higher is easier.")

    run_guarded(go)
