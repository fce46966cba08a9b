"""What a MOD group's sibling requests carry in `SamplingParams.extra_args`, and how a failed group
shows itself in the tokens it returns.

Pure Python (no vLLM import): the client (`VllmEngine`) writes these tags, the logits processor in
vLLM's worker reads them, and across processes only msgspec-serialisable values travel.

Failure signal: the processor cannot raise for one request (that would kill every request in the
engine) and in multi-process or multi-GPU setups it shares no memory with the client. So a group it
cannot decode is forced to *disagree*: member k of a failed group gets token `reason * members + k`.
Siblings never disagree otherwise, so the client sees the failure, and its reason, at the first
position where their tokens differ, and never emits that position's text.
"""

from __future__ import annotations

import enum
from dataclasses import MISSING, asdict, dataclass

from ...decoding import DecodingConfig
from ...divergences import get_divergence
from ...weights import as_weight_tensor

EXTRA_ARGS_KEY = "moddecode"
# Load the processor by name, so engine-core and worker processes can import it.
PROCESSOR_NAME = "moddecode.engines.vllm.processor:ModLogitsProcessor"


class Failure(enum.IntEnum):
    """Why the processor gave up on a group (encoded in the forced tokens, see the module docstring)."""

    LOCKSTEP = 1  # a sibling missing from a step, or at another output length
    INFEASIBLE = 2  # no token lies in the domain of (grad f)^-1 for this row's weights
    STATE_LOST = 3  # the group came back (after preemption) but its state was evicted
    INTERNAL = 4  # an unexpected exception in the processor (logged by the worker)


def failure_token(reason: Failure, member: int, members: int) -> int:
    """The token member `member` of a failed `members`-row group is forced to."""
    return int(reason) * members + member


def read_failure(tokens: list[int]) -> Failure | None:
    """The reason encoded by the members' tokens at one position (index = member), or None if they
    are not a failure pattern."""
    members = len(tokens)
    if members < 2 or tokens[0] % members != 0:
        return None
    code = tokens[0] // members
    if code not in Failure._value2member_map_ or tokens != [failure_token(Failure(code), k, members)
                                                          for k in range(members)]:
        return None
    return Failure(code)


@dataclass(frozen=True)
class GroupTag:
    """One sibling request of a MOD row.

    Rows of a group: members 0..num_policies-1 are the policies, then the reference if `reference`,
    then possibly a witness (a copy of member 0 that only exists so a one-row group can still show a
    failure by disagreeing; it takes no part in the math).
    """

    group: str  # unique per MOD row
    member: int  # this request's row in the group
    members: int  # rows in the group
    num_policies: int
    reference: bool  # row num_policies is the reference policy
    weights: tuple[float, ...]  # one per policy
    divergence: str  # a name get_divergence accepts
    scope: str  # "token" or "sequence"
    strategy: str  # "greedy" or "sample"
    vocab_size: int  # tokens the tokenizer can produce; logits past it are padding
    seed: int | None = None  # the row's own stream (config seed + prompt index); None: fresh entropy
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None

    def to_extra_args(self) -> dict:
        d = asdict(self)
        d["weights"] = list(self.weights)
        return {EXTRA_ARGS_KEY: d}

    @classmethod
    def from_extra_args(cls, extra_args: dict | None) -> "GroupTag | None":
        """The tag in `extra_args`, None if there is none; ValueError (said clearly) if it is malformed."""
        if not extra_args or EXTRA_ARGS_KEY not in extra_args:
            return None
        raw = extra_args[EXTRA_ARGS_KEY]
        if not isinstance(raw, dict):
            raise ValueError(f"extra_args[{EXTRA_ARGS_KEY!r}] must be a mapping, got {type(raw).__name__}")
        names = set(cls.__dataclass_fields__)
        required = {n for n, f in cls.__dataclass_fields__.items() if f.default is MISSING}
        unknown, missing = set(raw) - names, required - set(raw)
        if unknown or missing:
            raise ValueError(f"extra_args[{EXTRA_ARGS_KEY!r}]: unknown fields {sorted(unknown)}, "
                             f"missing fields {sorted(missing)}")
        try:
            tag = cls(**{**raw, "weights": tuple(float(w) for w in raw["weights"])})
        except (TypeError, ValueError) as exc:
            raise ValueError(f"extra_args[{EXTRA_ARGS_KEY!r}]: {exc}") from None
        tag.validate()
        return tag

    def validate(self) -> None:
        """ValueError naming the first bad field (vLLM turns it into a 400 for online requests)."""
        def bad(field: str, why: str):
            raise ValueError(f"extra_args[{EXTRA_ARGS_KEY!r}].{field} {why}, got {getattr(self, field)!r}")

        def is_int(v) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        if not isinstance(self.group, str) or not self.group:
            bad("group", "must be a non-empty string")
        if not is_int(self.num_policies) or self.num_policies < 1:
            bad("num_policies", "must be a positive integer")
        if not isinstance(self.reference, bool):
            bad("reference", "must be true or false")
        rows = self.num_policies + int(self.reference)
        if not is_int(self.members) or self.members not in (rows, rows + 1) or self.members < 2:
            bad("members", f"must be the {rows} policy/reference rows (plus one witness row if that is 1)")
        if not is_int(self.member) or not 0 <= self.member < self.members:
            bad("member", f"must be a row index in [0, {self.members})")
        as_weight_tensor(list(self.weights), self.num_policies)  # count, finiteness, magnitude
        if not isinstance(self.divergence, str):
            bad("divergence", "must be a divergence name")
        get_divergence(self.divergence)  # unknown names: "did you mean"
        if self.strategy not in ("greedy", "sample"):
            bad("strategy", "must be 'greedy' or 'sample' (beam search runs on the transformers engine)")
        self.decoding_config()  # scope, temperature, top_k, top_p
        if not is_int(self.vocab_size) or self.vocab_size < 2:
            bad("vocab_size", "must be an integer >= 2")
        if self.seed is not None and not is_int(self.seed):
            bad("seed", "must be an integer or null")

    def decoding_config(self) -> DecodingConfig:
        """The row's token-choice settings as moddecode's own (validated) config."""
        return DecodingConfig(strategy=self.strategy, temperature=self.temperature, top_k=self.top_k,
                              top_p=self.top_p, scope=self.scope, seed=self.seed)

    @property
    def group_key(self) -> tuple:
        """What must be equal across all rows of one group (checked by the processor)."""
        return (self.members, self.num_policies, self.reference, self.weights, self.divergence, self.scope,
                self.strategy, self.vocab_size, self.seed, self.temperature, self.top_k, self.top_p)
