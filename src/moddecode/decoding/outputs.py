"""What decoding returns: finished generations, streamed text deltas, per-token diagnostics."""

from __future__ import annotations

from dataclasses import dataclass, field


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
class TokenLogprob:
    """A decoded token under the combined MOD distribution, log_softmax of the combined scores over the
    vocabulary (before temperature, top-k or top-p), with the most likely alternatives."""

    token_id: int
    token: str
    logprob: float
    top: list[tuple[int, str, float]] = field(default_factory=list)  # (id, text, logprob), best first


@dataclass
class Generation:
    """One prompt's result."""

    text: str
    token_ids: list[int]
    finish_reason: str  # "stop" (EOS or stop string) or "length"
    score: float | None = None  # beam search: the final f-score
    diagnostics: list[TokenDiagnostics] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)  # one per token, when asked for


@dataclass
class TextDelta:
    """Newly decoded text of prompt `index` (streaming). The last delta of a prompt carries its result."""

    index: int
    text: str
    result: Generation | None = None  # set once this prompt is finished
    logprobs: list[TokenLogprob] = field(default_factory=list)  # the tokens decoded since the last delta
