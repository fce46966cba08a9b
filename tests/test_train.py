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
from helpers import adapter_active  # tests/ is on sys.path (conftest)


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


# TRL 1.16, DPOTrainer._compute_loss, f_divergence_type == "alpha_divergence" (c = f_alpha_divergence_coef):
TRL_ALPHA_LINES = [
    "coef = 1.0 / (self.f_alpha_divergence_coef - 1.0)",
    "t_chosen = (self.f_alpha_divergence_coef - 1.0) * chosen_logratios",
    "chosen_scores = (torch.exp(t_chosen_float) - 1.0).to(dtype) * coef",
]


def trl_alpha_score(c: float, logratio: torch.Tensor) -> torch.Tensor:
    """TRL's f'(t) at log t = logratio, mirroring the lines above (float64, no clamp needed here)."""
    coef = 1.0 / (c - 1.0)
    return (torch.exp((c - 1.0) * logratio) - 1.0) * coef


def test_alpha_training_uses_the_f_that_decoding_uses():
    import inspect

    from trl import DPOTrainer

    from moddecode.divergences import get_divergence

    source = inspect.getsource(DPOTrainer._compute_loss)
    assert all(line in source for line in TRL_ALPHA_LINES), "TRL changed its alpha-divergence formula; re-check"
    ratios = torch.tensor([0.05, 0.3, 0.9, 1.0, 1.7, 4.0, 25.0], dtype=torch.float64)
    for alpha in (0.1, 0.25, 0.5, 0.7, 0.9):
        name = f"alpha:{alpha}"
        args = trl_divergence(name)
        assert args["f_divergence_type"] == "alpha_divergence"
        trained = trl_alpha_score(args["f_alpha_divergence_coef"], torch.log(ratios))
        decoded = get_divergence(name).grad_f(ratios)
        paper = (1 - ratios.pow(-alpha)) / alpha  # the paper's f'(u) for the alpha-divergence
        torch.testing.assert_close(trained, decoded, rtol=1e-12, atol=1e-12, msg=name)
        torch.testing.assert_close(decoded, paper, rtol=1e-12, atol=1e-12, msg=name)


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
    with torch.no_grad(), adapter_active(policy):
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
    assert len(meta["loss_curve"]) == 12 and meta["loss_curve"][-1] == pytest.approx(meta["last_loss"], abs=1e-4)
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


def write_pairs(path, rows):
    path.write_text("".join(json.dumps({"prompt": p, "chosen": c, "rejected": r}) + "\n" for p, c, r in rows))
    return path


def adapter_state(folder):
    return load_file(folder / "adapter_model.safetensors"), (folder / "moddecode.json").read_text()


def test_rerun_into_another_runs_folder_is_refused_before_loading_and_overwrite_starts_over(tmp_path, base_a,
                                                                                              monkeypatch):
    import hashlib

    import transformers
    from typer.testing import CliRunner

    from moddecode.cli import app

    runner = CliRunner()
    first = write_pairs(tmp_path / "first.jsonl", [("hello", "hello world", "no"),
                                                   ("what is a dog", "a dog is good", "sad")])
    other = write_pairs(tmp_path / "other.jsonl", [("why", "yes good", "bad bad"), ("what is a cat", "a cat", "no no")])
    out = tmp_path / "adapter"
    common = ["--out", str(out), "--source", str(base_a), "--batch-size", "2", "--save-steps", "2", "--lora-r", "2",
              "--lora-alpha", "4", "--max-length", "32", "--lr", "1e-2", "--epochs", "1"]
    args = ["train", str(first), *common, "--objective", "happy", "--max-steps", "4"]
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    weights, meta = adapter_state(out)
    assert json.loads(meta)["steps"] == 4

    def no_loading(*a, **k):
        raise AssertionError("a model was loaded before the folder was checked")

    with monkeypatch.context() as patch:
        patch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_loading)
        patch.setattr(transformers.AutoTokenizer, "from_pretrained", no_loading)
        for change, says in [
            ({1: str(other)}, "data (sha256"),
            ({"--objective": "sad"}, "objective 'happy' -> 'sad'"),
            ({"-d": "alpha:0.3"}, "divergence 'reverse_kl' -> 'alpha:0.3'"),
            ({"--max-steps": "8"}, "learning-rate schedule"),  # would train at learning rate 0
        ]:
            rerun = list(args)
            for key, value in change.items():
                if key == 1:
                    rerun[1] = value
                elif key in rerun:
                    rerun[rerun.index(key) + 1] = value
                else:
                    rerun += [key, value]
            result = runner.invoke(app, rerun)
            assert result.exit_code == 2, (change, result.output)
            assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
            assert says in result.stderr and "--overwrite" in result.stderr and "new --out folder" in result.stderr
            now_weights, now_meta = adapter_state(out)
            assert now_meta == meta and all(torch.equal(now_weights[k], v) for k, v in weights.items())

    # the same run again resumes (nothing left to do); checkpoint frequency is not part of a run's identity
    again = runner.invoke(app, [*args, "--save-steps", "3"])
    assert again.exit_code == 0, again.output
    assert json.loads(adapter_state(out)[1])["steps"] == 4

    # --overwrite discards the old run and trains the new one from scratch
    fresh = runner.invoke(app, ["train", str(other), *common, "--objective", "sad", "--max-steps", "2", "--overwrite"])
    assert fresh.exit_code == 0, fresh.output
    new_weights, new_meta = adapter_state(out)
    new_meta = json.loads(new_meta)
    assert new_meta["objective"] == "sad" and new_meta["steps"] == 2
    assert new_meta["data_sha256"] == hashlib.sha256(other.read_bytes()).hexdigest()
    assert sorted(p.name for p in (out / "checkpoints").glob("checkpoint-*")) == ["checkpoint-2"]
    assert not all(torch.equal(new_weights[k], v) for k, v in weights.items())

    # an adapter folder nothing describes is not trained over either
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "adapter_config.json").write_text((out / "adapter_config.json").read_text())
    result = runner.invoke(app, ["train", str(first), *common[2:], "--out", str(stray), "--objective", "x"])
    assert result.exit_code == 2 and "no run.json or moddecode.json" in result.stderr
