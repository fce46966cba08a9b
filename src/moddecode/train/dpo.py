"""f-DPO LoRA training with TRL: one adapter per objective, regularised by a chosen f-divergence.

The adapter folder gets `moddecode.json` (objective, divergence, beta, data hash, base) that
`Policy.load(..., adapter=...)` reads. Checkpoints go to <out>/checkpoints; running the same command
again resumes from the last one.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..divergences import get_divergence
from ..errors import ConfigError
from ..jsonl import read_jsonl
from ..policy import ADAPTER_METADATA_FILE

# our divergence names -> TRL's DPOConfig.f_divergence_type
TRL_DIVERGENCES = {"reverse_kl": "reverse_kl", "forward_kl": "forward_kl", "jsd": "js_divergence"}


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
        return {"f_divergence_type": "alpha_divergence", "f_alpha_divergence_coef": div.alpha}
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


def train_dpo(settings: TrainSettings, *, progress: bool = True) -> Path:
    """Train one LoRA adapter with f-DPO; returns the adapter folder."""
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
    trainer.train(resume_from_checkpoint=last_checkpoint(checkpoints))
    trainer.model.save_pretrained(str(out))
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    metadata = {
        "objective": settings.objective, "divergence": get_divergence(settings.divergence).name,
        "beta": settings.beta, "data": settings.data, "data_sha256": digest, "pairs": len(rows),
        "base": settings.source, "steps": trainer.state.global_step, "train_seconds": round(time.time() - start, 1),
        "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
        "settings": {k: v for k, v in asdict(settings).items() if k not in {"source", "data", "out_dir"}},
    }
    (out / ADAPTER_METADATA_FILE).write_text(json.dumps(metadata, indent=2))
    return out
