"""The committed training prompts: what scripts/make_train_prompts.py writes, and none near a held-out prompt."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location("make_train_prompts", ROOT / "scripts" / "make_train_prompts.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prompts(name: str) -> list[str]:
    return [json.loads(line)["prompt"] for line in (ROOT / "data" / "prompts" / name).read_text().splitlines()]


def test_train_prompts_are_the_scripts_output_and_avoid_every_held_out_prompt():
    script = load_script()
    train, heldout = prompts("train.jsonl"), prompts("heldout.jsonl")
    assert len(heldout) >= 100 and len(set(heldout)) == len(heldout)
    assert train == script.build(heldout, len(train)) and len(train) >= 2000 and len(set(train)) == len(train)
    # brute force over every pair: no shared wording, and content-word overlap under the script's threshold
    for t in train:
        words, content = " ".join(script.words(t)), script.content(t)
        for h in heldout:
            assert words != " ".join(script.words(h)), (t, h)
            other = script.content(h)
            assert len(content & other) < 0.34 * len(content | other), (t, h)


def test_near_duplicates_are_caught():
    script = load_script()
    heldout = [(" ".join(script.words(h)), script.content(h)) for h in ["What are some fun facts about penguins?"]]
    assert script.near_duplicate("what are some FUN facts about penguins", heldout, 0.34)
    assert script.near_duplicate("Give me three facts about penguins.", heldout, 0.34)
    assert not script.near_duplicate("How do I bake a loaf of bread?", heldout, 0.34)
