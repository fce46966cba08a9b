"""Does each bundled adapter move its own objective on held-out prompts? (issue 4)

Greedy-decodes the held-out prompts with the reference policy (the bundled SmolLM2, no adapter) and
with each adapter in src/moddecode/adapters/, scores every response with every objective's scorer, and
prints mean scores with bootstrap 95% intervals and each adapter's change versus the reference.

    .venv/bin/python scripts/eval_adapters.py [--prompts data/prompts/general.jsonl] [--limit 48] [-n 64]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from moddecode import MOD, Policy
from moddecode.eval.metrics import mean_ci
from moddecode.eval.scorers import get_scorer
from moddecode.train.prefs import read_prompts

ADAPTERS = Path(__file__).resolve().parents[1] / "src" / "moddecode" / "adapters"
SCORERS = {"concise": "conciseness", "positive": "vader", "readable": "readability"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", default="data/prompts/general.jsonl")
    parser.add_argument("--limit", type=int, default=48)
    parser.add_argument("-n", "--max-new-tokens", type=int, default=64)
    parser.add_argument("--json", dest="json_out", default=None, help="also write the table as JSON here")
    args = parser.parse_args()
    prompts = [p.prompt for p in read_prompts(args.prompts)[: args.limit]]
    scorers = {objective: get_scorer(name) for objective, name in SCORERS.items()}
    policies = {"reference": Policy.load("smollm2", name="reference")}
    for folder in sorted(p for p in ADAPTERS.iterdir() if (p / "adapter_config.json").exists()):
        policies[folder.name] = Policy.load("smollm2", adapter=folder, name=folder.name)
    table = {}
    for name, policy in policies.items():
        texts = MOD([policy]).generate(prompts, [1.0], max_new_tokens=args.max_new_tokens)
        table[name] = {o: mean_ci(s.score(prompts, texts)) for o, s in scorers.items()}
    objectives = list(scorers)
    print(f"{len(prompts)} held-out prompts from {args.prompts}, greedy, {args.max_new_tokens} new tokens")
    print(f"{'policy':<20}" + "".join(f"{o + ' (' + SCORERS[o] + ')':>34}" for o in objectives))
    for name, row in table.items():
        cells = []
        for o in objectives:
            ci, ref = row[o], table["reference"][o].mean
            delta = "" if name == "reference" else f" {ci.mean - ref:+.3f}"
            cells.append(f"{ci.mean:.3f} [{ci.low:.3f},{ci.high:.3f}]{delta}")
        print(f"{name:<20}" + "".join(f"{c:>34}" for c in cells))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(
            {n: {o: vars(ci) for o, ci in row.items()} for n, row in table.items()}, indent=2, default=float))


if __name__ == "__main__":
    main()
