"""What sharing a prompt's forwards across its weightings saves in a sweep, on the bundled adapters.

A sweep decodes each prompt at many weightings; rows of one prompt read one sequence of the forward
until their tokens part (moddecode.decoding.loop). This runs the same rows twice per repeat, alternating,
with sharing on and off: PROMPTS held-out prompts x the 11-point grid of the concise/positive adapters
(or --three: the 39 weightings of examples/repro/three-objectives.yaml), greedy, EOS ends, up to
--tokens new tokens. It prints the sequence forwards each ran, the median wall time, their ratio,
and checks that both give the same texts.

    .venv/bin/python scripts/bench_shared_prefixes.py [--prompts 4] [--tokens 96] [--repeats 3] [--three]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from moddecode import DecodingConfig
from moddecode.config import load_policy_set
from moddecode.decoding import RowSpec
from moddecode.eval.sweep import load_sweep_config

ROOT = Path(__file__).resolve().parent.parent


def decode(mod, prompts: list[str], weightings: list[list[float]], config: DecodingConfig, share: bool):
    loop = mod.engine.loop(share_prefixes=share)
    keys = [(p, k) for p in range(len(prompts)) for k in range(len(weightings))]
    loop.submit([RowSpec(prompts[p], torch.tensor(weightings[k], dtype=torch.float64), config,
                         config.max_new_tokens, key=(p, k)) for p, k in keys])
    texts = {}
    start = time.perf_counter()
    while loop.busy:
        for event in loop.step():
            if event.error is not None:
                raise event.error
            if event.delta.result is not None:
                texts[event.key] = event.delta.result.text
    return time.perf_counter() - start, loop.sequences_stepped, [texts[k] for k in keys]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--three", action="store_true", help="three adapters, the 39 weightings of the repro")
    args = parser.parse_args()
    sweep = load_sweep_config(ROOT / "examples" / "repro" / ("three-objectives.yaml" if args.three else "jsd.yaml"))
    policy_set = dict(sweep.policy_set)
    if not args.three:  # the reverse-KL concise/positive pair, without the JSD runs' reference
        three = load_sweep_config(ROOT / "examples" / "repro" / "three-objectives.yaml").policy_set
        policy_set = {"policies": three["policies"][:2]}
    mod, _ = load_policy_set(policy_set)
    weightings = [list(w) for w in sweep.weightings] if args.three else [[i / 10, 1 - i / 10] for i in range(11)]
    prompts = [text for _, text in sweep.prompts[: args.prompts]]
    config = DecodingConfig(divergence="reverse_kl", max_new_tokens=args.tokens)
    times = {True: [], False: []}
    for repeat in range(args.repeats):
        for share in (False, True) if repeat % 2 == 0 else (True, False):
            seconds, forwards, texts = decode(mod, prompts, weightings, config, share)
            times[share].append(seconds)
            if share:
                shared_forwards, shared_texts = forwards, texts
            else:
                unshared_forwards, unshared_texts = forwards, texts
    rows = len(prompts) * len(weightings)
    same = sum(a == b for a, b in zip(shared_texts, unshared_texts))
    print(f"{rows} rows ({len(prompts)} prompts x {len(weightings)} weightings), up to {args.tokens} tokens, "
          f"{len(mod.policies)} adapters")
    print(f"sequence forwards: unshared {unshared_forwards}, shared {shared_forwards} "
          f"({unshared_forwards / shared_forwards:.2f}x fewer)")
    unshared, shared = statistics.median(times[False]), statistics.median(times[True])
    print(f"median wall time: unshared {unshared:.1f} s, shared {shared:.1f} s: {unshared / shared:.2f}x faster")
    print(f"same texts: {same} of {rows}")


if __name__ == "__main__":
    main()
