"""Batched next-token log-probabilities for many policies over many sequences (transformers models).

Policies that share one base model form a group and run as ONE forward pass per step: its rows are
(policy, sequence) pairs, laid out policy-major (row = p * N + n), each row with its own formatted
prompt (system prompts differ), its own PEFT adapter (mixed-adapter batch) and its own KV cache
entry. Groups with different base models run one forward each.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

from ..policy import LoadedModel, Policy
from .cpu_linear import small_batch_mode

Tensor = torch.Tensor


class PolicyGroup:
    """Policies sharing one LoadedModel, decoded together with one KV cache."""

    def __init__(self, base: LoadedModel, policies: list[Policy], vocab_size: int, small_batch: bool):
        self.base = base
        self.small_batch = small_batch
        self.policies = policies
        self.vocab_size = vocab_size
        self.cache: DynamicCache | None = None
        self.attention_mask: Tensor | None = None  # [R, T]
        self.next_position: Tensor | None = None  # [R]
        self.num_sequences = 0
        self.adapter_names: list[str] | None = None

    @property
    def device(self) -> torch.device:
        return self.base.device

    def _forward(self, input_ids: Tensor, position_ids: Tensor) -> Tensor:
        """One forward pass; returns normalised log-probs of the last position, [P, N, V]."""
        kwargs = {self.base.cache_argument: self.cache}
        if self.base.has_adapters:
            kwargs["adapter_names"] = self.adapter_names
        with small_batch_mode(self.device, input_ids.shape[0], self.small_batch):
            out = self.base.model(
                input_ids=input_ids,
                attention_mask=self.attention_mask,
                position_ids=position_ids,
                use_cache=True,
                logits_to_keep=1,
                **kwargs,
            )
        self.cache = getattr(out, self.base.cache_argument)
        # Padded lm_head rows beyond the tokenizer are not tokens: drop them before normalising.
        logits = out.logits[:, -1, : self.vocab_size].float()
        return torch.log_softmax(logits, dim=-1).view(len(self.policies), self.num_sequences, -1)

    @torch.no_grad()
    def prefill(self, prompts: list[str]) -> Tensor:
        """Start one sequence per prompt; returns next-token log-probs [P, N, V]."""
        self.num_sequences = len(prompts)
        rows = [policy.encode(prompt) for policy in self.policies for prompt in prompts]
        width = max(len(r) for r in rows)
        pad = self.base.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=self.device)
        self.attention_mask = torch.tensor(
            [[0] * (width - len(r)) + [1] * len(r) for r in rows], device=self.device
        )
        positions = (self.attention_mask.cumsum(-1) - 1).clamp(min=0)
        self.next_position = self.attention_mask.sum(-1)
        self.adapter_names = [p.peft_adapter for p in self.policies for _ in prompts]
        self.cache = DynamicCache()
        return self._forward(ids, positions)

    @torch.no_grad()
    def step(self, tokens: Tensor) -> Tensor:
        """Append one token per sequence ([N]); returns next-token log-probs [P, N, V]."""
        ids = tokens.to(self.device).repeat(len(self.policies)).unsqueeze(1)
        ones = torch.ones_like(ids)
        self.attention_mask = torch.cat([self.attention_mask, ones], dim=1)
        positions = self.next_position.unsqueeze(1)
        self.next_position = self.next_position + 1
        return self._forward(ids, positions)

    def select(self, index: Tensor) -> None:
        """Keep/reorder/duplicate sequences: sequence j becomes old sequence index[j] (beams, finished)."""
        index = index.to(self.device)
        rows = torch.cat([index + p * self.num_sequences for p in range(len(self.policies))])
        self.cache.reorder_cache(rows)
        self.attention_mask = self.attention_mask[rows]
        self.next_position = self.next_position[rows]
        self.adapter_names = [self.adapter_names[r] for r in rows.tolist()]
        self.num_sequences = len(index)


class ModelRows:
    """All members (policies, then the reference if it runs), grouped by shared base model: the
    `RowForward` of the transformers engine, for one decode call."""

    def __init__(self, members: list[Policy], vocab_size: int, small_batch: bool = True):
        self.members = members
        self.vocab_size = vocab_size
        groups: dict[int, list[int]] = {}
        for i, policy in enumerate(members):
            groups.setdefault(id(policy.base), []).append(i)
        self.groups = [
            (PolicyGroup(members[idx[0]].base, [members[i] for i in idx], vocab_size, small_batch), idx)
            for idx in groups.values()
        ]
        self.device = self.groups[0][0].device

    def _gather(self, parts: list[tuple[Tensor, list[int]]]) -> Tensor:
        first = parts[0][0]
        out = first.new_empty((len(self.members), first.shape[1], first.shape[2]))
        for logprobs, idx in parts:
            out[idx] = logprobs.to(out.device)
        return out

    def prefill(self, prompts: list[str]) -> Tensor:
        """[members, N, V] next-token log-probs after each prompt."""
        return self._gather([(group.prefill(prompts), idx) for group, idx in self.groups])

    def step(self, tokens: Tensor) -> Tensor:
        return self._gather([(group.step(tokens), idx) for group, idx in self.groups])

    def select(self, index: Tensor) -> None:
        for group, _ in self.groups:
            group.select(index)
