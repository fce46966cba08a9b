"""Preference data: pairs from complete responses, styles per objective, margins, resume."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from typer.testing import CliRunner

from moddecode.cli.app import app
from moddecode.errors import ConfigError
from moddecode.train.prefs import PromptItem, build_pairs, make_prefs, write_pair_files


def test_only_a_complete_response_can_be_chosen():
    item = PromptItem("p", "q")
    # the best-scoring response was cut at the token limit: the best complete one is chosen instead
    pairs = build_pairs(item, ["cut", "whole", "worst"], [0.9, 0.5, 0.1], objective="x", complete=[False, True, True])
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [("whole", "worst")]
    # no complete response beats the rest: no pair
    assert build_pairs(item, ["cut", "whole"], [0.9, 0.5], objective="x", complete=[False, True]) == []


def write_samples(folder, rows):
    folder.mkdir()
    (folder / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def sample(prompt_id, style, response, a, b, complete=True):
    return {"batch": 0, "prompt_id": prompt_id, "prompt": "q", "style": style, "response": response,
            "complete": complete, "scores": {"a": a, "b": b}}


def test_an_objective_pairs_its_own_style_against_plain_answers_with_its_own_margin(tmp_path):
    out = tmp_path / "prefs"
    write_samples(out, [sample("p", None, "plain", 0.0, 0.0), sample("p", "a", "styled for a", 1.0, -5.0),
                        sample("p", "b", "styled for b", -1.0, 0.5)])
    files = write_pair_files(out, [PromptItem("p", "q")], ["a", "b"], pairs_per_prompt=1, margin={"a": 0.5, "*": 0.1})
    a_pairs = [json.loads(line) for line in files["a"].read_text().splitlines()]
    b_pairs = [json.loads(line) for line in files["b"].read_text().splitlines()]
    # b's style would be a's worst answer, but only plain and a's own style compete for a
    assert [(p["chosen"], p["rejected"]) for p in a_pairs] == [("styled for a", "plain")]
    assert [(p["chosen"], p["rejected"]) for p in b_pairs] == [("styled for b", "plain")]
    # b's margin (the "*" default) now exceeds its gap: no pair; a's own margin is unaffected
    files = write_pair_files(out, [PromptItem("p", "q")], ["a", "b"], pairs_per_prompt=1, margin={"a": 0.5, "*": 0.6})
    assert files["b"].read_text() == "" and files["a"].read_text() != ""
    with pytest.raises(ConfigError, match="no scorer names"):
        write_pair_files(out, [PromptItem("p", "q")], ["a", "b"], pairs_per_prompt=1, margin={"c": 1.0})


def test_make_prefs_answers_each_prompt_plainly_and_once_per_style_and_resumes(tmp_path, base_a):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"question {i}"}) + "\n" for i in range(3)))
    out = tmp_path / "prefs"
    kwargs = dict(k=2, max_new_tokens=6, prompts_per_batch=2, styles={"length": "answer at length"}, progress=False)
    files = make_prefs(str(base_a), prompts, ["length", "conciseness"], out, **kwargs)
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert Counter((r["prompt_id"], r["style"]) for r in rows) == Counter(
        (f"p{i}", s) for i in range(3) for s in (None, None, "length"))
    assert all(isinstance(r["complete"], bool) and set(r["scores"]) == {"length", "conciseness"} for r in rows)
    plain = {r["response"] for r in rows if r["style"] is None}
    for line in files["conciseness"].read_text().splitlines():  # conciseness has no style: plain answers only
        pair = json.loads(line)
        assert {pair["chosen"], pair["rejected"]} <= plain
    # a second run finds every batch done and samples nothing new; other settings are refused
    make_prefs(str(base_a), prompts, ["length", "conciseness"], out, **kwargs)
    assert len((out / "samples.jsonl").read_text().splitlines()) == len(rows)
    with pytest.raises(ConfigError, match="other settings"):
        make_prefs(str(base_a), prompts, ["length", "conciseness"], out, **{**kwargs, "styles": {"length": "short"}})
    with pytest.raises(ConfigError, match="no scorer names"):
        make_prefs(str(base_a), prompts, ["length"], tmp_path / "other", **{**kwargs, "styles": {"vader": "happy"}})


def test_a_larger_limit_or_a_crash_mid_batch_resumes_to_what_one_run_would_have_sampled(tmp_path, base_a):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"question {i}"}) + "\n" for i in range(5)))
    kwargs = dict(k=2, max_new_tokens=6, prompts_per_batch=2, progress=False)

    def samples(folder):
        rows = [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]
        return sorted((r["batch"], r["prompt_id"], r["response"]) for r in rows)

    make_prefs(str(base_a), prompts, ["length"], tmp_path / "grown", limit=3, **kwargs)
    assert {p for _, p, _ in samples(tmp_path / "grown")} == {"p0", "p1", "p2"}  # batch 1 holds p2 alone
    first = [s for s in samples(tmp_path / "grown") if s[0] == 0]
    files = make_prefs(str(base_a), prompts, ["length"], tmp_path / "grown", limit=4, **kwargs)
    make_prefs(str(base_a), prompts, ["length"], tmp_path / "whole", limit=4, **kwargs)
    grown = samples(tmp_path / "grown")
    assert [s for s in grown if s[0] == 0] == first  # the finished batch was kept, not resampled
    assert grown == samples(tmp_path / "whole")  # the short batch was redone whole, as one run samples it
    # a crash that cut the last batch's lines (one prompt's answers only in part): that batch is redone whole
    path = tmp_path / "grown" / "samples.jsonl"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-1]) + '{"batch": 1, "prom')
    make_prefs(str(base_a), prompts, ["length"], tmp_path / "grown", limit=4, **kwargs)
    assert samples(tmp_path / "grown") == grown
    # a lower limit later keeps the batch that a higher one sampled whole (nothing is resampled or lost)
    make_prefs(str(base_a), prompts, ["length"], tmp_path / "grown", limit=3, **kwargs)
    assert samples(tmp_path / "grown") == grown
    assert {json.loads(line)["prompt_id"] for line in files["length"].read_text().splitlines()} <= {"p0", "p1", "p2", "p3"}
    with pytest.raises(ConfigError, match="positive"):
        make_prefs(str(base_a), prompts, ["length"], tmp_path / "bad", limit=0, **kwargs)


@pytest.mark.parametrize("args, message", [
    (["--style", "no equals sign"], "write OBJECTIVE=VALUE"),
    (["--margin", "vader=lots"], "is not a number"),
    (["--margin", "0.1", "--margin", "0.2"], "at most one bare number"),
])
def test_make_prefs_command_explains_bad_options(tmp_path, args, message):
    prompts = tmp_path / "p.txt"
    prompts.write_text("hello\n")
    result = CliRunner().invoke(app, ["make-prefs", str(prompts), "-o", str(tmp_path / "o"), "--scorer", "vader", *args])
    assert result.exit_code != 0 and message in result.output
