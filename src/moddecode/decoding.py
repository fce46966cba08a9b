"""Decoding over the combined MOD score: greedy, sampling and beam search, with stopping and streaming.

Strategies only choose tokens from scores; the loop that asks the engine for log-probabilities,
combines them, stops sequences and streams text is shared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator

import torch

from .combine import combine_logprobs
from .divergences import Divergence
from .engine import Engine
from .errors import ConfigError, UnknownNameError

Tensor = torch.Tensor
STRATEGIES = ["greedy", "sample", "beam"]
SCOPES = ["sequence", "token"]


@dataclass(frozen=True)
class DecodingConfig:
    """How to pick tokens from the combined score. Validated on construction."""

    strategy: str = "greedy"
    max_new_tokens: int = 128
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    num_beams: int = 4
    scope: str = "sequence"
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False  # keep decoding past EOS (benchmarks: fixed-length outputs)

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise UnknownNameError("strategy", str(self.strategy), STRATEGIES)
        if self.scope not in SCOPES:
            raise UnknownNameError("scope", str(self.scope), SCOPES)
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be a positive integer, got {self.max_new_tokens!r}")
        if not (isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature) and self.temperature > 0):
            raise ConfigError(f"temperature must be a finite number > 0, got {self.temperature!r}; "
                              "for deterministic output use strategy='greedy'")
        if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 1):
            raise ConfigError(f"top_k must be a positive integer or None, got {self.top_k!r}")
        if self.top_p is not None and not (isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1):
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if not isinstance(self.num_beams, int) or self.num_beams < 1:
            raise ConfigError(f"num_beams must be a positive integer, got {self.num_beams!r}")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise ConfigError(f"stop must be non-empty strings, got {self.stop!r}")


@dataclass
class TokenDiagnostics:
    """Why one token was chosen: its combined score and each policy's log-prob and contribution.

    `score` and `contributions` describe the same quantity, at the decoding scope: with scope='token'
    the next token alone, with scope='sequence' the whole response so far including this token (Eq. 6,
    pi_i = the policy's probability of that prefix). They satisfy
    score = l_ref + log (grad f)^-1(sum_i contributions_i), with l_ref = 0 where no reference ran.
    """

    token_id: int
    token: str
    score: float  # the combined MOD score of the token (scope-level, see above)
    logprobs: list[float]  # log pi_i(token | context) per policy: next-token, whatever the scope
    contributions: list[float]  # w_i grad f(pi_i / pi_ref) per policy (scope-level; pi_ref = 1 where no reference ran)


@dataclass
class Generation:
    """One prompt's result."""

    text: str
    token_ids: list[int]
    finish_reason: str  # "stop" (EOS or stop string) or "length"
    score: float | None = None  # beam search: the final f-score
    diagnostics: list[TokenDiagnostics] = field(default_factory=list)


@dataclass
class TextDelta:
    """Newly decoded text of prompt `index` (streaming). The last delta of a prompt carries its result."""

    index: int
    text: str
    result: Generation | None = None  # set once this prompt is finished


def decode_until_stop(tokenizer, token_ids: list[int], stop: tuple[str, ...]) -> tuple[str, bool]:
    """The decoded text cut before the first stop string, and whether one was found."""
    text = tokenizer.decode(token_ids, skip_special_tokens=True)
    cut = min((at for at in (text.find(s) for s in stop) if at >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


class TextTracker:
    """Decoded text of one sequence: stop strings, and what is safe to stream so far."""

    def __init__(self, tokenizer, stop: tuple[str, ...]):
        self.tokenizer = tokenizer
        self.stop = stop
        self.token_ids: list[int] = []
        self.text = ""
        self.emitted = 0
        self.stopped = False

    def push(self, token_id: int) -> None:
        self.token_ids.append(token_id)
        self.text, self.stopped = decode_until_stop(self.tokenizer, self.token_ids, self.stop)

    def delta(self, final: bool = False) -> str:
        """Text not yet streamed, holding back a partial UTF-8 character or a possible stop-string start."""
        end = len(self.text)
        if not final:
            if self.text.endswith("\ufffd"):
                end -= 1
            for s in self.stop:
                for k in range(min(len(s) - 1, end), 0, -1):
                    if self.text[:end].endswith(s[:k]):
                        end = min(end, len(self.text[:end]) - k)
                        break
        end = max(end, self.emitted)
        piece = self.text[self.emitted:end]
        self.emitted = end
        return piece


class Scorer:
    """Turns member log-probs into combined scores for each live sequence."""

    def __init__(self, divergence: Divergence, weights: Tensor, num_policies: int, uses_reference: bool, scope: str):
        self.divergence = divergence
        self.weights = weights  # [M, N] float64, one column per live sequence
        self.num_policies = num_policies
        self.uses_reference = uses_reference
        self.scope = scope

    def scores(self, logprobs: Tensor, cumulative: Tensor) -> Tensor:
        """logprobs [members, N, V] next-token; cumulative [members, N] prefix log-probs -> [N, V]."""
        lp = logprobs.double()
        if self.scope == "sequence":
            lp = cumulative.unsqueeze(-1) + lp
        m = self.num_policies
        ref = lp[m] if self.uses_reference else None
        return combine_logprobs(lp[:m], self.weights, self.divergence, ref_logprobs=ref)

    def select(self, index: Tensor) -> None:
        self.weights = self.weights[:, index.to(self.weights.device)]

    def diagnostics(self, logprobs: Tensor, cumulative: Tensor, tokens: Tensor, scores: Tensor,
                    tokenizer) -> list[TokenDiagnostics]:
        """logprobs [members, N, V] next-token, cumulative [members, N] prefix log-probs, tokens [N]."""
        n = torch.arange(tokens.shape[0])
        chosen = logprobs[:, n, tokens].double()  # [members, N]
        level = cumulative + chosen if self.scope == "sequence" else chosen  # what `scores` were computed on
        m = self.num_policies
        ref = level[m] if self.uses_reference else None
        contrib = self.divergence.contributions(level[:m], self.weights, ref)
        return [
            TokenDiagnostics(int(tokens[j]), tokenizer.decode([int(tokens[j])]), float(scores[j, tokens[j]]),
                             chosen[:m, j].tolist(), contrib[:, j].tolist())
            for j in range(tokens.shape[0])
        ]


def prompt_generators(config: DecodingConfig, num_prompts: int, device) -> list[torch.Generator]:
    """One random stream per prompt (seed + prompt index), so a seeded prompt samples the same text
    whatever else shares its batch. Without a seed each stream is seeded from fresh entropy (torch's
    global generator is left alone)."""
    generators = []
    for index in range(num_prompts):
        g = torch.Generator(device=device)
        if config.seed is None:
            g.seed()
        else:
            g.manual_seed(config.seed + index)
        generators.append(g)
    return generators


def sample_tokens(scores: Tensor, config: DecodingConfig, generators: list[torch.Generator]) -> Tensor:
    """Sample from softmax(score / temperature) after top-k and top-p filtering.

    scores: [N, V]; generators: one per row (each row's prompt stream)."""
    logits = scores / config.temperature
    if config.top_k is not None and config.top_k < logits.shape[-1]:
        kth = torch.topk(logits, config.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, -math.inf)
    if config.top_p is not None and config.top_p < 1:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = torch.softmax(sorted_logits, dim=-1)
        # Drop a token once the mass before it already reaches top_p (the first token always stays).
        drop_sorted = (probs.cumsum(-1) - probs) >= config.top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, -math.inf)
    probs = torch.softmax(logits, dim=-1).float()
    return torch.cat([torch.multinomial(p, 1, generator=g) for p, g in zip(probs, generators)])


def decode_incremental(engine: Engine, scorer: Scorer, prompts: list[str], config: DecodingConfig,
                       tokenizer, eos_ids: set[int], results: list[Generation | None],
                       want_diagnostics: bool = False, limits: list[int] | None = None) -> Iterator[TextDelta]:
    """Greedy or sampled decoding of all prompts together; fills `results`, yields streamed text.

    `limits` optionally gives each prompt its own max_new_tokens (at most config.max_new_tokens).
    """
    limits = limits or [config.max_new_tokens] * len(prompts)
    generators = []
    if config.strategy == "sample":
        generators = prompt_generators(config, len(prompts), engine.groups[0][0].device)
    live = list(range(len(prompts)))  # prompt index of each live sequence
    trackers = [TextTracker(tokenizer, config.stop) for _ in prompts]
    diags: list[list[TokenDiagnostics]] = [[] for _ in prompts]
    # 1. Prefill every policy on its own formatting of each prompt.
    logprobs = engine.prefill(prompts)
    cumulative = torch.zeros(logprobs.shape[:2], dtype=torch.float64, device=logprobs.device)
    for step in range(config.max_new_tokens):
        # 2. Combine the policies' predictions into one score per candidate token.
        scores = scorer.scores(logprobs, cumulative)
        # 3. Choose one token per live sequence.
        if config.strategy == "greedy":
            tokens = scores.argmax(dim=-1)
        else:
            tokens = sample_tokens(scores, config, [generators[i] for i in live])
        if want_diagnostics:
            for j, d in zip(live, scorer.diagnostics(logprobs, cumulative, tokens, scores, tokenizer)):
                diags[j].append(d)
        cumulative = cumulative + logprobs.gather(2, tokens.view(1, -1, 1).expand(logprobs.shape[0], -1, 1)).squeeze(2).double()
        # 4. Update texts, stream what is safe, and retire finished sequences.
        keep = []
        for j, (prompt_index, token) in enumerate(zip(live, tokens.tolist())):
            tracker = trackers[prompt_index]
            is_eos = token in eos_ids
            if not is_eos:
                tracker.push(token)
            done = is_eos or tracker.stopped or step == limits[prompt_index] - 1
            piece = tracker.delta(final=done)
            if done:
                reason = "stop" if (is_eos or tracker.stopped) else "length"
                results[prompt_index] = Generation(tracker.text, tracker.token_ids, reason,
                                                   diagnostics=diags[prompt_index])
                yield TextDelta(prompt_index, piece, results[prompt_index])
            else:
                if piece:
                    yield TextDelta(prompt_index, piece)
                keep.append(j)
        if not keep:
            return
        # 5. Feed the chosen tokens back; shrink the batch first if some sequences finished.
        if len(keep) < len(live):
            index = torch.tensor(keep, device=tokens.device)
            engine.select(index)
            scorer.select(index)
            live = [live[j] for j in keep]
            tokens, cumulative = tokens[index], cumulative[:, index]
        logprobs = engine.step(tokens)
