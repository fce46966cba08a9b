"""make-prefs on the vLLM engine: the same seeded samples, styles and finish reasons as on transformers."""

from __future__ import annotations

import json

import pytest
from conftest import needs_vllm

pytestmark = [needs_vllm, pytest.mark.slow]


def test_make_prefs_samples_the_same_answers_on_both_engines(tmp_path):
    from moddecode.train.prefs import make_prefs

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"p{i}", "prompt": p}) + "\n"
                               for i, p in enumerate(["Why do cats purr?", "Tell me about bridges."])))
    options = dict(k=1, max_new_tokens=12, prompts_per_batch=2, styles={"conciseness": "Answer in one short sentence."},
                   progress=False)
    rows = {}
    for engine, extra in (("transformers", {}), ("vllm", {"engine_options": dict(
            enforce_eager=True, max_model_len=512, kv_cache_memory_bytes=2**30)})):
        out = tmp_path / engine
        make_prefs("smollm2", prompts, ["conciseness"], out, engine=engine, **options, **extra)
        rows[engine] = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [r["style"] for r in rows["vllm"]] == [None, "conciseness", None, "conciseness"]
    assert [(r["response"], r["complete"]) for r in rows["vllm"]] == [
        (r["response"], r["complete"]) for r in rows["transformers"]]
