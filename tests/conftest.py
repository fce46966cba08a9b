from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tiny import make_lora_adapter, make_model_folder  # noqa: E402


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tiny")


@pytest.fixture(scope="session")
def base_a(tiny_dir) -> Path:
    return make_model_folder(tiny_dir / "base_a", seed=1)


@pytest.fixture(scope="session")
def base_b(tiny_dir) -> Path:
    """Another base model with the same tokenizer (and a different lm_head padding)."""
    return make_model_folder(tiny_dir / "base_b", seed=2, lm_head_padding=11)


@pytest.fixture(scope="session")
def adapters(tiny_dir, base_a) -> list[Path]:
    return [make_lora_adapter(base_a, tiny_dir / f"lora{i}", seed=10 + i) for i in range(3)]


@pytest.fixture
def cache():
    from moddecode.policy import ModelCache

    return ModelCache()


@pytest.fixture
def one_torch_thread():
    """torch on one thread for the test: tiny matmuls on a shared 2-core machine only contend (OpenMP threads
    spinning against each other cost ~100x). Modules opt in with pytest.mark.usefixtures("one_torch_thread")."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
