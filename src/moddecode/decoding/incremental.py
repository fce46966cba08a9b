"""The token-by-token loop shared by greedy decoding and sampling; strategies only choose tokens."""

from __future__ import annotations

from typing import Callable, Iterator

import torch

from .outputs import Generation, TextDelta, TokenDiagnostics
from .run import DecodeRun
from .text import TextTracker

Tensor = torch.Tensor
# scores [N, V] of the live rows and their prompt indices -> one token per row [N]
Chooser = Callable[[Tensor, list[int]], Tensor]


def decode_incremental(run: DecodeRun, choose: Chooser) -> Iterator[TextDelta]:
    """Decode all prompts together, one token per live row per step; yield streamed text.

    Each prompt stops at EOS, at a stop string or at its own limit (run.limits); its last delta
    carries its Generation.
    """
    rows, combiner, config = run.rows, run.combiner, run.config
    live = list(range(len(run.prompts)))  # prompt index of each live sequence
    trackers = [TextTracker(run.tokenizer, config.stop) for _ in run.prompts]
    diags: list[list[TokenDiagnostics]] = [[] for _ in run.prompts]
    # 1. Prefill every policy on its own formatting of each prompt.
    logprobs = rows.prefill(run.prompts)
    cumulative = torch.zeros(logprobs.shape[:2], dtype=torch.float64, device=logprobs.device)
    for step in range(max(run.limits)):
        # 2. Combine the policies' predictions into one score per candidate token.
        scores = combiner.scores(logprobs, cumulative)
        # 3. Choose one token per live sequence.
        tokens = choose(scores, live)
        if run.diagnostics:
            for j, d in zip(live, combiner.diagnostics(logprobs, cumulative, tokens, scores, run.tokenizer)):
                diags[j].append(d)
        chosen = logprobs.gather(2, tokens.view(1, -1, 1).expand(logprobs.shape[0], -1, 1)).squeeze(2)
        cumulative = cumulative + chosen.double()
        # 4. Update texts, stream what is safe, and retire finished sequences.
        keep = []
        for j, (prompt_index, token) in enumerate(zip(live, tokens.tolist())):
            tracker = trackers[prompt_index]
            is_eos = token in run.eos_ids
            if not is_eos:
                tracker.push(token)
            done = is_eos or tracker.stopped or step == run.limits[prompt_index] - 1
            piece = tracker.delta(final=done)
            if done:
                reason = "stop" if (is_eos or tracker.stopped) else "length"
                result = Generation(tracker.text, tracker.token_ids, reason, diagnostics=diags[prompt_index])
                yield TextDelta(prompt_index, piece, result)
            else:
                if piece:
                    yield TextDelta(prompt_index, piece)
                keep.append(j)
        if not keep:
            return
        # 5. Feed the chosen tokens back; shrink the batch first if some sequences finished.
        if len(keep) < len(live):
            index = torch.tensor(keep, device=tokens.device)
            rows.select(index)
            combiner.select(index)
            live = [live[j] for j in keep]
            tokens, cumulative = tokens[index], cumulative[:, index]
        logprobs = rows.step(tokens)
