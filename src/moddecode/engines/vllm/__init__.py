"""MOD on vLLM: `VllmEngine` runs each MOD row as sibling requests combined by a logits processor.

Needs the `vllm` extra (`bash scripts/setup.sh --vllm` makes `.venv-vllm`); importing this package
does not import vLLM (the engine loads it when constructed).
"""

from .engine import VllmEngine
from .protocol import PROCESSOR_NAME
from .siblings import LockstepError

__all__ = ["VllmEngine", "LockstepError", "PROCESSOR_NAME"]
