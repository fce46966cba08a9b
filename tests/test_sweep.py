"""Sweeps on tiny models: resume after an interruption (exception or SIGKILL), RS, config validation, CLI."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import types

import pytest
import torch
import typer
from typer.testing import CliRunner

from moddecode.decoding import DecodingConfig
from moddecode.errors import ConfigError, ModDecodeError
from moddecode.cli.evaluate import register
from moddecode.eval.scorers import register_scorer
from moddecode.eval.store import ResultStore, result_key, weights_key
from moddecode.baselines import rs_skip_reason
from moddecode.eval.sweep import load_sweep_config, make_batches, plan_jobs, read_run_file, run_sweep
from moddecode.eval.sweep.run import where_rows_run
from moddecode.mod import MOD


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def prompted(base, **extra) -> dict:
    """Two prompted policies of one tiny model; 4 prompts x 3 weightings."""
    return {"name": "t", "policies": [{"name": "a", "source": str(base), "system_prompt": "be short"},
                                      {"name": "b", "source": str(base), "system_prompt": "be funny"}],
            "decoding": {"max_new_tokens": 5}, "prompts": ["hello", "what is a cat", "tell me about the sky", "why"],
            "scorers": ["length", "conciseness"], "grid": {"type": "two_objective", "n": 3}, "batch_size": 4, **extra}


def stored(run_dir) -> dict:
    """(prompt_id, method, weights_key) -> (row id, created_at, response), straight from SQLite."""
    con = sqlite3.connect(run_dir / "results.sqlite")
    try:
        rows = con.execute("SELECT prompt_id, method, weights_key, id, created_at, response FROM results").fetchall()
    finally:
        con.close()
    out = {(p, m, w): (i, t, r) for p, m, w, i, t, r in rows}
    assert len(out) == len(rows), "a (prompt, method, weighting) is stored twice"
    return out


def plan_keys(config) -> set:
    return {result_key(j.prompt_id, j.method, j.weights) for j in plan_jobs(config)}


class FlakyLength:
    """Word counts; raises once `state["calls"]` passes `state["fail_after"]` (simulates a crash mid-sweep)."""

    state = {"calls": 0, "fail_after": 10**9}

    def __init__(self, name: str = "flaky_length"):
        self.name = name

    def score(self, prompts, responses):
        self.state["calls"] += 1
        if self.state["calls"] > self.state["fail_after"]:
            raise RuntimeError("scorer crashed")
        return [float(len(r.split())) for r in responses]


register_scorer("flaky_length", FlakyLength, overwrite=True)


def test_resume_after_a_crash_recomputes_nothing(tmp_path, base_a, monkeypatch):
    config = load_sweep_config(prompted(base_a, scorers=["flaky_length", "conciseness"]))
    calls = []
    original = MOD.generate
    monkeypatch.setattr(MOD, "generate", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    FlakyLength.state.update(calls=0, fail_after=2)  # the third batch dies after generating
    with pytest.raises(RuntimeError, match="scorer crashed"):
        run_sweep(config, tmp_path, progress=False)
    first = stored(tmp_path)
    assert len(first) == 2 * config.batch_size  # exactly the two committed batches
    assert read_run_file(tmp_path)["ran_on"] == [where_rows_run(config, "local")]  # said before the crash

    FlakyLength.state.update(calls=0, fail_after=10**9)
    calls.clear()
    summary = run_sweep(config, tmp_path, progress=False)
    second = stored(tmp_path)
    remaining = [j for j in plan_jobs(config) if result_key(j.prompt_id, j.method, j.weights) not in first]
    assert len(calls) == len(make_batches(remaining, config.batch_size))  # only the unfinished batches ran
    assert set(second) == plan_keys(config) and summary.already_done == len(first)
    assert all(second[k] == v for k, v in first.items())  # same row ids and creation times: not recomputed
    assert run_sweep(config, tmp_path, progress=False).added == 0


def test_run_file_lists_the_machines_that_produced_rows(tmp_path, base_a):
    config = load_sweep_config(prompted(base_a))
    run_sweep(config, tmp_path, progress=False)
    here = where_rows_run(config, "local")
    assert read_run_file(tmp_path)["ran_on"] == [here] and "torch" in here
    info = read_run_file(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({**info, "ran_on": ["another machine"]}))
    assert run_sweep(config, tmp_path, progress=False).added == 0
    assert read_run_file(tmp_path)["ran_on"] == ["another machine"]  # a rerun that adds nothing claims no rows


KILL_SCRIPT = """
import json, sys, time, torch
torch.set_num_threads(1)
from moddecode.eval.scorers import register_scorer
from moddecode.eval.sweep import load_sweep_config, run_sweep

class SlowLength:
    def __init__(self, name="slow_length"):
        self.name = name
    def score(self, prompts, responses):
        time.sleep(0.5)  # slow enough to be killed mid-sweep
        return [float(len(r.split())) for r in responses]

register_scorer("slow_length", SlowLength)
run_sweep(load_sweep_config(json.loads(sys.argv[1])), sys.argv[2], progress=False)
"""


class SlowLength:
    """The killed subprocess's scorer (same name, same spec, so the same config hash), without the delay."""

    def __init__(self, name: str = "slow_length"):
        self.name = name

    def score(self, prompts, responses):
        return [float(len(r.split())) for r in responses]


register_scorer("slow_length", SlowLength, overwrite=True)


def test_killed_sweep_resumes_without_loss_or_duplicates(tmp_path, base_a):
    raw = prompted(base_a, scorers=["slow_length", "conciseness"], batch_size=2)
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, json.dumps(raw), str(run_dir)],
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if (run_dir / "results.sqlite").exists() and _count(run_dir) >= 2:
                break
            time.sleep(0.1)
        assert proc.poll() is None, "the sweep ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    first = stored(run_dir)
    config = load_sweep_config(raw)
    assert 0 < len(first) < len(plan_keys(config))
    summary = run_sweep(config, run_dir, progress=False)
    second = stored(run_dir)
    assert set(second) == plan_keys(config) and summary.added == len(second) - len(first)
    assert all(second[k] == v for k, v in first.items())


def _count(run_dir) -> int:
    try:
        con = sqlite3.connect(run_dir / "results.sqlite")
        try:
            return con.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        finally:
            con.close()
    except sqlite3.OperationalError:  # the table is not created yet
        return 0


def test_prompted_sweep_skips_rs_and_one_hot_mod_is_the_single_policy(tmp_path, base_a):
    config = load_sweep_config(prompted(base_a))
    summary = run_sweep(config, tmp_path, progress=False, log=lambda msg: None)
    assert "RS" not in config.method_names() and "system prompts" in summary.skipped["RS"]
    info = json.loads((tmp_path / "run.json").read_text())
    assert info["skipped"] == summary.skipped and info["config_hash"] == summary.config_hash
    rows = stored(tmp_path)
    assert {m for _, m, _ in rows} == {"MOD", "single:a", "single:b"}
    for pid, _ in config.prompts:  # reverse KL at a one-hot weighting is exactly that policy
        assert rows[(pid, "MOD", "1.0,0.0")][2] == rows[(pid, "single:a", "1.0,0.0")][2]
        assert rows[(pid, "MOD", "0.0,1.0")][2] == rows[(pid, "single:b", "0.0,1.0")][2]


def test_several_divergences_are_one_mod_method_each(tmp_path, base_a):
    config = load_sweep_config(prompted(base_a, prompts=["hello", "why"], divergences=["reverse_kl", "forward_kl"],
                                        methods=["mod", "single"]))
    assert config.method_names() == ["MOD:reverse_kl", "MOD:forward_kl", "single:a", "single:b"]
    run_sweep(config, tmp_path, progress=False, log=lambda msg: None)
    rows = stored(tmp_path)
    assert set(rows) == plan_keys(config)
    for pid, _ in config.prompts:  # every divergence reduces to the policy itself at a one-hot weighting
        assert rows[(pid, "MOD:forward_kl", "1.0,0.0")][2] == rows[(pid, "single:a", "1.0,0.0")][2]


def test_divergences_are_per_call_settings_of_one_mod(tmp_path, base_a, monkeypatch):
    from moddecode.config import load_policy_set

    config = load_sweep_config(prompted(base_a, prompts=["hello", "why"], divergences=["reverse_kl", "forward_kl"],
                                        methods=["mod", "single"]))
    built, calls = [], []
    init, generate = MOD.__init__, MOD.generate

    def spy_init(self, policies, **kwargs):
        built.append(len(policies))
        init(self, policies, **kwargs)

    def spy_generate(self, prompts, weights, config=None, **overrides):
        calls.append((len(self.policies), config, overrides))
        return generate(self, prompts, weights, config, **overrides)

    monkeypatch.setattr(MOD, "__init__", spy_init)
    monkeypatch.setattr(MOD, "generate", spy_generate)
    run_sweep(config, tmp_path, progress=False, log=lambda msg: None)
    assert sorted(built) == [1, 1, 2]  # one MOD over both policies, one per policy alone; none per divergence
    both = [(c, o) for n, c, o in calls if n == 2]
    assert {c.divergence for c, _ in both} == {"reverse_kl", "forward_kl"} and not any(o for _, o in both)
    assert {c.max_new_tokens for _, c, _ in calls} == {5}  # the sweep's decoding section, as a DecodingConfig

    monkeypatch.setattr(MOD, "__init__", init)
    monkeypatch.setattr(MOD, "generate", generate)
    rows = stored(tmp_path)
    mod, _ = load_policy_set(config.policy_set)
    for name in config.divergences:  # each method's rows are that divergence's decode
        direct = mod.generate([text for _, text in config.prompts], [0.5, 0.5], max_new_tokens=5, divergence=name)
        assert [rows[(pid, f"MOD:{name}", "0.5,0.5")][2] for pid, _ in config.prompts] == direct


def test_every_decoding_option_but_the_divergence_is_a_sweep_option():
    values = {"strategy": "beam", "max_new_tokens": 3, "temperature": 0.5, "top_k": 5, "top_p": 0.9, "seed": 1,
              "num_beams": 2, "scope": "token", "stop": ["\n"], "ignore_eos": True}
    assert set(values) == set(DecodingConfig.field_names()) - {"divergence"}
    config = load_sweep_config(prompted("smollm2", decoding=values))
    assert config.decoding_config == DecodingConfig(**values) and config.decoding == values
    one_stop = load_sweep_config(prompted("smollm2", decoding={"stop": "END"}))
    assert one_stop.decoding == {"stop": ["END"]} and one_stop.decoding_config.stop == ("END",)
    assert load_sweep_config(prompted("smollm2", decoding={"stop": None})).decoding_config.stop == ()


def test_rs_on_lora_adapters(tmp_path, base_a, adapters):
    raw = prompted(base_a, prompts=["hello", "what is a cat", "tell me about the sky"],
                   grid=[{"type": "two_objective", "n": 3}, {"type": "negative", "ts": [1]}])
    raw["policies"] = [{"name": "a", "source": str(base_a), "adapter": str(adapters[0])},
                       {"name": "b", "source": str(base_a), "adapter": str(adapters[1])}]
    config = load_sweep_config(raw)
    assert config.rs_skip_reason is None and "RS" in config.method_names()
    run_sweep(config, tmp_path, progress=False)
    rows = stored(tmp_path)
    assert set(rows) == plan_keys(config)
    assert {w for _, m, w in rows if m == "RS"} == {weights_key(w) for w in config.weightings} | {"2.0,-1.0"}
    for pid, _ in config.prompts:  # a one-hot soup is that policy's own parameters
        assert rows[(pid, "RS", "1.0,0.0")][2] == rows[(pid, "single:a", "1.0,0.0")][2]
        assert rows[(pid, "RS", "0.0,1.0")][2] == rows[(pid, "single:b", "0.0,1.0")][2]


def test_rs_applicability(tiny_dir, base_a, base_b, adapters):
    from tiny import make_model_folder

    from moddecode.config import PolicySpec

    twin = make_model_folder(tiny_dir / "twin_of_a", seed=7)
    spec = PolicySpec
    assert rs_skip_reason([spec("a", str(base_a), system_prompt="x"), spec("b", str(base_a), system_prompt="y")])
    assert "identical" in rs_skip_reason([spec("a", str(base_a)), spec("b", str(base_a))])
    assert "some policies" in rs_skip_reason([spec("a", str(base_a), adapter=str(adapters[0])), spec("b", str(base_a))])
    assert "architecture" in rs_skip_reason([spec("a", str(base_a)), spec("b", str(base_b))])
    assert rs_skip_reason([spec("a", str(base_a)), spec("b", str(twin))]) is None
    assert rs_skip_reason([spec("a", str(base_a), adapter=str(d)) for d in adapters]) is None


def test_full_model_rs_runs(tmp_path, tiny_dir, base_a):
    from tiny import make_model_folder

    twin = make_model_folder(tiny_dir / "twin_for_rs", seed=8)
    raw = prompted(base_a, prompts=["hello"], methods=["rs"], grid=[[0.5, 0.5]])
    raw["policies"] = [{"name": "a", "source": str(base_a)}, {"name": "b", "source": str(twin)}]
    run_sweep(load_sweep_config(raw), tmp_path, progress=False)
    assert set(stored(tmp_path)) == {("p0", "RS", "0.5,0.5")}


BAD_CONFIGS = [
    (dict(grid={"type": "explicit", "weights": [[1, 0, 0]]}), "has 3 weights but there are 2 policies"),
    (dict(grid={"type": "simplx", "steps": 2}), "Did you mean 'simplex'"),
    (dict(grid={"type": "two_objective", "m": 2}), "does not take ['m']"),
    (dict(scorer=["length"]), "Did you mean 'scorers'"),
    (dict(scorers=["length"]), "one scorer per policy"),
    (dict(scorers=["length", "vadr"]), "Did you mean 'vader'"),
    (dict(scorers=["length", "length"]), "must be distinct"),
    (dict(methods=["mod", "soups"]), "unknown method 'soups'"),
    (dict(decoding={"strategy": "beem"}), "Did you mean 'beam'"),
    (dict(decoding={"max_tokens": 5}), "Did you mean 'max_new_tokens'"),
    (dict(decoding={"ignore_eos": "yes"}), "decoding: ignore_eos must be true or false"),
    (dict(decoding={"divergence": "jsd"}), "top level, `divergences: [reverse_kl, jsd]`"),
    (dict(grid=[[2e6, -2e6 + 1]]), "grid: weights must lie between"),
    (dict(divergence="jsd"), "needs a reference policy"),
    (dict(grid=[[1, 1]]), "needs a reference policy"),
    (dict(divergence="jsd", divergences=["jsd"]), "not both"),
    (dict(prompts=[{"id": "x", "prompt": "a"}, {"id": "x", "prompt": "b"}]), "repeated"),
    (dict(prompts=["hi", ""]), "prompts[1]"),
    (dict(prompts={"path": "no/such.jsonl"}), "prompts file not found"),
    (dict(report={"reference_point": [0]}), "reference_point must be 2"),
    (dict(batch_size=0), "batch_size"),
    (dict(rs={"merge": "avg"}), "unknown RS merge method"),
    (dict(policies=[{"name": "a"}]), "needs a non-empty string `source`"),
    (dict(scorers=[{"type": "length", "wrong": 1, "name": "words"}, "conciseness"]),
     "scorer 'length' does not take option ['wrong']; it accepts ['name']"),
    (dict(scorers=["length", {"type": "hf_reward"}]), "scorer 'hf_reward' needs ['model']"),
    (dict(scorers=["length", {"type": "hf_reward", "model": "./no/such/reward"}]), "does not exist"),
]


@pytest.mark.parametrize("change, message", BAD_CONFIGS)
def test_config_errors_say_what_and_how(change, message):
    raw = {**prompted("smollm2"), **change}
    with pytest.raises(ModDecodeError) as info:  # ConfigError, or ModelLoadError for a missing model folder
        load_sweep_config(raw)
    assert message in str(info.value)


def test_missing_section_and_grid_union():
    raw = prompted("smollm2")
    del raw["grid"]
    with pytest.raises(ValueError, match="needs `grid`"):
        load_sweep_config(raw)
    union = load_sweep_config(prompted("smollm2", grid=[{"type": "two_objective", "n": 3},
                                                        {"type": "explicit", "weights": [[0.5, 0.5], [3, -2]]}]))
    assert union.weightings == ((0.0, 1.0), (0.5, 0.5), (1.0, 0.0), (3.0, -2.0))  # duplicates dropped
    assert len(load_sweep_config(prompted("smollm2", grid={"type": "two_objective", "n": 11})).weightings) == 11


def test_config_hash_ignores_grid_and_batching_but_not_decoding():
    base = load_sweep_config(prompted("smollm2")).config_hash_payload()
    assert load_sweep_config(prompted("smollm2", batch_size=7, grid=[[0.2, 0.8]])).config_hash_payload() == base
    assert load_sweep_config(prompted("smollm2", decoding={"max_new_tokens": 6})).config_hash_payload() != base


def test_prompt_files_and_datasets(tmp_path, monkeypatch):
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"id": "a", "text": "one"}\n\n{"id": "b", "text": "two"}\n{"id": "c", "text": "three"}\n')
    config = load_sweep_config(prompted("smollm2", prompts={"path": str(jsonl), "text_field": "text", "limit": 2}))
    assert config.prompts == (("a", "one"), ("b", "two"))
    csv_file = tmp_path / "p.csv"
    csv_file.write_text("id,prompt\nx,hello there\ny,\"a, b\"\n")
    assert load_sweep_config(prompted("smollm2", prompts=str(csv_file))).prompts == (("x", "hello there"),
                                                                                     ("y", "a, b"))
    jsonl.write_text('{"id": "a", "prompt": "one"}\nnot json\n')
    with pytest.raises(ValueError, match=r"p.jsonl:2: not valid JSON"):
        load_sweep_config(prompted("smollm2", prompts=str(jsonl)))

    class FakeDataset(list):
        column_names = ["question"]

        def select(self, idx):
            return FakeDataset(self[i] for i in idx)

    fake = types.SimpleNamespace(load_dataset=lambda name, cfg, split: FakeDataset(
        [{"question": "why?"}, {"question": "how?"}, {"question": "who?"}]))
    monkeypatch.setitem(sys.modules, "datasets", fake)
    spec = {"dataset": "org/qa", "split": "test", "text_field": "question", "limit": 2}
    assert load_sweep_config(prompted("smollm2", prompts=spec)).prompts == (("0", "why?"), ("1", "how?"))

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(fake, "load_dataset", offline)
    with pytest.raises(ValueError) as info:
        load_sweep_config(prompted("smollm2", prompts=spec))
    assert "could not load Hugging Face dataset 'org/qa'" in str(info.value) and "Export the prompts" in str(info.value)


def test_cli_sweep_resume_and_errors(tmp_path, base_a, monkeypatch):
    import yaml

    app = typer.Typer()
    register(app)
    runner = CliRunner()
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(prompted(base_a, prompts=["hello", "why"])))
    out = tmp_path / "run"
    args = ["sweep", str(config), "--out", str(out), "--no-progress", "--threads", "1"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "10 rows planned, 0 already done, 10 added" in first.stdout
    assert "RS skipped" in first.stderr and (out / "sweep.yaml").read_text() == config.read_text()
    again = runner.invoke(app, args)
    assert "10 already done, 0 added" in again.stdout
    with ResultStore(out / "results.sqlite") as store:
        assert store.count() == 10

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(prompted(base_a, grid={"type": "simplex", "m": 3, "steps": 2})))
    result = runner.invoke(app, ["sweep", str(bad), "--out", str(tmp_path / "bad")])
    assert result.exit_code == 2 and result.stderr.startswith("error: grid weighting")
    assert "Traceback" not in result.output

    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    result = runner.invoke(app, args + ["--backend", "ray"])
    assert result.exit_code == 2 and "pip install 'moddecode[ray]'" in result.stderr


def test_a_bad_sweep_fails_before_writing_or_loading_anything(tmp_path, base_a, monkeypatch):
    import yaml

    from moddecode.eval.sweep import backends

    def no_loading(self, config):
        raise AssertionError("models were loaded for a config that cannot run")

    monkeypatch.setattr(backends.Worker, "__init__", no_loading)
    app = typer.Typer()
    register(app)
    not_an_adapter = tmp_path / "not_an_adapter"
    not_an_adapter.mkdir()
    for change, says in [
        (dict(scorers=["length", {"type": "conciseness", "target": 5}]), "does not take option ['target']"),
        (dict(policies=[{"name": "a", "source": str(base_a), "adapter": str(not_an_adapter)},
                        {"name": "b", "source": str(base_a)}]), "is not a PEFT adapter folder"),
    ]:
        config = tmp_path / "sweep.yaml"
        config.write_text(yaml.safe_dump(prompted(base_a, **change)))
        out = tmp_path / "run"
        result = CliRunner().invoke(app, ["sweep", str(config), "--out", str(out), "--no-progress"])
        assert result.exit_code == 2 and result.stderr.startswith("error: ") and says in result.stderr, result.output
        assert not out.exists()  # no run.json, no results.sqlite
    # paths are checked when the sweep runs (a config can be parsed on another machine)
    for change, says in [
        (dict(policies=[{"name": "a", "source": str(base_a), "adapter": str(tmp_path / "no_such_adapter")},
                        {"name": "b", "source": str(base_a)}]), "policies[0]: adapter folder not found"),
        (dict(reference={"source": str(tmp_path / "no_such_model.gguf")}), "reference: GGUF file not found"),
        (dict(reference={"source": str(not_an_adapter)}), "reference: " + str(not_an_adapter) + " is not a Hugging"),
    ]:
        with pytest.raises(ConfigError) as info:
            run_sweep(load_sweep_config(prompted(base_a, **change)), tmp_path / "run", progress=False)
        assert says in str(info.value) and not (tmp_path / "run").exists()


def lora_sweep(base, folders, **extra) -> dict:
    return prompted(base, prompts=["hello", "why"], methods=["single"], **extra,
                    policies=[{"name": n, "source": str(base), "adapter": str(f)} for n, f in zip("ab", folders)])


def test_overwriting_an_adapter_in_place_starts_a_new_row_set(tmp_path, base_a, adapters, monkeypatch):
    import shutil

    monkeypatch.setenv("MODDECODE_CACHE", str(tmp_path / "cache"))
    folders = [shutil.copytree(adapters[i], tmp_path / f"lora{i}") for i in range(2)]
    config = load_sweep_config(lora_sweep(base_a, folders))
    first = run_sweep(config, tmp_path / "run", progress=False)
    assert first.added == first.total == 4
    weights = folders[0] / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes())  # rewritten, same content: still done
    same = run_sweep(config, tmp_path / "run", progress=False)
    assert same.config_hash == first.config_hash and same.already_done == 4 and same.added == 0
    shutil.copyfile(adapters[2] / "adapter_model.safetensors", weights)  # retrained in place
    changed = run_sweep(config, tmp_path / "run", progress=False, log=lambda msg: None)
    assert changed.config_hash != first.config_hash and changed.already_done == 0 and changed.added == 4
    # the new rows are the new adapter's: equal to a sweep that names adapters[2] from the start
    fresh = run_sweep(load_sweep_config(lora_sweep(base_a, [adapters[2], folders[1]])), tmp_path / "fresh",
                      progress=False)
    assert responses(tmp_path / "run", changed.config_hash) == responses(tmp_path / "fresh", fresh.config_hash)
    assert len(responses(tmp_path / "run", first.config_hash)) == 4  # the old rows stay, under the old hash


def responses(run_dir, config_hash) -> dict:
    con = sqlite3.connect(run_dir / "results.sqlite")
    try:
        rows = con.execute("SELECT prompt_id, method, weights_key, response FROM results WHERE config_hash = ?",
                           (config_hash,)).fetchall()
    finally:
        con.close()
    return {(p, m, w): r for p, m, w, r in rows}


def test_file_fingerprints_follow_content_and_are_cached_by_size_and_mtime(tmp_path, monkeypatch):
    import hashlib
    import shutil

    from moddecode.eval import local_files
    from moddecode.eval.local_files import fingerprints

    monkeypatch.setenv("MODDECODE_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "model"
    (model / "checkpoints").mkdir(parents=True)
    (model / "config.json").write_text('{"hidden_size": 8}')
    (model / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF" + bytes(100))
    roles = {"policies[0].source": str(model), "reference.source": str(gguf), "policies[1].source": "org/hub-id"}
    first = fingerprints(roles)
    assert set(first) == {"policies[0].source", "reference.source"}  # hub ids are not local files
    assert first["reference.source"] == hashlib.sha256(gguf.read_bytes()).hexdigest()
    monkeypatch.setattr(local_files, "bundled_smollm2_gguf", lambda: gguf)  # the alias is its .gguf file
    assert fingerprints({"p": "smollm2"}) == {"p": first["reference.source"]}
    # where a folder lives, its training metadata, model card and sub-folders do not matter
    moved = shutil.copytree(model, tmp_path / "elsewhere" / "model")
    (moved / "moddecode.json").write_text('{"train_seconds": 3}')
    (moved / "README.md").write_text("card")
    (moved / "checkpoints" / "state.bin").write_bytes(b"x")
    assert fingerprints({"policies[0].source": str(moved)})["policies[0].source"] == first["policies[0].source"]
    (moved / "config.json").write_text('{"hidden_size": 9}')
    assert fingerprints({"policies[0].source": str(moved)})["policies[0].source"] != first["policies[0].source"]

    # files older than the racy window are remembered: unchanged size and mtime means no read at all
    old = time.time() - 60
    for f in [*model.iterdir(), gguf]:
        os.utime(f, (old, old))
    assert fingerprints(roles) == first

    def no_reading(*args, **kwargs):
        raise AssertionError("an unchanged file was hashed again")

    with monkeypatch.context() as patch:
        patch.setattr(local_files.hashlib, "file_digest", no_reading)
        assert fingerprints(roles) == first
    (model / "model.safetensors").write_bytes(bytes(range(256)) * 63)  # new size and mtime: hashed again
    assert fingerprints(roles)["policies[0].source"] != first["policies[0].source"]
