"""Reference computations for tests: one policy on its own, outside MOD (formerly Policy methods)."""

from __future__ import annotations

import contextlib

import torch


def adapter_active(policy):
    """Context in which `policy.model(...)` computes this policy alone (its adapter, or none)."""
    if not policy.base.has_adapters:
        return contextlib.nullcontext()
    if policy.adapter_name is None:
        return policy.model.disable_adapter()
    policy.model.set_adapter(policy.adapter_name)
    return contextlib.nullcontext()


@torch.no_grad()
def generate_alone(policy, prompt: str, max_new_tokens: int = 64) -> list[int]:
    """The policy's own greedy response token ids via `model.generate` (the baseline MOD must reproduce)."""
    ids = torch.tensor([policy.encode(prompt)], device=policy.base.device)
    with adapter_active(policy):
        padded = policy.model.get_output_embeddings().weight.shape[0]
        out = policy.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                    max_new_tokens=max_new_tokens, pad_token_id=policy.tokenizer.pad_token_id,
                                    # lm_head rows past the tokenizer are padding, never real tokens
                                    suppress_tokens=list(range(policy.base.vocab_size, padded)) or None)
    return out[0, ids.shape[1]:].tolist()
