"""Batched next-token log-probabilities for many members over many sequences (transformers models).

A sequence is one prompt being decoded; each sequence has one row per member that scores it (every
policy, plus the reference where that sequence needs it). Members sharing one base model form a group
and run as ONE forward pass per step over all their rows: each row has its own formatted prompt
(system prompts differ), its own PEFT adapter (mixed-adapter batch) and its own KV-cache entry.
Groups with different base models run one forward each.

Sequences can join at any step (`add`): their prompts are prefilled on their own and their KV rows
are merged into the running cache, left-padded to a common length (the attention mask hides the
padding; positions are tracked per row). Sequences leave or are duplicated with `select`.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from ..errors import ConfigError
from ..policy import LoadedModel, Policy
from .cpu_linear import small_batch_mode

Tensor = torch.Tensor


class PolicyGroup:
    """The members that share one LoadedModel, with one KV cache over all their rows."""

    def __init__(self, base: LoadedModel, members: list[tuple[int, Policy]], vocab_size: int, small_batch: bool,
                 reference_index: int | None):
        self.base = base
        self.members = members  # (member index, policy)
        self.vocab_size = vocab_size
        self.small_batch = small_batch
        self.reference_index = reference_index
        self.cache: DynamicCache | None = None
        self.attention_mask: Tensor | None = None  # [R, T]
        self.next_position: Tensor | None = None  # [R]
        self.adapter_names: list[str] = []
        self.slots: list[int] = []  # sequence of each row
        self.member_of_row: list[int] = []  # member index of each row

    @property
    def device(self) -> torch.device:
        return self.base.device

    def _forward(self, input_ids: Tensor, position_ids: Tensor, attention_mask: Tensor, cache: DynamicCache,
                 adapter_names: list[str]) -> tuple[Tensor, DynamicCache]:
        """One forward pass; returns normalised log-probs of the last position [rows, V] and the cache."""
        kwargs = {self.base.cache_argument: cache}
        if self.base.has_adapters:
            kwargs["adapter_names"] = adapter_names
        with small_batch_mode(self.device, input_ids.shape[0], self.small_batch):
            out = self.base.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                  use_cache=True, logits_to_keep=1, **kwargs)
        # Padded lm_head rows beyond the tokenizer are not tokens: drop them before normalising.
        logits = out.logits[:, -1, : self.vocab_size].float()
        return torch.log_softmax(logits, dim=-1), getattr(out, self.base.cache_argument)

    @torch.no_grad()
    def add(self, prompts: list[str], slots: list[int], uses_reference: list[bool]) -> tuple[Tensor, list[int], list[int]]:
        """Prefill new sequences (one per prompt, at `slots`) and merge them into the running rows.

        Returns their log-probs [new rows, V] with each row's slot and member index (empty if no member
        of this group scores them)."""
        rows = [(slot, index, policy) for prompt, slot, ref in zip(prompts, slots, uses_reference)
                for index, policy in self.members if index != self.reference_index or ref]
        if not rows:
            return torch.empty(0, self.vocab_size, device=self.device), [], []
        text = dict(zip(slots, prompts))
        encoded = [policy.encode(text[slot]) for slot, _, policy in rows]
        width = max(len(r) for r in encoded)
        pad = self.base.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in encoded], device=self.device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in encoded], device=self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        adapters = [policy.peft_adapter for _, _, policy in rows]
        logprobs, cache = self._forward(ids, positions, mask, DynamicCache(), adapters)
        self._merge(cache, mask, mask.sum(-1), adapters, [r[0] for r in rows], [r[1] for r in rows])
        return logprobs, [r[0] for r in rows], [r[1] for r in rows]

    def _merge(self, cache: DynamicCache, mask: Tensor, next_position: Tensor, adapters: list[str],
               slots: list[int], members: list[int]) -> None:
        """Append rows to the running cache, left-padding the shorter side to a common length."""
        if self.cache is None or not self.slots:
            self.cache, self.attention_mask, self.next_position = cache, mask, next_position
        else:
            width = max(mask.shape[1], self.attention_mask.shape[1])
            for old, new in zip(self.cache.layers, cache.layers):
                if type(old) is not DynamicLayer or type(new) is not DynamicLayer:
                    raise ConfigError("sequences can join a running batch only for models with a plain dynamic KV "
                                      f"cache; {self.base.key} uses {type(old).__name__}")
                old.keys, old.values = (torch.cat([_left_pad(a, width), _left_pad(b, width)])
                                        for a, b in ((old.keys, new.keys), (old.values, new.values)))
            self.attention_mask = torch.cat([_left_pad(self.attention_mask, width), _left_pad(mask, width)])
            self.next_position = torch.cat([self.next_position, next_position])
        self.adapter_names += adapters
        self.slots += slots
        self.member_of_row += members

    @torch.no_grad()
    def step(self, tokens: Tensor) -> Tensor:
        """Append its sequence's token ([N], by slot) to every row; returns log-probs [rows, V]."""
        ids = tokens.to(self.device)[torch.tensor(self.slots, device=self.device)].unsqueeze(1)
        self.attention_mask = torch.cat([self.attention_mask, torch.ones_like(ids)], dim=1)
        positions = self.next_position.unsqueeze(1)
        self.next_position = self.next_position + 1
        logprobs, self.cache = self._forward(ids, positions, self.attention_mask, self.cache, self.adapter_names)
        return logprobs

    def select(self, index: list[int]) -> None:
        """Sequence j becomes old sequence index[j]: rows of dropped sequences leave, repeated ones duplicate."""
        rows_of: dict[int, list[int]] = {}
        for row, slot in enumerate(self.slots):
            rows_of.setdefault(slot, []).append(row)
        keep = [(new_slot, row) for new_slot, old_slot in enumerate(index) for row in rows_of.get(old_slot, [])]
        if not keep:
            self.cache, self.slots, self.member_of_row, self.adapter_names = None, [], [], []
            return
        rows = torch.tensor([row for _, row in keep], device=self.device)
        self.cache.reorder_cache(rows)
        self.attention_mask = self.attention_mask[rows]
        self.next_position = self.next_position[rows]
        self.adapter_names = [self.adapter_names[r] for _, r in keep]
        self.member_of_row = [self.member_of_row[r] for _, r in keep]
        self.slots = [slot for slot, _ in keep]
        self._trim_padding()

    def _trim_padding(self) -> None:
        """Drop leading cache columns that are padding in every row (left by sequences that left)."""
        unused = int((self.attention_mask.cumsum(-1) == 0).all(dim=0).sum())
        if unused == 0 or any(type(layer) is not DynamicLayer for layer in self.cache.layers):
            return
        for layer in self.cache.layers:
            layer.keys, layer.values = layer.keys[..., unused:, :], layer.values[..., unused:, :]
        self.attention_mask = self.attention_mask[:, unused:]


def _left_pad(x: Tensor, width: int) -> Tensor:
    """Zero-pad dimension -1 (masks) or -2 (keys/values [R, H, T, D]) on the left to `width`."""
    dim = -1 if x.dim() == 2 else -2
    missing = width - x.shape[dim]
    if missing == 0:
        return x
    shape = list(x.shape)
    shape[dim] = missing
    return torch.cat([x.new_zeros(shape), x], dim=dim)


class ModelRows:
    """Every member (the policies, then the reference if there is one), grouped by shared base model:
    the `RowForward` of the transformers engine. Log-probs come back as [members, N, V]; a sequence
    that does not use the reference has an unused (zero) reference slot."""

    def __init__(self, members: list[Policy], vocab_size: int, small_batch: bool = True,
                 reference_index: int | None = None):
        self.members = members
        self.vocab_size = vocab_size
        groups: dict[int, list[int]] = {}
        for i, policy in enumerate(members):
            groups.setdefault(id(policy.base), []).append(i)
        self.groups = [PolicyGroup(members[idx[0]].base, [(i, members[i]) for i in idx], vocab_size, small_batch,
                                   reference_index) for idx in groups.values()]
        self.device = self.groups[0].device
        self.num_sequences = 0

    def _gather(self, parts: list[tuple[Tensor, list[int], list[int]]], num_sequences: int,
                first_slot: int = 0) -> Tensor:
        covered = sum(len(slots) for _, slots, _ in parts) == len(self.members) * num_sequences
        # every (member, sequence) filled below, or zeros where a sequence has no reference row
        make = torch.empty if covered else torch.zeros
        out = make(len(self.members), num_sequences, self.vocab_size, device=self.device)
        for logprobs, slots, members in parts:
            if slots:
                at = torch.tensor(slots, device=self.device) - first_slot
                out[torch.tensor(members, device=self.device), at] = logprobs.to(self.device)
        return out

    def add(self, prompts: list[str], uses_reference: list[bool] | None = None) -> Tensor:
        """Start one sequence per prompt after the live ones; returns their next-token log-probs [members, n, V]."""
        uses_reference = uses_reference or [False] * len(prompts)
        slots = list(range(self.num_sequences, self.num_sequences + len(prompts)))
        parts = [group.add(prompts, slots, uses_reference) for group in self.groups]
        first, self.num_sequences = self.num_sequences, self.num_sequences + len(prompts)
        return self._gather(parts, len(prompts), first_slot=first)

    def step(self, tokens: Tensor) -> Tensor:
        """Append one token per live sequence ([N]); returns next-token log-probs [members, N, V]."""
        return self._gather([(group.step(tokens), group.slots, group.member_of_row)
                             for group in self.groups if group.slots], self.num_sequences)

    def select(self, index: Tensor) -> None:
        """Keep/reorder/duplicate sequences: sequence j becomes old sequence index[j]."""
        order = index.tolist()
        for group in self.groups:
            group.select(order)
        self.num_sequences = len(order)
