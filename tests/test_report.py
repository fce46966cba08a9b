"""The sweep report: files, valid PNGs, a self-contained HTML page, and metrics that follow the rows."""

from __future__ import annotations

import base64
import re

import pytest
import torch
import typer
from PIL import Image
from typer.testing import CliRunner

from moddecode.cli.evaluate import register
from moddecode.eval.report import summarize, write_report
from moddecode.eval.store import ResultStore
from moddecode.eval.sweep import load_sweep_config, plan_jobs, run_sweep, write_run_file


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def sweep_dict(base, names=("short", "funny"), **extra) -> dict:
    return {"name": "r", "policies": [{"name": n, "source": str(base), "system_prompt": f"be {n}"} for n in names],
            "decoding": {"max_new_tokens": 5}, "prompts": ["hello", "what is a cat", "why is the sky blue"],
            "scorers": ["length", "conciseness", "vader"][: len(names)], "grid": {"type": "two_objective", "n": 3},
            "batch_size": 9, "report": {"examples": 2}, **extra}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, base_a):
    run_dir = tmp_path_factory.mktemp("report_run")
    torch.set_num_threads(1)
    run_sweep(load_sweep_config(sweep_dict(base_a)), run_dir, progress=False, log=lambda m: None)
    return run_dir


def assert_png(path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()
        assert image.format == "PNG" and image.size[0] > 100 and image.size[1] > 100


def test_report_files_and_self_contained_html(finished_run, tmp_path):
    files = write_report(finished_run, tmp_path / "out")
    assert files.html == tmp_path / "out" / "report.html"
    assert [p.name for p in files.pngs] == ["frontier_length__conciseness.png"]
    for png in files.pngs:
        assert_png(png)
    page = files.html.read_text()
    embedded = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert [base64.b64decode(e) for e in embedded] == [p.read_bytes() for p in files.pngs]
    assert "http://" not in page and "https://" not in page  # nothing to fetch: one file is the whole report
    for needle in ("Hypervolume", "reference point", "w-weighted score (paper Table 4)", "bootstrap",
                   "Win rates", "MOD vs single:short", "MOD vs single:funny", "Example generations",
                   "what is a cat", "RS skipped", "single:funny"):
        assert needle in page, needle
    assert page.count("<table") >= 6


def test_report_cli_writes_into_the_run_folder(finished_run):
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["report", str(finished_run)])
    assert result.exit_code == 0, result.output
    assert (finished_run / "report" / "report.html").is_file()
    assert f"plot: {finished_run / 'report' / 'frontier_length__conciseness.png'}" in result.stdout
    missing = CliRunner().invoke(app, ["report", str(finished_run / "nope")])
    assert missing.exit_code == 2 and "not a sweep run folder" in missing.stderr


def test_three_objectives_get_pair_plots_and_a_3d_view(tmp_path, base_a):
    raw = sweep_dict(base_a, names=("short", "funny", "kind"), grid={"type": "simplex", "steps": 2},
                     prompts=["hello", "why"])
    run_sweep(load_sweep_config(raw), tmp_path, progress=False, log=lambda m: None)
    files = write_report(tmp_path)
    names = sorted(p.name for p in files.pngs)
    assert names == ["frontier3d_length__conciseness__vader.png", "frontier_conciseness__vader.png",
                     "frontier_length__conciseness.png", "frontier_length__vader.png"]
    for png in files.pngs:
        assert_png(png)


def synthetic_run(run_dir, mod_bonus: float, complete: bool = True):
    """A run folder with hand-made rows: MOD scores = RS scores + mod_bonus on both objectives."""
    config = load_sweep_config({
        "name": "synthetic", "policies": [{"name": "a", "source": "x", "adapter": "la"},
                                          {"name": "b", "source": "x", "adapter": "lb"}],
        "prompts": ["p", "q", "r"], "scorers": ["length", "conciseness"], "grid": {"type": "two_objective", "n": 5},
        "report": {"reference_point": [-1, -1]}})
    with ResultStore(run_dir / "results.sqlite") as store:
        chash = store.put_config(config.config_hash_payload())
        write_run_file(run_dir, config, chash, {}, None)
        rows = []
        for k, job in enumerate(plan_jobs(config)):
            base = [job.weights[0] + 0.1 * (k % 3), job.weights[1]]
            bonus = mod_bonus if job.method == "MOD" else 0.0
            rows.append({"config_hash": chash, "prompt_id": job.prompt_id, "method": job.method,
                         "weights": job.weights, "response": f"r{k}",
                         "scores": {"length": base[0] + bonus, "conciseness": base[1] + bonus}})
        store.add_many(rows if complete else rows[:-3])
    return config


def test_metrics_follow_the_rows(tmp_path):
    synthetic_run(tmp_path, mod_bonus=0.5)
    s = summarize(tmp_path)
    assert s.methods == ["MOD", "RS", "single:a", "single:b"]
    assert s.reference_point == [-1.0, -1.0] and not s.reference_auto
    assert s.hypervolumes["MOD"] > s.hypervolumes["RS"] > 0
    [(a, b, table)] = s.wins
    assert (a, b) == ("MOD", "RS") and set(table) == set(s.weightings)
    assert all(r.rate == 1.0 and r.n == 3 for r in table.values())  # MOD beats RS on every prompt
    for w, row in s.pivot:
        assert max(row, key=row.get) == "MOD"
        assert set(row) == set(s.methods)  # single policies judged at every weighting
    for (method, w), cell in s.cells.items():
        assert all(c.low <= c.mean <= c.high for c in cell.means)
        assert cell.weighted.n == 3


def test_unfinished_run_reports_what_is_there(tmp_path):
    synthetic_run(tmp_path, mod_bonus=0.0, complete=False)
    s = summarize(tmp_path)
    assert s.rows_present == s.rows_planned - 3
    page = write_report(tmp_path).html.read_text()
    assert "the sweep is unfinished" in page
