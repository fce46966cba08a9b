"""Do the bundled adapters steer? Issue 12's targets, checked on held-out prompts in one run.

Greedy-decodes every held-out prompt (EOS ends a response; up to -n new tokens) with the plain bundled
SmolLM2, with each adapter in src/moddecode/adapters/, and with MOD over (concise, positive, readable)
at (0.5, 0.5, 0). Each response is scored by word count, VADER compound, Flesch reading ease and
fluency (mean per-token log-prob under the plain model, so steering bought with gibberish shows). Prints
means with bootstrap 95% intervals, the change versus the plain model, and each target as PASS/FAIL:

- concise writes at most 50% of the plain model's words (and still answers: no empty responses);
- positive raises mean VADER by at least +0.15; readable raises mean Flesch by at least +15;
- MOD at (0.5, 0.5, 0) lies between concise and positive on both words and VADER.

    .venv/bin/python scripts/eval_adapters.py [--prompts data/prompts/heldout.jsonl] [-n 160] [--json out.json]
    .venv-vllm/bin/python scripts/eval_adapters.py --engine vllm     # the same on the vLLM engine (GPUs)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from moddecode import MOD, Policy
from moddecode.eval.metrics import mean_ci
from moddecode.eval.scorers import get_scorer
from moddecode.prompts import read_prompt_file

ADAPTERS = Path(__file__).resolve().parents[1] / "src" / "moddecode" / "adapters"
MEASURES = {"words": "length", "vader": "vader", "flesch": "readability", "fluency": "fluency"}
MOD_TRIO, MOD_WEIGHTS = ("concise", "positive", "readable"), (0.5, 0.5, 0.0)


def decode(policies: list, weights, prompts: list[str], max_new_tokens: int, engine: str,
           engine_options: dict) -> tuple[list[str], float]:
    mod = MOD(policies, engine=engine, engine_options=engine_options)
    results = mod.generations(prompts, list(weights), max_new_tokens=max_new_tokens)
    return [r.text for r in results], sum(r.finish_reason == "stop" for r in results) / len(results)


def between(value: float, a: float, b: float) -> bool:
    return min(a, b) <= value <= max(a, b)


def targets(table: dict) -> list[tuple[str, bool, str]]:
    """(target, met, the numbers) for issue 12's adapter targets."""
    plain, out = table["plain"], []

    def mean(name, measure):
        return table[name][measure]["mean"]

    if "concise" in table:
        ratio = mean("concise", "words") / mean("plain", "words")
        answered = table["concise"]["empty"] == 0
        out.append(("concise <= 50% of plain words, no empty answer", ratio <= 0.5 and answered,
                    f"{ratio:.0%} of {mean('plain', 'words'):.1f} words; {table['concise']['empty']} empty"))
    if "positive" in table:
        gain = mean("positive", "vader") - plain["vader"]["mean"]
        out.append(("positive >= +0.15 VADER", gain >= 0.15, f"{gain:+.3f}"))
    if "readable" in table:
        gain = mean("readable", "flesch") - plain["flesch"]["mean"]
        out.append(("readable >= +15 Flesch", gain >= 15, f"{gain:+.1f}"))
    mod = f"MOD{MOD_WEIGHTS}"
    if mod in table:
        for measure in ("words", "vader"):
            value, a, b = mean(mod, measure), mean("concise", measure), mean("positive", measure)
            out.append((f"MOD (0.5, 0.5, 0) between concise and positive on {measure}", between(value, a, b),
                        f"{value:.3f} vs {a:.3f} .. {b:.3f}"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", default="data/prompts/heldout.jsonl", help="held-out prompts (never trained on)")
    parser.add_argument("--limit", type=int, default=None, help="use the first N prompts only")
    parser.add_argument("-n", "--max-new-tokens", type=int, default=160)
    parser.add_argument("--adapters", nargs="*", default=None, help="adapter names (default: every bundled one)")
    parser.add_argument("--engine", default="transformers", help="transformers, or vllm (run "
                        "with .venv-vllm/bin/python)")
    parser.add_argument("--vllm-memory", type=float, default=0.2, help="share of the machine's memory vLLM may "
                        "reserve (its gpu_memory_utilization; on a CPU it is RAM)")
    parser.add_argument("--json", dest="json_out", default=None, help="also write the table and targets as JSON here")
    args = parser.parse_args()
    prompts = [p.prompt for p in read_prompt_file(args.prompts)[: args.limit]]
    scorers = {m: get_scorer(spec) for m, spec in MEASURES.items()}
    names = args.adapters or sorted(p.name for p in ADAPTERS.iterdir() if (p / "adapter_config.json").exists())
    policies = {"plain": Policy.load("smollm2", name="plain")}
    policies.update({n: Policy.load("smollm2", adapter=ADAPTERS / n, name=n) for n in names})
    runs = {n: ([p], [1.0]) for n, p in policies.items()}
    if all(n in policies for n in MOD_TRIO):
        runs[f"MOD{MOD_WEIGHTS}"] = ([policies[n] for n in MOD_TRIO], MOD_WEIGHTS)
    table, texts = {}, {}
    for name, (members, weights) in runs.items():
        start = time.time()
        texts[name], ended = decode(members, weights, prompts, args.max_new_tokens, args.engine,
                                       {"gpu_memory_utilization": args.vllm_memory} if args.engine == "vllm" else {})
        row = {m: vars(mean_ci(s.score(prompts, texts[name]))) for m, s in scorers.items()}
        row.update(ended_at_eos=ended, empty=sum(not t.strip() for t in texts[name]), seconds=round(time.time() - start, 1))
        table[name] = row
        print(f"{name}: {row['seconds']} s", flush=True)
    print(f"\n{len(prompts)} held-out prompts from {args.prompts}, greedy, up to {args.max_new_tokens} new tokens")
    print(f"{'policy':<20}" + "".join(f"{m:>32}" for m in MEASURES) + f"{'ended at EOS':>14}")
    for name, row in table.items():
        cells = []
        for m in MEASURES:
            ci, ref = row[m], table["plain"][m]["mean"]
            delta = "" if name == "plain" else f" ({ci['mean'] - ref:+.2f})"
            cells.append(f"{ci['mean']:.2f} [{ci['low']:.2f},{ci['high']:.2f}]{delta}")
        print(f"{name:<20}" + "".join(f"{c:>32}" for c in cells) + f"{row['ended_at_eos']:>14.0%}")
    checks = targets(table)
    print()
    for target, met, numbers in checks:
        print(f"{'PASS' if met else 'FAIL'}  {target}: {numbers}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({
            "prompts": args.prompts, "count": len(prompts), "max_new_tokens": args.max_new_tokens, "table": table,
            "targets": [{"target": t, "met": m, "numbers": n} for t, m, n in checks],
            "examples": {n: t[:3] for n, t in texts.items()}}, indent=2, default=float))


if __name__ == "__main__":  # vLLM spawns its engine process: the guard keeps it from rerunning main()
    main()
