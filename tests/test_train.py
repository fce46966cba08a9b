"""Preference pairs, f-DPO LoRA training on a tiny model, and adapter metadata."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from moddecode import ConfigError, Policy
from moddecode.train import TrainSettings, build_pairs, load_pairs, read_prompts, train_dpo
from moddecode.train.dpo import trl_divergence
from moddecode.train.prefs import PromptItem


def test_pairs_take_best_against_worst_and_keep_scores():
    item = PromptItem("p1", "question")
    responses = ["a", "b", "c", "d", "e"]
    scores = [0.2, 0.9, -1.0, 0.5, 0.1]
    pairs = build_pairs(item, responses, scores, objective="x", pairs_per_prompt=2)
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [("b", "c"), ("d", "e")]
    assert pairs[0]["chosen_score"] == 0.9 and pairs[0]["rejected_score"] == -1.0
    assert all(p["chosen_score"] > p["rejected_score"] for p in pairs)
    # ties and identical texts give no pair; a margin filters small differences
    assert build_pairs(item, ["a", "b"], [1.0, 1.0], objective="x") == []
    assert build_pairs(item, ["same", "same "], [2.0, 1.0], objective="x") == []
    assert build_pairs(item, ["a", "b"], [1.0, 0.95], objective="x", margin=0.1) == []
    with pytest.raises(ConfigError, match="2 responses but 1 scores"):
        build_pairs(item, ["a", "b"], [1.0], objective="x")


def test_bad_prompt_and_pair_files_are_reported(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"nope": 1}\n')
    with pytest.raises(ConfigError, match=r"bad.jsonl:2: .*'prompt'"):
        read_prompts(bad)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"prompt": "p", "chosen": "c", "rejected": "r"}\n{"prompt": "p", "chosen": ""}\n')
    with pytest.raises(ConfigError, match=r"pairs.jsonl:2: .*chosen, rejected"):
        load_pairs(str(pairs))
    with pytest.raises(ConfigError, match="not found"):
        load_pairs(str(tmp_path / "missing.jsonl"))
    with pytest.raises(ConfigError, match="did you mean|Did you mean"):
        TrainSettings(source="x", data="y", out_dir="z", objective="o", divergence="jds")


def test_divergences_map_to_trl():
    assert trl_divergence("jsd") == {"f_divergence_type": "js_divergence"}
    assert trl_divergence("alpha:0.5") == {"f_divergence_type": "alpha_divergence", "f_alpha_divergence_coef": 0.5}


def sequence_logprob(model, tokenizer, prompt, response):
    prompt_ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                               return_dict=False)
    full = tokenizer.apply_chat_template([{"role": "user", "content": prompt}, {"role": "assistant", "content": response}],
                                         return_dict=False)
    ids = torch.tensor([full])
    with torch.no_grad():
        lp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), -1)
    targets = ids[0, 1:]
    picked = lp[torch.arange(len(targets)), targets]
    return float(picked[len(prompt_ids) - 1:].sum())


def dpo_loss(policy, reference_model, rows, beta):
    total = 0.0
    tok = policy.tokenizer
    with torch.no_grad(), policy.adapter_active():
        for r in rows:
            pc = sequence_logprob(policy.model, tok, r["prompt"], r["chosen"])
            pr = sequence_logprob(policy.model, tok, r["prompt"], r["rejected"])
            rc = sequence_logprob(reference_model, tok, r["prompt"], r["chosen"])
            rr = sequence_logprob(reference_model, tok, r["prompt"], r["rejected"])
            total += -math.log(1 / (1 + math.exp(-beta * ((pc - rc) - (pr - rr)))))
    return total / len(rows)


def test_tiny_training_lowers_dpo_loss_and_changes_only_the_adapter(tmp_path, base_a, cache):
    from transformers import AutoModelForCausalLM

    rows = [{"prompt": p, "chosen": c, "rejected": r} for p, c, r in [
        ("what is the sky", "the sky is blue", "no no no"),
        ("tell me about a cat", "a cat is happy", "bad bad bad"),
        ("what is a dog", "a dog is good", "sad sad no"),
        ("hello", "hello world", "no"),
    ]]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "adapter"
    settings = TrainSettings(source=str(base_a), data=str(data), out_dir=str(out), objective="happy", beta=0.5,
                             lora_r=4, lora_alpha=8, target_modules=("q_proj", "v_proj"), epochs=1, max_steps=12,
                             learning_rate=2e-2, batch_size=4, save_steps=6, max_length=64)
    train_dpo(settings, progress=False)
    meta = json.loads((out / "moddecode.json").read_text())
    assert meta["objective"] == "happy" and meta["divergence"] == "reverse_kl" and meta["steps"] == 12
    assert len(meta["data_sha256"]) == 64
    assert (out / "checkpoints").is_dir()
    # only adapter tensors were saved, and the base model file is untouched
    saved = load_file(out / "adapter_model.safetensors")
    assert saved and all("lora_" in name for name in saved)
    reference = AutoModelForCausalLM.from_pretrained(base_a)
    policy = Policy.load(str(base_a), adapter=out, cache=cache)
    assert policy.name == "happy" and policy.metadata["beta"] == 0.5
    base_now = {k: v for k, v in policy.model.get_base_model().state_dict().items() if "lora_" not in k}
    for name, tensor in reference.state_dict().items():
        key = next(k for k in base_now if k.replace(".base_layer", "") == name)
        assert torch.equal(base_now[key], tensor), name
    assert dpo_loss(policy, reference, rows, beta=0.5) < math.log(2) - 0.05  # log 2 is the loss before training
