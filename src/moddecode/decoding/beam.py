"""Beam search over the f-score (paper Appendix D.1), any number of policies.

Each step scores every successor of every live beam, keeps the top K per prompt, moves successors
that end in EOS (or hit a stop string, or reach the length limit) to the completed set, and returns
the completed sequence with the highest f-score. With scope='sequence' the f-score is Eq. (6) on the
cumulative log-probabilities of the whole prefix; with scope='token' it is the running sum of
token-level scores.
"""

from __future__ import annotations

import math

import torch

from typing import Iterator

from .outputs import Generation, TextDelta
from .run import DecodeRun, Strategy
from .text import decode_until_stop


def beam_search(run: DecodeRun) -> Iterator[TextDelta]:
    """Yields one delta per prompt at the end, with the whole text and its Generation (score set)."""
    engine, scorer, prompts, config = run.rows, run.combiner, run.prompts, run.config
    tokenizer, eos_ids = run.tokenizer, run.eos_ids
    k = config.num_beams
    logprobs = engine.add(prompts, [scorer.uses_reference] * len(prompts))  # [members, N, V], one live beam per prompt to start
    vocab = logprobs.shape[-1]
    owner = list(range(len(prompts)))  # prompt index of each live beam
    beam_ids: list[list[int]] = [[] for _ in prompts]
    cumulative = torch.zeros(logprobs.shape[:2], dtype=torch.float64, device=logprobs.device)
    running = torch.zeros(len(prompts), dtype=torch.float64, device=logprobs.device)
    completed: list[list[tuple[float, list[int], str]]] = [[] for _ in prompts]

    for depth in range(config.max_new_tokens):
        scores = scorer.scores(logprobs, cumulative)  # [N, V]
        candidates = scores if config.scope == "sequence" else running.unsqueeze(1) + scores
        last = depth == config.max_new_tokens - 1
        parents, tokens, values, next_ids = [], [], [], []
        for prompt_index in range(len(prompts)):
            beams = [j for j, o in enumerate(owner) if o == prompt_index]
            if not beams:
                continue
            flat = candidates[beams].reshape(-1)
            top = torch.topk(flat, min(k, flat.numel()))
            for value, flat_index in zip(top.values.tolist(), top.indices.tolist()):
                if value == -math.inf:
                    break
                parent, token = beams[flat_index // vocab], flat_index % vocab
                if token in eos_ids:
                    completed[prompt_index].append((value, beam_ids[parent], "stop"))
                    continue
                ids = beam_ids[parent] + [token]
                if config.stop and decode_until_stop(tokenizer, ids, config.stop)[1]:
                    completed[prompt_index].append((value, ids, "stop"))
                elif last:
                    completed[prompt_index].append((value, ids, "length"))
                else:
                    parents.append(parent)
                    tokens.append(token)
                    values.append(value)
                    next_ids.append(ids)
        if not parents:
            break
        index = torch.tensor(parents, device=logprobs.device)
        chosen = torch.tensor(tokens, device=logprobs.device)
        cumulative = cumulative[:, index] + logprobs[:, index, chosen].double()
        running = torch.tensor(values, dtype=torch.float64, device=logprobs.device)
        owner = [owner[p] for p in parents]
        beam_ids = next_ids
        engine.select(index)
        scorer.select(index)
        logprobs = engine.step(chosen)

    for prompt_index, done in enumerate(completed):
        score, ids, reason = max(done, key=lambda item: item[0])
        text = decode_until_stop(tokenizer, ids, config.stop)[0]
        yield TextDelta(prompt_index, text, Generation(text, ids, reason, score=score))


# all beams of a prompt share one length limit
BEAM = Strategy("beam", run=beam_search, label="beam search", streams=False, per_row_limits=False,
                no_stream_reason="the best beam is known only at the end")
