"""Paired statistics of the sweep report: bootstrap intervals, hypervolume intervals, normalisation, the
fluency column, and reports recomputed from a shipped export. Brute-force references, no golden floats."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from moddecode.eval.metrics import Normalizer, hypervolume_ci, paired_difference_ci
from moddecode.eval.pareto import hypervolume
from moddecode.eval.report import summarize, write_report
from moddecode.eval.store import ResultStore, export_rows
from moddecode.eval.sweep import load_sweep_config, plan_jobs, write_run_file
from moddecode.eval.sweep.layout import EXPORT_FILE, STORE_FILE


def test_paired_interval_is_the_bootstrap_of_the_per_prompt_differences():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=40), rng.normal(size=40)
    got = paired_difference_ci(a, b, n_boot=500, seed=7)
    idx = np.random.default_rng(7).integers(0, 40, size=(500, 40))  # brute force: resample prompts, pairs together
    boot = np.array([np.mean(a[i] - b[i]) for i in idx])
    assert got.mean == pytest.approx(np.mean(a) - np.mean(b))
    assert (got.low, got.high) == pytest.approx(tuple(np.percentile(boot, [2.5, 97.5])))
    assert got.low <= got.mean <= got.high and got.n == 40
    same = paired_difference_ci(a, a)
    assert (same.low, same.mean, same.high) == (0.0, 0.0, 0.0)
    shifted = paired_difference_ci(a + 0.25, a)  # a constant gap is known exactly, however noisy a is
    assert shifted.low == pytest.approx(0.25) and shifted.high == pytest.approx(0.25)


def test_hypervolume_interval_resamples_prompts_for_every_point_at_once():
    rng = np.random.default_rng(0)
    scores = rng.normal(loc=[[1.0, 0.2], [0.6, 0.6], [0.2, 1.0]], scale=0.05, size=(30, 3, 2)).transpose(1, 0, 2)
    ref = [0.0, 0.0]
    got = hypervolume_ci(scores, ref, n_boot=300, seed=5)
    assert got.mean == pytest.approx(hypervolume(scores.mean(axis=1), ref))
    idx = np.random.default_rng(5).integers(0, 30, size=(300, 30))
    boot = [hypervolume(scores[:, i].mean(axis=1), ref) for i in idx]
    assert (got.low, got.high) == pytest.approx(tuple(np.percentile(boot, [2.5, 97.5])))
    assert got.low <= got.mean <= got.high
    constant = np.repeat(scores[:, :1], 30, axis=1)  # every prompt alike: nothing to resample
    flat = hypervolume_ci(constant, ref)
    assert flat.low == pytest.approx(flat.mean) and flat.high == pytest.approx(flat.mean)


def test_dominated_points_add_no_hypervolume():
    front = np.array([[1.0, 0.2], [0.6, 0.6], [0.2, 1.0]])
    dominated = front * 0.5
    assert hypervolume(np.vstack([front, dominated]), [0, 0]) == pytest.approx(hypervolume(front, [0, 0]))
    assert hypervolume(dominated, [0, 0]) < hypervolume(front, [0, 0])


def test_normalisation_maps_the_single_policies_to_the_unit_range():
    singles = [[0.3, -0.2, 60.0], [0.5, 0.4, 70.0], [0.4, 0.1, 95.0]]
    norm = Normalizer.from_singles(["c", "p", "r"], singles)
    mapped = norm(singles)
    assert np.all(mapped >= 0) and np.all(mapped <= 1)
    assert mapped.min(axis=0) == pytest.approx([0, 0, 0]) and mapped.max(axis=0) == pytest.approx([1, 1, 1])
    flat = Normalizer.from_singles(["c", "p"], [[0.5, 1.0], [0.5, 2.0]])  # no range: left unscaled
    assert flat([0.75, 1.5]) == pytest.approx([0.25, 0.5])
    record = {"scores": {"c": 0.5, "p": 2.0, "fluency": -1.5}}
    assert flat.record(record)["scores"] == {"c": 0.0, "p": 1.0, "fluency": -1.5}


def synthetic_run(run_dir, mod_bonus: float, seed: int = 0):
    """Hand-made rows with per-prompt noise; MOD = RS + mod_bonus on each objective; a fluency column."""
    config = load_sweep_config({
        "name": "paired", "policies": [{"name": "a", "source": "x", "adapter": "la"},
                                       {"name": "b", "source": "x", "adapter": "lb"}],
        "prompts": [f"p{i}" for i in range(12)], "scorers": ["length", "vader"],
        "extra_scorers": [{"type": "conciseness", "name": "fluency"}],
        "grid": {"type": "two_objective", "n": 5}, "report": {"reference_point": [0, -1]}})
    rng = np.random.default_rng(seed)
    noise = {pid: rng.normal(scale=[3.0, 0.1, 0.2]) for pid, _ in config.prompts}
    with ResultStore(run_dir / STORE_FILE) as store:
        chash = store.put_config(config.config_hash_payload())
        write_run_file(run_dir, config, chash, {}, None)
        rows = []
        for job in plan_jobs(config):
            w = job.weights
            base = np.array([20 + 30 * w[0], 0.6 * w[1], -1.0]) + noise[job.prompt_id]
            base[:2] += mod_bonus if job.method == "MOD" else 0.0
            rows.append({"config_hash": chash, "prompt_id": job.prompt_id, "method": job.method, "weights": w,
                         "response": f"{job.method} {w} {job.prompt_id}",
                         "scores": dict(zip(["length", "vader", "fluency"], base.tolist()))})
        store.add_many(rows)
    return config


def test_summary_pairs_mod_with_rs_and_normalises_by_the_singles(tmp_path):
    synthetic_run(tmp_path, mod_bonus=0.0)
    s = summarize(tmp_path, n_boot=200)
    assert s.columns == ["fluency"] and s.normalizer is not None
    singles = np.array([[c.mean for c in s.single_cell(m).means] for m in ("single:a", "single:b")])
    assert s.normalizer(singles).min(axis=0) == pytest.approx([0, 0])
    assert s.normalizer(singles).max(axis=0) == pytest.approx([1, 1])
    [(a, b, table)] = s.paired
    assert (a, b) == ("MOD", "RS") and set(table) == set(s.weightings)
    for p in table.values():  # identical methods: every paired interval is exactly 0
        assert all((x.low, x.mean, x.high) == (0.0, 0.0, 0.0) for x in (*p.objectives, p.weighted, *p.columns))
    for w, row in s.pivot:  # brute force: w . normalised mean vector
        for m, value in row.items():
            cell = s.single_cell(m) if m.startswith("single:") else s.cells[(m, w)]
            raw = np.array([c.mean for c in cell.means])
            want = sum(wi * (x - lo) / (hi - lo) for wi, x, lo, hi in zip(w, raw, s.normalizer.low, s.normalizer.high))
            assert value == pytest.approx(want)
    for m in s.methods:
        ci = s.hypervolume_cis[m]
        assert ci.mean == s.hypervolumes[m] and ci.low <= ci.high


def test_a_constant_mod_advantage_is_an_interval_at_that_advantage(tmp_path):
    synthetic_run(tmp_path, mod_bonus=0.05)
    s = summarize(tmp_path, n_boot=200)
    [(_, _, table)] = s.paired
    for w, p in table.items():
        assert [x.low for x in p.objectives] == pytest.approx([0.05, 0.05])
        assert [x.high for x in p.objectives] == pytest.approx([0.05, 0.05])
        assert p.weighted.low > 0 if sum(w) > 0 else True
        assert (p.columns[0].low, p.columns[0].high) == (0.0, 0.0)
    assert all(r.rate == 1.0 for r in s.wins[0][2].values())
    page = write_report(tmp_path).html.read_text()
    for needle in ("Paired differences (MOD − RS)", "Δ w-weighted", "Δ fluency", "normalised by the single",
                   "hypervolume [95% CI]", "mean fluency", "MOD: fluency"):
        assert needle in page, needle


def test_a_report_from_the_shipped_export_is_the_report_from_the_store(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    synthetic_run(run, mod_bonus=0.02, seed=4)
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    shutil.copy(run / "run.json", shipped / "run.json")
    info = summarize(run, n_boot=100).info
    assert export_rows(run / STORE_FILE, info["config_hash"], shipped / EXPORT_FILE) == len(plan_jobs(
        load_sweep_config_of(info)))
    first = (shipped / EXPORT_FILE).read_bytes()
    export_rows(run / STORE_FILE, info["config_hash"], shipped / EXPORT_FILE)
    assert (shipped / EXPORT_FILE).read_bytes() == first  # a re-export is byte-identical (git-friendly)
    a, b = summarize(run, n_boot=100), summarize(shipped, n_boot=100)
    assert not (shipped / STORE_FILE).exists()
    assert a.hypervolume_cis == b.hypervolume_cis and a.pivot == b.pivot and a.wins == b.wins
    assert {k: (c.means, c.weighted, c.columns) for k, c in a.cells.items()} == \
        {k: (c.means, c.weighted, c.columns) for k, c in b.cells.items()}
    assert a.paired == b.paired and a.responses == b.responses


def load_sweep_config_of(info):
    return load_sweep_config({"name": "paired", "policies": [{"name": "a", "source": "x", "adapter": "la"},
                                                              {"name": "b", "source": "x", "adapter": "lb"}],
                              "prompts": [p["prompt"] for p in info["prompts"]], "scorers": ["length", "vader"],
                              "grid": {"type": "two_objective", "n": 5}})


@pytest.mark.parametrize("change, message", [
    ({"extra_scorers": [{"type": "length"}]}, "scorer names must be distinct"),
    ({"extra_scorers": {"type": "fluency"}}, "extra_scorers` must be a list"),
    ({"report": {"claims": ["frontiers"]}}, "report.claims must be a list drawn from"),
])
def test_extra_scorers_and_claims_are_validated(change, message):
    from moddecode.errors import ConfigError

    raw = {"policies": [{"name": "a", "source": "x", "adapter": "la"}, {"name": "b", "source": "x", "adapter": "lb"}],
           "prompts": ["p"], "scorers": ["length", "vader"], "grid": {"type": "two_objective", "n": 3}, **change}
    with pytest.raises(ConfigError, match=message):
        load_sweep_config(raw)


def test_extra_scorers_enter_the_config_hash_only_when_given():
    raw = {"policies": [{"name": "a", "source": "x", "adapter": "la"}, {"name": "b", "source": "x", "adapter": "lb"}],
           "prompts": ["p"], "scorers": ["length", "vader"], "grid": {"type": "two_objective", "n": 3}}
    plain = load_sweep_config(raw).config_hash_payload()
    assert "extra_scorers" not in plain  # existing runs keep their hash
    extra = load_sweep_config({**raw, "extra_scorers": ["conciseness"]})
    assert extra.config_hash_payload()["extra_scorers"] == [{"type": "conciseness"}]
    assert extra.score_names == ("length", "vader", "conciseness")
