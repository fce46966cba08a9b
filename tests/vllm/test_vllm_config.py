"""What VllmEngine refuses before it starts vLLM: policies on different bases, options it cannot honour."""

from __future__ import annotations

import pytest
from conftest import needs_vllm

from moddecode import Policy
from moddecode.errors import ConfigError, UnknownNameError

pytestmark = needs_vllm


def engine(*args, **kwargs):
    from moddecode.engines.vllm import VllmEngine

    return VllmEngine(*args, **kwargs)


def test_policies_on_two_different_bases_are_refused(base_a, base_b, cache):
    a, b = Policy.load(str(base_a), cache=cache), Policy.load(str(base_b), cache=cache)
    with pytest.raises(ConfigError, match="ONE base model.*different bases.*transformers engine") as info:
        engine([a, b])
    assert info.value.param == "policies"
    with pytest.raises(ConfigError, match="different bases"):
        engine([a], reference=b)  # the reference too


def test_engine_options_are_checked_by_name(base_a, adapters, cache):
    policies = [Policy.load(str(base_a), adapter=adapters[0], cache=cache), Policy.load(str(base_a), cache=cache)]
    with pytest.raises(UnknownNameError, match="tensor_paralel_size.*Did you mean 'tensor_parallel_size'"):
        engine(policies, tensor_paralel_size=2)
    with pytest.raises(ConfigError, match="enable_chunked_prefill.*same step"):
        engine(policies, enable_chunked_prefill=True)
    with pytest.raises(ConfigError, match="logits_processors"):
        engine(policies, logits_processors=[])
    with pytest.raises(ConfigError, match="enable_lora=False, but some policies are LoRA adapters"):
        engine(policies, enable_lora=False)
    with pytest.raises(ConfigError, match="reserve_kv_cache must be true or false"):
        engine(policies, reserve_kv_cache="yes")
    with pytest.raises(ConfigError, match="at least one policy"):
        engine([])
