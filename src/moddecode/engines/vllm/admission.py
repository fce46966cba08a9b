"""When a MOD group may be handed to vLLM: all its siblings must start in the same step.

Pure Python (no vLLM import). Both drivers use it: `VllmEngine.decode` (vLLM's `LLMEngine`, stepped
by moddecode) and the server's `AsyncVllm` (vLLM's `AsyncLLM`, stepping by itself). A group is
admitted only while one vLLM step can take every one of its sibling requests (sequences, prompt
tokens) and, when reserving, the KV cache can hold every admitted group to its full length, so vLLM
never schedules part of a group or preempts a sibling.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


def prompt_tokens(rows: list[tuple]) -> int:
    """Prompt tokens of a group's vLLM requests ((request_id, prompt, params, lora) tuples)."""
    return sum(len(prompt["prompt_token_ids"]) for _, prompt, _, _ in rows)


@dataclass(frozen=True)
class Capacity:
    """What one vLLM engine can start and hold (read from its config)."""

    max_num_seqs: int
    max_batched_tokens: int
    kv_blocks: int  # KV-cache blocks groups may reserve; 0: not reserving

    def admit(self, waiting: deque, *, rows: int, tokens: int, blocks: int, groups: int = 0,
              max_groups: int | None = None) -> list:
        """Pop from the front of `waiting` ((SiblingGroup, requests) pairs) the groups to submit now.

        rows: sibling requests vLLM holds already; tokens: tokens its next step must schedule for them
        (one per decoding row, the whole prompt of a row not yet prefilled); blocks: KV-cache blocks
        reserved by them; groups/max_groups: MOD rows running and the most allowed (None: no limit).
        With nothing running, any group passes (`VllmEngine._check_fits` refused the others), so
        admission never stalls.
        """
        budget, admitted = self.max_batched_tokens - tokens, []
        free = self.kv_blocks - blocks
        while waiting and (max_groups is None or groups + len(admitted) < max_groups):
            group, requests = waiting[0]
            need = prompt_tokens(requests)
            if rows + len(requests) > self.max_num_seqs or need > budget or group.kv_blocks > free:
                break
            admitted.append(waiting.popleft())
            rows, budget, free = rows + len(requests), budget - need, free - group.kv_blocks
        return admitted
