"""Rewarded Soups merging against hand computations from the saved tensors (tiny random Llama)."""

from __future__ import annotations

import json

import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file
from transformers import LlamaConfig, LlamaForCausalLM

from moddecode.baselines import merge_full_models, merge_lora_adapters
from moddecode.errors import ConfigError, ModelLoadError, UnknownNameError

TARGETS = ["q_proj", "v_proj"]


def tiny_config(**overrides) -> LlamaConfig:
    kwargs = dict(
        vocab_size=40,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        tie_word_embeddings=False,
    )
    kwargs.update(overrides)
    return LlamaConfig(**kwargs)


def tiny_llama(seed: int = 0, **overrides) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    return LlamaForCausalLM(tiny_config(**overrides)).eval()


def make_adapter(path, seed: int, r: int, alpha: int, use_rslora: bool = False):
    """A LoRA adapter on tiny_llama(0) with random (non-zero) A and B, saved to `path`."""
    model = get_peft_model(
        tiny_llama(0),
        LoraConfig(r=r, lora_alpha=alpha, target_modules=TARGETS, lora_dropout=0.0, use_rslora=use_rslora),
    )
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    model.save_pretrained(path)
    return path


def adapter_deltas(path) -> dict[str, torch.Tensor]:
    """module path in the base model -> scaling * B @ A, read from the saved files."""
    cfg = json.loads((path / "adapter_config.json").read_text())
    scale = cfg["lora_alpha"] / (cfg["r"] ** 0.5 if cfg.get("use_rslora") else cfg["r"])
    tensors = load_file(path / "adapter_model.safetensors")
    out = {}
    for key, a in tensors.items():
        if key.endswith("lora_A.weight"):
            module = key.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
            b = tensors[key.replace("lora_A", "lora_B")]
            out[module] = scale * b.double() @ a.double()
    return out


def factors(path):
    cfg = json.loads((path / "adapter_config.json").read_text())
    tensors = load_file(path / "adapter_model.safetensors")
    out = {}
    for key, a in tensors.items():
        if key.endswith("lora_A.weight"):
            module = key.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
            out[module] = (a.double(), tensors[key.replace("lora_A", "lora_B")].double())
    return cfg["lora_alpha"] / cfg["r"], out


def model_with_weights(expected: dict[str, torch.Tensor]) -> LlamaForCausalLM:
    """tiny_llama(0) with module weights overwritten by hand."""
    model = tiny_llama(0)
    state = model.state_dict()
    with torch.no_grad():
        for module, weight in expected.items():
            state[module + ".weight"].copy_(weight.to(state[module + ".weight"].dtype))
    return model


INPUT = torch.tensor([[1, 5, 9, 3, 7, 2], [4, 4, 8, 1, 0, 6]])


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=INPUT).logits


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    return {
        # different ranks and alphas: only the exact merge can combine these
        "a": make_adapter(root / "a", seed=1, r=2, alpha=4),
        "b": make_adapter(root / "b", seed=2, r=4, alpha=2),
        "c": make_adapter(root / "c", seed=3, r=2, alpha=4),
        "rs": make_adapter(root / "rs", seed=4, r=4, alpha=8, use_rslora=True),
    }


@pytest.mark.parametrize("weights", [(0.3, 0.7), (1.5, -0.5)])
def test_exact_merge_weight_is_w0_plus_weighted_deltas(adapters, weights):
    base_state = tiny_llama(0).state_dict()
    deltas = [adapter_deltas(adapters["a"]), adapter_deltas(adapters["b"])]
    merged = merge_lora_adapters(tiny_llama(0), [adapters["a"], adapters["b"]], weights, merge=True)
    merged_state = merged.state_dict()
    assert set(deltas[0]) and set(deltas[0]) == set(deltas[1])
    for module in deltas[0]:
        expected = base_state[module + ".weight"].double() + sum(w * d[module] for w, d in zip(weights, deltas))
        torch.testing.assert_close(merged_state[module + ".weight"].double(), expected, rtol=1e-5, atol=1e-6)
    untouched = "model.layers.0.self_attn.k_proj.weight"
    assert torch.equal(merged_state[untouched], base_state[untouched])


def test_exact_merge_logits_match_hand_set_model(adapters):
    weights = (0.25, 0.75)
    base_state = tiny_llama(0).state_dict()
    deltas = [adapter_deltas(adapters["a"]), adapter_deltas(adapters["b"])]
    expected = {
        m: base_state[m + ".weight"].double() + sum(w * d[m] for w, d in zip(weights, deltas)) for m in deltas[0]
    }
    reference = logits(model_with_weights(expected))
    peft_model = merge_lora_adapters(tiny_llama(0), [adapters["a"], adapters["b"]], weights)
    assert list(peft_model.peft_config) == ["rewarded_soup"]
    torch.testing.assert_close(logits(peft_model), reference, rtol=1e-4, atol=1e-5)
    # and the adapter really changes the model
    assert not torch.allclose(reference, logits(tiny_llama(0)), atol=1e-3)


@pytest.mark.parametrize("weight", [0.6, -1.0])
def test_exact_single_adapter_scales_its_delta(adapters, weight):
    base_state = tiny_llama(0).state_dict()
    delta = adapter_deltas(adapters["a"])
    merged = merge_lora_adapters(tiny_llama(0), [adapters["a"]], [weight], merge=True).state_dict()
    for module, d in delta.items():
        torch.testing.assert_close(
            merged[module + ".weight"].double(),
            base_state[module + ".weight"].double() + weight * d,
            rtol=1e-5,
            atol=1e-6,
        )


def test_exact_merge_handles_rslora_scaling(adapters):
    base_state = tiny_llama(0).state_dict()
    deltas = [adapter_deltas(adapters["a"]), adapter_deltas(adapters["rs"])]
    merged = merge_lora_adapters(tiny_llama(0), [adapters["rs"], adapters["a"]], (0.5, 0.5), merge=True).state_dict()
    for module in deltas[0]:
        expected = base_state[module + ".weight"].double() + 0.5 * deltas[0][module] + 0.5 * deltas[1][module]
        torch.testing.assert_close(merged[module + ".weight"].double(), expected, rtol=1e-5, atol=1e-6)


def test_factor_average_averages_factors_not_deltas(adapters):
    weights = (0.5, 0.5)
    base_state = tiny_llama(0).state_dict()
    scale, fa = factors(adapters["a"])
    _, fc = factors(adapters["c"])
    merged = merge_lora_adapters(
        tiny_llama(0), [adapters["a"], adapters["c"]], weights, method="factor_average", merge=True
    )
    exact = merge_lora_adapters(tiny_llama(0), [adapters["a"], adapters["c"]], weights, merge=True)
    m_state, e_state = merged.state_dict(), exact.state_dict()
    for module, (a1, b1) in fa.items():
        a2, b2 = fc[module]
        a = weights[0] * a1 + weights[1] * a2
        b = weights[0] * b1 + weights[1] * b2
        expected = base_state[module + ".weight"].double() + scale * b @ a
        torch.testing.assert_close(m_state[module + ".weight"].double(), expected, rtol=1e-5, atol=1e-6)
        # the cross terms make it differ from the exact delta merge
        assert not torch.allclose(m_state[module + ".weight"], e_state[module + ".weight"], atol=1e-4)


def test_factor_average_rejects_mismatched_adapters(adapters):
    with pytest.raises(ConfigError, match="method='exact'"):
        merge_lora_adapters(tiny_llama(0), [adapters["a"], adapters["b"]], (0.5, 0.5), method="factor_average")


def test_lora_merge_input_errors(adapters, tmp_path):
    with pytest.raises(ModelLoadError, match="adapter_config.json"):
        merge_lora_adapters(tiny_llama(0), [tmp_path / "nope"], [1.0])
    with pytest.raises(UnknownNameError, match="factor_average"):
        merge_lora_adapters(tiny_llama(0), [adapters["a"]], [1.0], method="factor-avg")
    with pytest.raises(ConfigError, match="2 adapters"):
        merge_lora_adapters(tiny_llama(0), [adapters["a"], adapters["b"]], [1.0])


def test_full_merge_unit_weights_reproduce_first_model():
    m1, m2 = tiny_llama(1), tiny_llama(2)
    merged = merge_full_models([m1, m2], (1, 0))
    for key, value in m1.state_dict().items():
        assert torch.equal(merged.state_dict()[key], value), key
    torch.testing.assert_close(logits(merged), logits(m1), rtol=0, atol=0)
    assert merged is not m1


def test_full_merge_is_weighted_sum_of_parameters():
    m1, m2, m3 = tiny_llama(1), tiny_llama(2), tiny_llama(3)
    w = (0.2, 0.5, 0.3)
    merged = merge_full_models([m1, m2, m3], w).state_dict()
    states = [m.state_dict() for m in (m1, m2, m3)]
    for key in merged:
        expected = sum(wi * s[key].double() for wi, s in zip(w, states))
        torch.testing.assert_close(merged[key].double(), expected, rtol=1e-6, atol=1e-6)
    # inputs untouched
    assert torch.equal(m1.state_dict()["lm_head.weight"], tiny_llama(1).state_dict()["lm_head.weight"])


def test_full_merge_rejects_other_architectures():
    with pytest.raises(ConfigError, match="architecture"):
        merge_full_models([tiny_llama(1), tiny_llama(2, intermediate_size=48)], (0.5, 0.5))
    with pytest.raises(ConfigError, match="architecture"):
        merge_full_models([tiny_llama(1), tiny_llama(2, num_hidden_layers=1)], (0.5, 0.5))
    with pytest.raises(ConfigError, match="2 weights for 1 models"):
        merge_full_models([tiny_llama(1)], (0.5, 0.5))
    with pytest.raises(ConfigError, match="finite"):
        merge_full_models([tiny_llama(1), tiny_llama(2)], (float("nan"), 1.0))
