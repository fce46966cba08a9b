"""Engines that run the policies for MOD, by name. A new engine is one module and one line here.

    base.py          Engine: the interface MOD talks to
    transformers.py  the embedded default (rows.py: batched forwards and KV caches; cpu_linear.py)
"""

from __future__ import annotations

from ..errors import UnknownNameError
from .base import Engine


def _transformers():
    from .transformers import TransformersEngine

    return TransformersEngine


ENGINES = {"transformers": _transformers}


def get_engine_class(name: str) -> type[Engine]:
    if name not in ENGINES:
        raise UnknownNameError("engine", str(name), list(ENGINES))
    return ENGINES[name]()


__all__ = ["Engine", "ENGINES", "get_engine_class"]
