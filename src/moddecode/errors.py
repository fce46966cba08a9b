"""User-facing errors. Every one says what was wrong and how to fix it.

They subclass ValueError/TypeError so library callers can catch them as usual; the CLI and the
server translate `ModDecodeError` into one clear line or a 4xx JSON body.
"""

from __future__ import annotations

import difflib


class ModDecodeError(Exception):
    """Base of all errors this package raises on bad input or an impossible request."""


class ConfigError(ModDecodeError, ValueError):
    """A parameter has a bad value. `param` names it where known (e.g. 'top_p'), for the server's 400s."""

    def __init__(self, message: str = "", *, param: str | None = None):
        super().__init__(message)
        self.param = param


class UnknownNameError(ConfigError):
    """A name is not in a registry; the message suggests the closest known names."""

    def __init__(self, kind: str, name: str, known: list[str]):
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        super().__init__(f"unknown {kind} {name!r}.{hint} Known: {', '.join(known)}.")
        self.name = name
        self.known = known


class MissingReferenceError(ConfigError):
    """The math needs the reference policy's log-probabilities and none were given."""


class InfeasibleWeightsError(ModDecodeError, ValueError):
    """No token lies in the domain of (grad f)^-1 for these weights."""


class IncompatiblePoliciesError(ConfigError):
    """Policies that must be combined do not share a vocabulary."""


class ModelLoadError(ModDecodeError, OSError):
    """A model, tokenizer or adapter could not be loaded."""
