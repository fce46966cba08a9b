"""LoRA adapters bundled with moddecode: f-DPO on the bundled SmolLM2-135M-Instruct, one per objective.

Produced by scripts/train_bundled_adapters.sh; each folder holds a PEFT adapter and `moddecode.json`
(objective, divergence, beta, data hash).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelLoadError

ADAPTER_ROOT = Path(__file__).parent
DEMO_ADAPTERS = ("concise", "positive", "readable")  # the three reverse-KL adapters


def bundled_adapters() -> list[str]:
    return sorted(p.name for p in ADAPTER_ROOT.iterdir() if (p / "adapter_config.json").is_file())


def bundled_adapter(name: str) -> Path:
    """Folder of a bundled adapter, e.g. 'concise', 'positive-jsd', 'readable'."""
    path = ADAPTER_ROOT / name
    if not (path / "adapter_config.json").is_file():
        raise ModelLoadError(f"no bundled adapter {name!r}; bundled: {', '.join(bundled_adapters())}")
    return path
