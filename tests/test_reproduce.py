"""scripts/reproduce.py end to end on tiny random models: sweep, ship, report from the shipped export, claims
page; a second call resumes and recomputes nothing."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from moddecode.eval.report import summarize
from moddecode.eval.sweep.layout import EXPORT_FILE, STORE_FILE

ROOT = Path(__file__).resolve().parent.parent


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def reproduce_module():
    spec = importlib.util.spec_from_file_location("reproduce", ROOT / "scripts" / "reproduce.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_configs(folder: Path, base, adapters) -> Path:
    folder.mkdir()
    common = {"policies": [{"name": "a", "source": str(base), "adapter": str(adapters[0])},
                           {"name": "b", "source": str(base), "adapter": str(adapters[1])}],
              "decoding": {"max_new_tokens": 6}, "prompts": ["hello", "what is a cat", "why is the sky blue"],
              "scorers": ["length", {"type": "conciseness", "name": "short"}],
              "extra_scorers": [{"type": "fluency", "model": str(base)}], "batch_size": 16}
    configs = {
        "pair": {**common, "name": "t-pair", "grid": {"type": "two_objective", "n": 3},
                 "report": {"reference_point": [0, 0], "claims": ["frontier"]}},
        "negative": {**common, "name": "t-neg", "grid": {"type": "negative", "ts": [0, 1], "positive": 0,
                                                          "negative": 1},
                     "report": {"reference_point": [0, 0], "claims": ["negative_weights"]}},
    }
    for stem, raw in configs.items():
        (folder / f"{stem}.yaml").write_text(yaml.safe_dump(raw))
    return folder


def test_reproduce_smoke_end_to_end_and_resume(tmp_path, base_a, adapters, capsys):
    reproduce = reproduce_module()
    configs = tiny_configs(tmp_path / "configs", base_a, adapters)
    docs, runs = tmp_path / "docs", tmp_path / "runs"
    argv = ["--configs", str(configs), "--docs", str(docs), "--runs", str(runs), "--smoke", "--skip-h1",
            "--no-progress"]
    assert reproduce.main(argv) == 0
    first = capsys.readouterr().out
    assert "[1/2] sweep negative.yaml" in first and "[2/2] sweep pair.yaml" in first
    for stem in ("pair", "negative"):
        ship = docs / stem
        assert (ship / EXPORT_FILE).is_file() and (ship / "report.html").is_file()
        assert not (ship / STORE_FILE).exists()  # the report there was computed from the shipped export
        shipped, local = summarize(ship), summarize(runs / stem)
        assert shipped.pivot == local.pivot and shipped.paired == local.paired
        assert shipped.hypervolume_cis == local.hypervolume_cis
        assert shipped.columns == ["fluency"] and len(shipped.info["prompts"]) == 2  # --smoke: 2 prompts
        assert "fluency" in (ship / "report.html").read_text()
    page = (docs / "README.md").read_text()
    for needle in ("## The paper's claims, side by side", "| Eq. 5 optimality |", "| Theorem 2(ii) |",
                   "| MOD vs RS frontier |", "| Negative weights |", "| H.1 |", "**not run**", "Rules (",
                   "MOD − RS per weighting", "--smoke", "mean fluency", "rows, decoded on "):
        assert needle in page, needle
    theory_rows = [line for line in page.splitlines() if line.startswith(("| Eq. 5", "| Theorem 2"))]
    assert all("**reproduced**" in line for line in theory_rows)

    assert reproduce.main(argv) == 0  # resumes: every row is already there
    second = capsys.readouterr().out
    assert second.count("0 added") == 2 and (docs / "README.md").read_text() == page


def test_a_config_whose_adapters_are_missing_is_skipped_with_the_reason(tmp_path, base_a, adapters, capsys):
    reproduce = reproduce_module()
    configs = tiny_configs(tmp_path / "configs", base_a, adapters)
    (configs / "pair.yaml").unlink()
    missing = yaml.safe_load((configs / "negative.yaml").read_text())
    missing["policies"][1]["adapter"] = str(tmp_path / "not-trained-yet")
    (configs / "negative.yaml").write_text(yaml.safe_dump(missing))
    docs = tmp_path / "docs"
    assert reproduce.main(["--configs", str(configs), "--docs", str(docs), "--runs", str(tmp_path / "runs"),
                           "--smoke", "--skip-h1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "skip negative.yaml" in out and "not-trained-yet" in out and "sweep negative.yaml" not in out
    assert "**not run**" in (docs / "README.md").read_text() and not (tmp_path / "runs" / "negative").exists()


def test_the_hand_written_reading_is_flagged_when_its_runs_changed(tmp_path, base_a, adapters):
    reproduce = reproduce_module()
    configs = tiny_configs(tmp_path / "configs", base_a, adapters)
    argv = ["--configs", str(configs), "--docs", str(tmp_path / "docs"), "--runs", str(tmp_path / "runs"),
            "--smoke", "--skip-h1", "--no-progress"]
    (configs / "discussion.md").write_text("<!-- runs: pair=0 negative=0 -->\nMOD wins where it should.\n")
    assert reproduce.main(argv) == 0
    page = (tmp_path / "docs" / "README.md").read_text()
    assert "## Reading the results" in page and "MOD wins where it should." in page
    assert "**Written for other runs**: negative, pair changed" in page
    hashes = " ".join(f"{stem}={summarize(tmp_path / 'docs' / stem).info['config_hash']}"
                      for stem in ("pair", "negative"))
    (configs / "discussion.md").write_text(f"<!-- runs: {hashes} -->\nMOD wins where it should.\n")
    assert reproduce.main(argv) == 0
    page = (tmp_path / "docs" / "README.md").read_text()
    assert "MOD wins where it should." in page and "Written for other runs" not in page


def test_shipped_run_files_name_repository_paths_relative_to_it():
    portable = reproduce_module().portable
    info = {"policies": [{"name": "a", "source": "smollm2", "adapter": str(ROOT / "examples/repro/../../src/x")},
                         {"name": "b", "source": "/elsewhere/model", "adapter": None}],
            "prompts_source": str(ROOT / "data" / "prompts.jsonl"), "name": "t"}
    shipped = portable(info)
    assert shipped["policies"][0] == {"name": "a", "source": "smollm2", "adapter": "src/x"}
    assert shipped["policies"][1] == info["policies"][1] and shipped["prompts_source"] == "data/prompts.jsonl"
    assert shipped["name"] == "t"


def test_h1_resumes_from_a_file_per_prompt_count(tmp_path, monkeypatch):
    reproduce = reproduce_module()
    calls = []

    def fake_run(cmd, **kwargs):  # stands in for the H.1 script: records its arguments, writes its JSON
        calls.append(cmd)
        out = Path(cmd[cmd.index("--json") + 1])
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text('{"rows": []}')

    monkeypatch.setattr(reproduce.subprocess, "run", fake_run)
    for prompts in (7, 9):
        args = reproduce.argparse.Namespace(skip_h1=False, redo_h1=True, smoke=False, h1_prompts=prompts,
                                            h1_tokens=11, runs=tmp_path / "runs")
        assert reproduce.run_h1(tmp_path / "docs", args) == {"rows": []}
    resumes = [cmd[cmd.index("--resume") + 1] for cmd in calls]
    assert resumes == [str(tmp_path / "runs" / "h1-7.jsonl"), str(tmp_path / "runs" / "h1-9.jsonl")]
    assert [cmd[cmd.index("--prompts") + 1] for cmd in calls] == ["7", "9"] and all("11" in cmd for cmd in calls)
