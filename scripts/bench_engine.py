"""Decoding speed on the bundled SmolLM2: one policy alone vs MOD over 3 prompted policies.

Prints ms per generated token, measured in this one run, for
  1. one policy alone via transformers' `model.generate` (greedy, KV cache),
  2. MOD over 3 prompted policies of one base, batched into one forward per step (moddecode),
  3. the same 3 policies run one forward per policy per step (separate model copies, as the paper's code does),
and the ratios 2/1 and 3/1. Target: 2/1 <= 1.6. A last line shows 2 without the CPU small-batch
linear (see moddecode.engines.cpu_linear.SmallBatchLinear).

    .venv/bin/python scripts/bench_engine.py [--tokens 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from moddecode import MOD, Policy
from moddecode.demo import DEMO_OBJECTIVES
from moddecode.policy import ModelCache

PROMPT = "Explain how a rainbow forms."


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    parser.add_argument("--source", default="smollm2", help="model to load (default: the bundled SmolLM2)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    n = args.tokens
    systems = list(DEMO_OBJECTIVES.values())
    shared = ModelCache()
    batched = [Policy.load(args.source, system_prompt=s, cache=shared, device=args.device) for s in systems]
    # Separate caches load separate model copies: three groups, one forward each per step.
    separate = [Policy.load(args.source, system_prompt=s, cache=ModelCache(), device=args.device) for s in systems]
    alone = batched[0]
    weights = [1 / 3] * 3

    def single():
        ids = torch.tensor([alone.encode(PROMPT)], device=alone.base.device)
        with torch.no_grad():
            out = alone.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                       max_new_tokens=n, min_new_tokens=n, pad_token_id=alone.tokenizer.pad_token_id)
        assert out.shape[1] - ids.shape[1] == n

    def mod_run(policies):
        mod = MOD(policies)
        return lambda: mod.generate(PROMPT, weights, max_new_tokens=n, ignore_eos=True)

    t_single = timed(single, args.repeats) / n * 1000
    t_batched = timed(mod_run(batched), args.repeats) / n * 1000
    t_separate = timed(mod_run(separate), args.repeats) / n * 1000
    os.environ["MODDECODE_CPU_SMALL_BATCH"] = "0"  # the same batched run with torch's own linear kernel
    t_plain = timed(mod_run(batched), args.repeats) / n * 1000
    del os.environ["MODDECODE_CPU_SMALL_BATCH"]
    print(f"device: {alone.base.device}, torch threads: {torch.get_num_threads()}, tokens per run: {n}, "
          f"median of {args.repeats} runs")
    print(f"{'configuration':<52} {'ms/token':>9} {'vs single':>10}")
    for label, t in [("1 policy alone, model.generate", t_single),
                     ("MOD, 3 prompted policies, batched (one forward/step)", t_batched),
                     ("MOD, 3 policies, one forward per policy per step", t_separate),
                     ("  (batched, without the CPU small-batch linear)", t_plain)]:
        print(f"{label:<52} {t:>9.1f} {t / t_single:>9.2f}x")
    verdict = "meets" if t_batched / t_single <= 1.6 else "misses"
    print(f"batched MOD / single = {t_batched / t_single:.2f}x ({verdict} the 1.6x target); "
          f"batching speed-up over one forward per policy: {t_separate / t_batched:.2f}x")


if __name__ == "__main__":
    main()
