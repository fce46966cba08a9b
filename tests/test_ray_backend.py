"""The Ray backend on a local Ray instance gives the same rows as the local backend (greedy decoding)."""

from __future__ import annotations

import pytest
import torch

from moddecode.eval.store import ResultStore
from moddecode.eval.sweep import load_sweep_config, plan_jobs, run_sweep

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'moddecode[ray]'")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def rows_of(run_dir, config_hash) -> dict:
    with ResultStore(run_dir / "results.sqlite") as store:
        return {(r.prompt_id, r.method, r.weights): (r.response, r.scores) for r in store.rows(config_hash)}


def test_ray_and_local_backends_store_the_same_rows(tmp_path, base_a, adapters, local_ray):
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # Ray actors with num_cpus=1 run one thread too
    try:
        config = load_sweep_config({
            "name": "ray", "policies": [{"name": "a", "source": str(base_a), "adapter": str(adapters[0])},
                                        {"name": "b", "source": str(base_a), "adapter": str(adapters[1])}],
            "decoding": {"max_new_tokens": 5}, "prompts": ["hello", "what is a cat", "tell me about the sky"],
            "scorers": ["length", "conciseness"], "grid": {"type": "two_objective", "n": 3}, "batch_size": 3})
        local = run_sweep(config, tmp_path / "local", progress=False)
        remote = run_sweep(config, tmp_path / "ray", backend="ray", workers=2, progress=False)
    finally:
        torch.set_num_threads(before)
    assert local.config_hash == remote.config_hash
    expected = rows_of(tmp_path / "local", local.config_hash)
    assert len(expected) == len(plan_jobs(config)) and {m for _, m, _ in expected} == {"MOD", "RS", "single:a",
                                                                                        "single:b"}
    assert rows_of(tmp_path / "ray", remote.config_hash) == expected
    assert ray.is_initialized()  # the backend leaves a Ray instance it did not start running
