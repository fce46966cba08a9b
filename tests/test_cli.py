"""The CLI: same results as the library, and one clear error line (never a traceback) on bad input."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from moddecode import MOD, Policy
from moddecode.cli import app

runner = CliRunner()


def run(*args, input=None):
    return runner.invoke(app, list(args), input=input)


@pytest.fixture
def flags(base_a, adapters):
    return ["--policy", f"lora={base_a}", "--adapter", f"lora={adapters[0]}",
            "--policy", f"funny={base_a}", "--system", "funny=please be funny"]


def test_generate_json_matches_the_library(flags, base_a, adapters, cache):
    result = run("generate", *flags, "-w", "0.3,0.7", "-n", "8", "--json", "hello", "what is a cat")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    mod = MOD([Policy.load(str(base_a), adapter=adapters[0], cache=cache),
               Policy.load(str(base_a), system_prompt="please be funny", cache=cache)])
    expected = mod.generate(["hello", "what is a cat"], [0.3, 0.7], max_new_tokens=8)
    assert [line["text"] for line in lines] == expected
    assert lines[0]["policies"] == ["lora", "funny"] and lines[0]["weights"] == [0.3, 0.7]


def test_generate_from_yaml_and_stream_and_stdin(tmp_path, base_a):
    config = tmp_path / "set.yaml"
    config.write_text(f"policies:\n  - {{name: a, source: '{base_a}'}}\n  - {{name: b, source: '{base_a}', "
                      "system_prompt: be short}\ndivergence: forward_kl\n")
    plain = run("generate", "-c", str(config), "-w", "0.5,0.5", "-n", "6", "hello")
    streamed = run("generate", "-c", str(config), "-w", "0.5,0.5", "-n", "6", "--stream", "hello")
    from_stdin = run("generate", "-c", str(config), "-w", "0.5,0.5", "-n", "6", "--prompts-file", "-", input="hello\n")
    assert plain.exit_code == streamed.exit_code == from_stdin.exit_code == 0
    assert plain.stdout == streamed.stdout == from_stdin.stdout


@pytest.mark.parametrize("args, message", [
    ([], "give policies"),
    (["-w", "a,b"], "comma-separated numbers"),
    (["-w", "0.2"], "1 weight(s) for 2 policies"),
    (["-d", "forwrd_kl"], "Did you mean 'forward_kl'"),
    (["-s", "beem"], "Did you mean 'beam'"),
    (["-d", "jsd"], "needs a reference policy"),
    (["--system", "nobody=hi"], "names policy 'nobody'"),
    (["-n", "0"], "max_new_tokens"),
])
def test_bad_input_gives_one_clear_line(flags, args, message):
    base = [] if not args else flags
    result = run("generate", *base, *args, "hello")
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_missing_files_are_reported(tmp_path):
    result = run("generate", "-c", str(tmp_path / "nope.yaml"), "hello")
    assert result.exit_code == 2 and "not found" in result.stderr
    result = run("generate", "--policy", f"a={tmp_path / 'nope.gguf'}", "hello")
    assert result.exit_code == 2 and "not found" in result.stderr


def test_help_explains_the_commands():
    result = run("--help")
    assert result.exit_code == 0
    for command in ["generate", "demo"]:
        assert command in result.stdout


def test_policy_set_defaults_apply_and_flags_override(tmp_path, base_a):
    config = tmp_path / "set.yaml"
    config.write_text(f"policies:\n  - {{name: a, source: '{base_a}'}}\n  - {{name: b, source: '{base_a}', "
                      "system_prompt: be short}\ndefaults: {max_new_tokens: 2, weights: [0.2, 0.8]}\n")
    short = json.loads(run("generate", "-c", str(config), "--json", "hello").stdout)
    assert short["num_tokens"] <= 2 and short["weights"] == [0.2, 0.8]
    longer = json.loads(run("generate", "-c", str(config), "--json", "-n", "6", "-d", "forward_kl", "hello").stdout)
    assert longer["num_tokens"] > 2 or longer["finish_reason"] == "stop"
    assert longer["divergence"] == "forward_kl"
    result = run("generate", "-c", str(config), "--reference", str(base_a), "hello")
    assert result.exit_code == 2 and "go in the YAML file" in result.stderr


# a non-default value per DecodingConfig field, given to `generate` as --field-name VALUE (a bool as a bare flag)
FLAG_VALUES = {"strategy": "sample", "max_new_tokens": 3, "temperature": 0.7, "top_k": 5, "top_p": 0.9, "seed": 11,
               "num_beams": 2, "scope": "token", "stop": ("zz",), "ignore_eos": True, "divergence": "forward_kl"}


@pytest.fixture
def seen_configs(monkeypatch):
    """The DecodingConfig of every MOD.generate call (decoding still runs)."""
    from moddecode.mod import MOD as LibraryMOD

    seen, original = [], LibraryMOD.generate

    def spy(self, prompts, weights=None, config=None, **overrides):
        seen.append(config)
        return original(self, prompts, weights, config, **overrides)

    monkeypatch.setattr(LibraryMOD, "generate", spy)
    return seen


def test_every_decoding_field_has_a_generate_flag_that_reaches_the_library(tmp_path, base_a, seen_configs):
    from moddecode import DecodingConfig

    assert sorted(FLAG_VALUES) == sorted(DecodingConfig.field_names()), "give the new field a value here"
    config = tmp_path / "set.yaml"
    config.write_text(f"policies:\n  - {{name: a, source: '{base_a}'}}\n  - {{name: b, source: '{base_a}', "
                      "system_prompt: be short}\ndefaults: {max_new_tokens: 4}\n")
    assert run("generate", "-c", str(config), "hello").exit_code == 0
    baseline = seen_configs.pop()  # the policy set's decoding: max_new_tokens 4, divergence reverse_kl
    for field, value in FLAG_VALUES.items():
        assert getattr(baseline, field) != value
        flag = "--" + field.replace("_", "-")
        given = [flag] if value is True else [flag, str(value[0] if isinstance(value, tuple) else value)]
        result = run("generate", "-c", str(config), *given, "hello")
        assert result.exit_code == 0, (field, result.output)
        got = seen_configs.pop()
        assert getattr(got, field) == value, field
        assert got == baseline.merged(**{field: value}), field  # that field alone changed


def test_ignore_eos_from_the_policy_set_holds_unless_turned_off(tmp_path, base_a, seen_configs):
    config = tmp_path / "set.yaml"
    config.write_text(f"policies:\n  - {{name: a, source: '{base_a}'}}\n  - {{name: b, source: '{base_a}'}}\n"
                      "defaults: {max_new_tokens: 5, ignore_eos: true}\n")
    kept = json.loads(run("generate", "-c", str(config), "--json", "hello").stdout)
    assert seen_configs.pop().ignore_eos is True and kept["num_tokens"] == 5  # decoding never stops early
    assert run("generate", "-c", str(config), "--no-ignore-eos", "hello").exit_code == 0
    assert seen_configs.pop().ignore_eos is False


@pytest.mark.parametrize("name, text", [
    ("p.jsonl", '{"id": "x", "prompt": "hello"}\n{"prompt": "what is a cat"}\n'),
    ("p.csv", "id,prompt\nx,hello\ny,what is a cat\n"),
    ("p.txt", "hello\n\n  what is a cat  \n"),
])
def test_prompt_files_are_read_by_the_shared_reader(tmp_path, flags, name, text):
    path = tmp_path / name
    path.write_text(text)
    result = run("generate", *flags, "-n", "2", "--json", "first", "--prompts-file", str(path))
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["prompt"] for line in result.stdout.splitlines()] == ["first", "hello", "what is a cat"]


def test_a_missing_or_empty_prompts_file_is_one_clear_line(tmp_path, flags):
    (tmp_path / "empty.txt").write_text("\n\n")
    for path, says in [(tmp_path / "nope.txt", "prompts file not found"), (tmp_path / "empty.txt", "no prompts")]:
        result = run("generate", *flags, "--prompts-file", str(path))
        assert result.exit_code == 2 and says in result.stderr and len(result.stderr.strip().splitlines()) == 1
