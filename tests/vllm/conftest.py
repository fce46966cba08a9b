"""Fixtures for the vLLM engine tests (run them in .venv-vllm: `.venv-vllm/bin/python -m pytest -q tests/vllm`).

Tests that need vLLM skip where it is not installed (the main .venv); the pure-logic tests run anywhere.
vLLM runs in-process here (no engine-core process to spawn) unless a test asks otherwise.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
# vLLM's CPU worker drops torch to one thread unless told otherwise; the transformers engine that the
# tests compare against runs in this same process and would crawl.
os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
# On a CPU shared with other work, vLLM's CPU worker binding its OpenMP threads to cores, and threads
# spinning at barriers, make a step wait for whatever else runs on those cores (seconds per token here).
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Not just find_spec: with tests/ on sys.path this very folder is a namespace package named "vllm".
_spec = importlib.util.find_spec("vllm")
HAS_VLLM = _spec is not None and _spec.origin is not None
needs_vllm = pytest.mark.skipif(not HAS_VLLM, reason="vLLM is not installed (bash scripts/setup.sh --vllm)")


@pytest.fixture(scope="session")
def bundled_adapter_policies():
    """The three bundled LoRA adapters on SmolLM2, and the plain base as reference."""
    from moddecode import Policy
    from moddecode.adapters import DEMO_ADAPTERS, bundled_adapter

    policies = [Policy.load("smollm2", adapter=bundled_adapter(n), name=n) for n in DEMO_ADAPTERS]
    return policies, Policy.load("smollm2", name="base")


@pytest.fixture(scope="session")
def vllm_mod(bundled_adapter_policies):
    """MOD on vLLM over the bundled adapters (with the base as reference); one engine for the session."""
    from moddecode import MOD

    policies, reference = bundled_adapter_policies
    return MOD(policies, reference=reference, engine="vllm",
               engine_options=dict(enforce_eager=True, max_model_len=512, kv_cache_memory_bytes=2**30))


@pytest.fixture(scope="session")
def hf_mod(bundled_adapter_policies):
    """The same MOD on the transformers engine: the reference the vLLM engine must equal."""
    from moddecode import MOD

    policies, reference = bundled_adapter_policies
    return MOD(policies, reference=reference)
