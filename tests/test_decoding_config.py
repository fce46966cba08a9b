"""One DecodingConfig: every field is accepted by every edge (library, CLI, server, sweeps), so the
option lists cannot drift apart again. A new field must get an example value here."""

from __future__ import annotations

import dataclasses

import pytest
from typer.testing import CliRunner

from moddecode import MOD, ConfigError, DecodingConfig, Policy, UnknownNameError

# a valid, non-default value for every field: a new field without one fails test_every_field_has_an_example
EXAMPLES = {
    "strategy": "sample",
    "max_new_tokens": 3,
    "temperature": 0.7,
    "top_k": 5,
    "top_p": 0.9,
    "seed": 11,
    "num_beams": 2,
    "scope": "token",
    "stop": ["zz"],
    "ignore_eos": True,
    "divergence": "forward_kl",
}
# the OpenAI wire name of a field, where it differs
SERVER_NAMES = {"max_new_tokens": "max_tokens"}


def test_every_field_has_an_example():
    assert sorted(EXAMPLES) == sorted(DecodingConfig.field_names())


@pytest.mark.parametrize("field", sorted(EXAMPLES))
def test_the_library_accepts_every_field(field, base_a, cache):
    mod = MOD([Policy.load(str(base_a), name="a", cache=cache), Policy.load(str(base_a), name="b", cache=cache)])
    overrides = {field: EXAMPLES[field], "max_new_tokens": 3}
    if field == "num_beams":
        overrides["strategy"] = "beam"
    result = mod.generate("hello", [0.5, 0.5], return_diagnostics=True, **overrides)
    assert len(result.token_ids) <= 3
    assert DecodingConfig().merged(**{field: EXAMPLES[field]}).as_mapping()[field] == EXAMPLES[field]


@pytest.mark.parametrize("field", sorted(EXAMPLES))
def test_the_server_schema_accepts_every_field(field):
    from moddecode.server.schemas import ChatCompletionRequest

    name = SERVER_NAMES.get(field, field)
    body = {"messages": [{"role": "user", "content": "hi"}], name: EXAMPLES[field]}
    request = ChatCompletionRequest.model_validate(body)
    assert request.decoding_overrides()[field] == EXAMPLES[field]


@pytest.mark.parametrize("field", sorted(EXAMPLES))
def test_the_cli_accepts_every_field(field):
    from moddecode.cli import app

    help_text = CliRunner().invoke(app, ["generate", "--help"], env={"COLUMNS": "200"}).output
    assert f"--{field.replace('_', '-')}" in help_text or field == "max_new_tokens" and "--max-new-tokens" in help_text


@pytest.mark.parametrize("field", sorted(EXAMPLES))
def test_policy_sets_and_sweeps_accept_every_field(field):
    from moddecode.config import _defaults
    from moddecode.eval.sweep.config import parse_sweep_decoding

    assert _defaults({field: EXAMPLES[field]}, num_policies=2)[field] == EXAMPLES[field]
    if field == "divergence":  # a sweep names its divergences at the top (`divergences:`), one run each
        with pytest.raises(ConfigError, match="divergences"):
            parse_sweep_decoding({field: EXAMPLES[field]})
    else:
        assert getattr(parse_sweep_decoding({field: EXAMPLES[field]}), field) == DecodingConfig(
            **{field: EXAMPLES[field]}).__getattribute__(field)


def test_from_mapping_names_the_field_and_suggests():
    with pytest.raises(ConfigError, match=r"defaults: top_p must be in \(0, 1\]") as info:
        DecodingConfig.from_mapping({"top_p": 2}, where="defaults")
    assert info.value.param == "top_p"
    with pytest.raises(ConfigError, match="Did you mean 'top_k'"):
        DecodingConfig.from_mapping({"topk": 3})
    with pytest.raises(UnknownNameError, match="Did you mean 'greedy'"):
        DecodingConfig(strategy="gredy")


def test_merged_applies_only_given_values():
    base = DecodingConfig(top_k=4, stop="x")
    assert base.stop == ("x",)
    merged = base.merged(temperature=0.5, top_k=None)
    assert merged.top_k == 4 and merged.temperature == 0.5 and merged.stop == ("x",)
    assert dataclasses.replace(merged, top_k=None).top_k is None
