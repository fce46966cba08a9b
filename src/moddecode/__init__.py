"""moddecode: decoding-time multi-objective alignment of language models (the MOD paper)."""

from .combine import combine_logprobs
from .divergences import Divergence, get_divergence
from .errors import (
    ConfigError,
    IncompatiblePoliciesError,
    InfeasibleWeightsError,
    MissingReferenceError,
    ModDecodeError,
    ModelLoadError,
    UnknownNameError,
)

__all__ = [
    "combine_logprobs",
    "Divergence",
    "get_divergence",
    "ConfigError",
    "IncompatiblePoliciesError",
    "InfeasibleWeightsError",
    "MissingReferenceError",
    "ModDecodeError",
    "ModelLoadError",
    "UnknownNameError",
]

from .decoding import DecodingConfig, Generation, TextDelta, TokenDiagnostics  # noqa: E402
from .mod import MOD  # noqa: E402
from .policy import Policy  # noqa: E402

__all__ += ["MOD", "Policy", "DecodingConfig", "Generation", "TextDelta", "TokenDiagnostics"]
