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
