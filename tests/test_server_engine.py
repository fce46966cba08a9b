"""Choosing the engine a policy set (and the server) runs on: checked before any model loads."""

from __future__ import annotations

import importlib.util

import pytest

from moddecode.config import load_policy_set
from moddecode.errors import ConfigError, UnknownNameError

SET = {"policies": [{"name": "a", "source": "/nonexistent/model"}]}  # never loaded: the engine check comes first
HAS_VLLM = (spec := importlib.util.find_spec("vllm")) is not None and spec.origin is not None


def test_an_unknown_engine_suggests_the_closest():
    with pytest.raises(UnknownNameError, match="vlm.*Did you mean 'vllm'"):
        load_policy_set({**SET, "engine": "vlm"})


def test_engine_options_belong_to_vllm():
    with pytest.raises(ConfigError, match="engine_options.*for engine 'vllm'"):
        load_policy_set({**SET, "engine_options": {"tensor_parallel_size": 2}})
    with pytest.raises(ConfigError, match="engine_options` must be a mapping"):
        load_policy_set({**SET, "engine": "vllm", "engine_options": [1]})


@pytest.mark.skipif(HAS_VLLM, reason="vLLM is installed here")
def test_vllm_without_vllm_installed_names_the_setup_command():
    with pytest.raises(ConfigError, match="setup.sh --vllm"):
        load_policy_set({**SET, "engine": "vllm"})
    from moddecode.server.config import load_server_config

    with pytest.raises(ConfigError, match="setup.sh --vllm"):  # `moddecode serve --engine vllm`
        load_server_config(SET, engine="vllm")


def test_serve_has_an_engine_flag():
    from typer.testing import CliRunner

    from moddecode.cli.app import app

    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0 and "--engine" in result.output
