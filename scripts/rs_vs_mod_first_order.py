"""Why MOD (reverse KL) and Rewarded Soups tie on the bundled adapters: with small LoRA updates they agree to
first order.

RS decodes the base with the merged update sum_i w_i B_i A_i; its logits are linear in that update up to
second-order terms, so for small updates log pi_RS ~ sum_i w_i log pi_i + const, which is exactly MOD's
reverse-KL combination. The two can only part by the second-order remainder. This script measures that gap
on held-out prompts, teacher-forced along the plain model's greedy answer, at the adapters' own size and with
both updates scaled by s (B_i -> s B_i): if the first-order argument is the reason, the gap between MOD and RS
grows much faster with s than the gap between the two single policies.

    .venv/bin/python scripts/rs_vs_mod_first_order.py [--prompts 8] [-n 64] [--scales 0.5 1 2 4]

Prints, per scale, the mean per-token KL(concise || positive) (how far apart the policies are), and per
weighting KL(MOD || RS) and how often their most likely tokens agree.
"""

from __future__ import annotations

import argparse
import copy

import torch

from moddecode.adapters import bundled_adapter
from moddecode.baselines.rewarded_soups import merge_lora_adapters
from moddecode.policy import load_tokenizer, resolve_source
from moddecode.train.prefs import read_prompts

WEIGHTS = [(0.25, 0.75), (0.5, 0.5), (0.75, 0.25)]


def next_token_logprobs(model, ids: torch.Tensor, answer_start: int) -> torch.Tensor:
    """log pi(token | prefix) at every answer position [T, V] (one teacher-forced forward)."""
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, answer_start - 1:-1].double()
    return torch.log_softmax(logits, dim=-1)


def kl(p_log: torch.Tensor, q_log: torch.Tensor) -> float:
    """Mean over positions of KL(p || q)."""
    return float((p_log.exp() * (p_log - q_log)).sum(-1).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=8, help="the first N held-out prompts")
    parser.add_argument("-n", "--max-new-tokens", type=int, default=64)
    parser.add_argument("--scales", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0])
    parser.add_argument("--prompts-file", default="data/prompts/heldout.jsonl")
    args = parser.parse_args()
    from transformers import AutoModelForCausalLM

    folder, _ = resolve_source("smollm2")
    tokenizer = load_tokenizer(folder)
    base = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    adapters = [str(bundled_adapter("concise")), str(bundled_adapter("positive"))]
    sequences = []  # (ids of prompt + the plain model's greedy answer, where the answer starts)
    for record in read_prompts(args.prompts_file)[:args.prompts]:
        text = tokenizer.apply_chat_template([{"role": "user", "content": record.prompt}], tokenize=False,
                                             add_generation_prompt=True)
        prompt = tokenizer(text, return_tensors="pt").input_ids
        with torch.no_grad():
            full = base.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                                 max_new_tokens=args.max_new_tokens, pad_token_id=tokenizer.pad_token_id)
        sequences.append((full, prompt.shape[1]))

    def logprobs_of(weights: list[float]) -> list[torch.Tensor]:
        model = merge_lora_adapters(copy.deepcopy(base), adapters, weights, method="exact", merge=True)
        return [next_token_logprobs(model, ids, start) for ids, start in sequences]

    print(f"{len(sequences)} held-out prompts, teacher-forced along the plain model's greedy answer "
          f"(up to {args.max_new_tokens} tokens); reverse-KL MOD vs RS with the exact LoRA merge")
    print("| scale s | KL(concise || positive) | w | KL(MOD || RS) | same most likely token |\n|---|---|---|---|---|")
    for s in args.scales:
        concise, positive = logprobs_of([s, 0.0]), logprobs_of([0.0, s])
        apart = sum(kl(c, p) for c, p in zip(concise, positive)) / len(sequences)
        for w in WEIGHTS:
            rs = logprobs_of([s * w[0], s * w[1]])
            mod = [torch.log_softmax(w[0] * c + w[1] * p, dim=-1) for c, p in zip(concise, positive)]
            gap = sum(kl(m, r) for m, r in zip(mod, rs)) / len(sequences)
            same = torch.cat([m.argmax(-1) == r.argmax(-1) for m, r in zip(mod, rs)]).double().mean()
            print(f"| {s:g} | {apart:.4f} | {w} | {gap:.5f} | {100 * float(same):.1f}% |")


if __name__ == "__main__":
    main()
