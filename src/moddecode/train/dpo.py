"""f-DPO LoRA training with TRL: one adapter per objective, regularised by a chosen f-divergence.

The adapter folder gets `moddecode.json` (objective, divergence, beta, data hash, base) that
`Policy.load(..., adapter=...)` reads. Checkpoints go to <out>/checkpoints, next to `run.json` naming
the run they belong to; running the same command again resumes from the last one. A folder holding
another run (other data, objective, divergence, base or settings) is refused, never resumed and
relabelled: pick a new folder or pass `overwrite=True`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..divergences import get_divergence
from ..errors import ConfigError
from ..jsonl import read_jsonl
from ..policy import ADAPTER_METADATA_FILE

# our divergence names -> TRL's DPOConfig.f_divergence_type
TRL_DIVERGENCES = {"reverse_kl": "reverse_kl", "forward_kl": "forward_kl", "jsd": "js_divergence"}
RUN_FILE = "run.json"  # in <out>/checkpoints: the identity of the run the checkpoints belong to
# what a finished or interrupted run leaves in <out>; --overwrite removes exactly these
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin", ADAPTER_METADATA_FILE)
# settings that do not change the trained weights, so they may differ on resume
NOT_IDENTITY = {"save_steps"}


@dataclass(frozen=True)
class TrainSettings:
    """What `moddecode train` needs; validated on construction."""

    source: str
    data: str
    out_dir: str
    objective: str
    divergence: str = "reverse_kl"
    beta: float = 0.1
    lora_r: int = 8
    lora_alpha: int = 16
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    epochs: float = 2.0
    learning_rate: float = 5e-4
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 256
    max_steps: int = -1
    save_steps: int = 10
    seed: int = 0
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        get_divergence(self.divergence)  # unknown names fail with "did you mean"
        if not self.divergence.startswith("alpha:") and self.divergence not in TRL_DIVERGENCES:
            raise ConfigError(f"training supports {', '.join(TRL_DIVERGENCES)} and alpha:<a>, got {self.divergence!r}")
        if not self.beta > 0:
            raise ConfigError(f"beta must be > 0, got {self.beta}")
        for name in ("lora_r", "lora_alpha", "batch_size", "grad_accum", "max_length", "save_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if not self.objective:
            raise ConfigError("name the objective this adapter is trained for (--objective)")


def trl_divergence(name: str) -> dict:
    div = get_divergence(name)
    if div.name.startswith("alpha:"):
        # TRL's coefficient c has f'(t) = (t^(c-1) - 1)/(c-1); ours (the paper's) f'(u) = (1 - u^-a)/a,
        # the same function exactly when c = 1 - a. Decoding must use the f that training used.
        return {"f_divergence_type": "alpha_divergence", "f_alpha_divergence_coef": 1.0 - div.alpha}
    return {"f_divergence_type": TRL_DIVERGENCES[div.name]}


def load_pairs(data: str) -> tuple[list[dict], str]:
    """Pairs from a JSONL file (prompt/chosen/rejected strings) or, online, a HF dataset 'name[:split]'.

    Returns conversational rows for TRL and a sha256 of the data.
    """
    path = Path(data)
    if path.is_file():
        raw = path.read_bytes()
        rows = []
        for number, row in read_jsonl(path, '{"prompt": ..., "chosen": ..., "rejected": ...}'):
            missing = [k for k in ("prompt", "chosen", "rejected") if not isinstance(row.get(k), str) or not row[k].strip()]
            if missing:
                raise ConfigError(f"{path}:{number}: needs non-empty string fields {', '.join(missing)}")
            rows.append(row)
        if not rows:
            raise ConfigError(f"{path} holds no preference pairs")
        digest = hashlib.sha256(raw).hexdigest()
    elif path.suffix in {".jsonl", ".json"} or "/" not in data:
        raise ConfigError(f"preference data not found: {data} (give a JSONL file from `moddecode make-prefs`)")
    else:
        rows, digest = _hub_pairs(data)
    return [{"prompt": [{"role": "user", "content": r["prompt"]}],
             "chosen": [{"role": "assistant", "content": r["chosen"]}],
             "rejected": [{"role": "assistant", "content": r["rejected"]}]} for r in rows], digest


def _hub_pairs(name: str) -> tuple[list[dict], str]:
    from datasets import load_dataset

    dataset_name, _, split = name.partition(":")
    try:
        ds = load_dataset(dataset_name, split=split or "train")
    except Exception as exc:  # offline, missing: one clear error
        raise ConfigError(f"could not load dataset {name!r} (hub datasets need network access): {exc}") from None
    rows = [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in ds]
    return rows, hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()


def last_checkpoint(folder: Path) -> str | None:
    checkpoints = sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return str(checkpoints[-1]) if checkpoints else None


def run_identity(base: str, data_sha256: str, settings: dict) -> dict:
    """What decides the trained weights; a run resumes only into a folder whose identity is equal."""
    kept = {k: v for k, v in settings.items() if k not in NOT_IDENTITY | {"source", "data", "out_dir"}}
    if isinstance(kept.get("divergence"), str):
        kept["divergence"] = get_divergence(kept["divergence"]).name  # 'alpha:0.50' is 'alpha:0.5'
    return json.loads(json.dumps({"base": base, "data_sha256": data_sha256, "settings": kept}))  # tuples -> lists


def _recorded_identities(out: Path) -> dict[str, dict]:
    """{file: identity} of the run(s) whose checkpoints or adapter `out` holds."""
    found = {}
    run_file = out / "checkpoints" / RUN_FILE
    if run_file.is_file():
        found[str(run_file)] = json.loads(run_file.read_text())
    meta_file = out / ADAPTER_METADATA_FILE
    if meta_file.is_file():
        meta = json.loads(meta_file.read_text())
        found[str(meta_file)] = run_identity(meta.get("base"), meta.get("data_sha256"), meta.get("settings") or {})
    return found


def _differences(old: dict, new: dict) -> list[str]:
    out = [f"base {old.get('base')!r} -> {new['base']!r}"] if old.get("base") != new["base"] else []
    if old.get("data_sha256") != new["data_sha256"]:
        out.append(f"data (sha256 {str(old.get('data_sha256'))[:12]}... -> {new['data_sha256'][:12]}...)")
    old_settings, new_settings = old.get("settings") or {}, new["settings"]
    for key in sorted(set(old_settings) | set(new_settings)):
        if old_settings.get(key) != new_settings.get(key):
            out.append(f"{key} {old_settings.get(key)!r} -> {new_settings.get(key)!r}")
    return out


def prepare_out_dir(out: Path, identity: dict, *, overwrite: bool = False) -> str | None:
    """Check that `out` is free or holds this very run; returns the checkpoint to resume from (or None).

    Raises ConfigError, before any model loads, when `out` holds another run's checkpoints or adapter.
    With `overwrite`, those (and only those) files are removed first.
    """
    checkpoints = out / "checkpoints"
    if overwrite:
        shutil.rmtree(checkpoints, ignore_errors=True)
        for name in ADAPTER_FILES:
            (out / name).unlink(missing_ok=True)
    resume = last_checkpoint(checkpoints) if checkpoints.is_dir() else None
    if resume or any((out / name).exists() for name in ADAPTER_FILES):
        recorded = _recorded_identities(out)
        advice = "use a new --out folder, or pass --overwrite (overwrite=True) to discard it and train from scratch"
        if not recorded:
            raise ConfigError(f"{out} already holds checkpoints or an adapter that no run.json or moddecode.json "
                              f"describes, so it cannot be resumed safely; {advice}")
        for where, old in recorded.items():
            diffs = _differences(old, identity)
            if diffs:
                # the restored optimizer/scheduler belong to the old length: the first extra step would
                # run at learning rate 0 and the rest on a schedule neither run asked for
                hint = ("; a run of another length needs its own learning-rate schedule, which resuming "
                        "cannot give it"
                        if any(d.startswith(("max_steps ", "epochs ")) for d in diffs) else "")
                raise ConfigError(f"{out} holds another training run ({where} differs: {'; '.join(diffs)}), which "
                                  f"would be resumed and relabelled{hint}; {advice}")
    checkpoints.mkdir(parents=True, exist_ok=True)
    (checkpoints / RUN_FILE).write_text(json.dumps(identity, indent=2))
    return resume


def train_dpo(settings: TrainSettings, *, progress: bool = True, overwrite: bool = False) -> Path:
    """Train one LoRA adapter with f-DPO; returns the adapter folder.

    Resumes from `<out>/checkpoints` when they belong to this same run; refuses a folder holding another
    run unless `overwrite` (which deletes that run's checkpoints and adapter files first)."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from ..policy import resolve_source

    rows, digest = load_pairs(settings.data)
    folder, _ = resolve_source(settings.source)
    out = Path(settings.out_dir)
    checkpoints = out / "checkpoints"
    resume = prepare_out_dir(out, run_identity(settings.source, digest, asdict(settings)), overwrite=overwrite)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    torch.manual_seed(settings.seed)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    config = DPOConfig(
        output_dir=str(checkpoints), use_cpu=not torch.cuda.is_available(), bf16=False,
        gradient_checkpointing=False, beta=settings.beta, learning_rate=settings.learning_rate,
        num_train_epochs=settings.epochs, max_steps=settings.max_steps,
        per_device_train_batch_size=settings.batch_size, gradient_accumulation_steps=settings.grad_accum,
        max_length=settings.max_length, save_steps=settings.save_steps, save_total_limit=2,
        logging_steps=1, report_to=[], seed=settings.seed, disable_tqdm=not progress,
        **trl_divergence(settings.divergence), **settings.extra,
    )
    lora = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, target_modules=list(settings.target_modules),
                      lora_dropout=0.0, task_type="CAUSAL_LM")
    trainer = DPOTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows),
                         processing_class=tokenizer, peft_config=lora)
    start = time.time()
    trainer.train(resume_from_checkpoint=resume)
    trainer.model.save_pretrained(str(out))
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    metadata = {
        "objective": settings.objective, "divergence": get_divergence(settings.divergence).name,
        "beta": settings.beta, "data": settings.data, "data_sha256": digest, "pairs": len(rows),
        "base": settings.source, "steps": trainer.state.global_step, "train_seconds": round(time.time() - start, 1),
        "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
        "loss_curve": [round(loss, 4) for loss in losses],  # one per step, resumed steps included
        "settings": {k: v for k, v in asdict(settings).items() if k not in {"source", "data", "out_dir"}},
    }
    (out / ADAPTER_METADATA_FILE).write_text(json.dumps(metadata, indent=2))
    return out
