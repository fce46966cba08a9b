"""The registry of decoding strategies. A new strategy is one module defining a `Strategy` and one line here."""

from __future__ import annotations

from ..errors import UnknownNameError
from .beam import BEAM
from .greedy import GREEDY
from .run import Strategy
from .sampling import SAMPLE

STRATEGIES: dict[str, Strategy] = {s.name: s for s in (GREEDY, SAMPLE, BEAM)}


def get_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise UnknownNameError("strategy", str(name), list(STRATEGIES))
    return STRATEGIES[name]
