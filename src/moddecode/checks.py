"""Small validators shared by every config reader, so one kind of value gets one check and one message."""

from __future__ import annotations

from .errors import ConfigError


def is_int(value) -> bool:
    """An int that is not a bool (YAML `true` must not pass as 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_positive_int(value) -> bool:
    return is_int(value) and value >= 1


def positive_int(value, what: str, *, minimum: int = 1, param: str | None = None) -> int:
    """`value` if it is an integer >= minimum, else a ConfigError naming `what`."""
    if not is_int(value) or value < minimum:
        wanted = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ConfigError(f"{what} must be {wanted}, got {value!r}", param=param)
    return value
