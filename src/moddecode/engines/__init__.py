"""Engines that run the policies for MOD, by name. A new engine is one module and one line here.

    base.py          Engine: the interface MOD talks to
    transformers.py  the embedded default (rows.py: batched forwards and KV caches; cpu_linear.py)
    vllm/            MOD on vLLM (sibling requests and a logits processor; needs the `vllm` extra)
"""

from __future__ import annotations

from ..errors import ConfigError, UnknownNameError
from .base import Engine


def _transformers():
    from .transformers import TransformersEngine

    return TransformersEngine


def _vllm():
    import importlib.util

    spec = importlib.util.find_spec("vllm")
    if spec is None or spec.origin is None:  # (a namespace folder named vllm is not vLLM)
        raise ConfigError("engine 'vllm' needs vLLM, which is not installed in this environment: "
                          "`bash scripts/setup.sh --vllm` makes .venv-vllm with it; or use engine 'transformers'",
                          param="engine")
    from .vllm import VllmEngine  # imports vLLM itself only when an engine is built

    return VllmEngine


ENGINES = {"transformers": _transformers, "vllm": _vllm}


def get_engine_class(name: str) -> type[Engine]:
    if name not in ENGINES:
        raise UnknownNameError("engine", str(name), list(ENGINES))
    return ENGINES[name]()


__all__ = ["Engine", "ENGINES", "get_engine_class"]
