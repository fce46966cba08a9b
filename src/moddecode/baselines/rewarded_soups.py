"""Rewarded Soups (Ramé et al., 2023), the parameter-merging baseline of the paper: theta = sum_i w_i theta_i.

Two ways to merge:
- `merge_full_models`: whole fine-tuned models of one architecture, state dict by state dict.
- `merge_lora_adapters`: LoRA adapters of one base model. "exact" merges the weight deltas,
  Delta W = sum_i w_i * scaling_i * B_i A_i, which is what theta = sum_i w_i theta_i means for
  W_i = W0 + scaling_i B_i A_i when sum(w) = 1 (PEFT's add_weighted_adapter "cat": the merged adapter
  stacks the factors, rank sum_i r_i). "factor_average" is what the RS / MOD reference code does:
  average the factors, A = sum_i w_i A_i and B = sum_i w_i B_i, giving scaling (sum w_i B_i)(sum w_i A_i),
  which is NOT the weighted sum of the deltas (cross terms B_i A_j appear); it is kept to reproduce
  published RS numbers.

Weights may be any finite reals (the paper also runs RS with negative weights, Table 2).
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Sequence
from pathlib import Path

import torch

from ..errors import ConfigError, ModelLoadError, UnknownNameError

LORA_MERGE_METHODS = ["exact", "factor_average"]


def _check_weights(weights: Sequence[float], n: int, what: str) -> list[float]:
    try:
        w = [float(x) for x in weights]
    except (TypeError, ValueError):
        raise ConfigError(f"weights must be a list of numbers, got {weights!r}") from None
    if len(w) != n:
        raise ConfigError(f"got {len(w)} weights for {n} {what}; pass one weight per {what[:-1]}")
    if not all(math.isfinite(x) for x in w):
        raise ConfigError(f"weights must be finite, got {w}")
    return w


def merge_full_models(models: Sequence[torch.nn.Module], weights: Sequence[float]) -> torch.nn.Module:
    """A new model (deep copy of models[0]) whose floating-point tensors are sum_i w_i theta_i.

    All models must be of the same class with identical state-dict keys, shapes and dtypes.
    Integer/bool buffers are not averaged; they must agree across models. Sums are accumulated
    in float32 (float64 for float64 tensors) and cast back, so weights (1, 0, ...) reproduce
    models[0] exactly.
    """
    models = list(models)
    if not models:
        raise ConfigError("merge_full_models needs at least one model")
    w = _check_weights(weights, len(models), "models")
    kinds = {type(m).__name__ for m in models}
    if len(kinds) > 1:
        raise ConfigError(f"all models must share one architecture; got classes {sorted(kinds)}")
    states = [m.state_dict() for m in models]
    keys = list(states[0])
    for i, sd in enumerate(states[1:], start=1):
        missing, extra = set(keys) - set(sd), set(sd) - set(keys)
        if missing or extra:
            raise ConfigError(
                f"model {i} does not have model 0's architecture: missing {sorted(missing)[:3]}, "
                f"unexpected {sorted(extra)[:3]} (state-dict keys)"
            )
        for k in keys:
            if sd[k].shape != states[0][k].shape or sd[k].dtype != states[0][k].dtype:
                raise ConfigError(
                    f"model {i} does not have model 0's architecture: {k!r} is {tuple(sd[k].shape)} {sd[k].dtype}, "
                    f"model 0 has {tuple(states[0][k].shape)} {states[0][k].dtype}"
                )
    merged_state = {}
    with torch.no_grad():
        for k in keys:
            tensors = [sd[k] for sd in states]
            if tensors[0].is_floating_point():
                acc_dtype = torch.float64 if tensors[0].dtype == torch.float64 else torch.float32
                acc = torch.zeros_like(tensors[0], dtype=acc_dtype)
                for wi, t in zip(w, tensors):
                    if wi != 0:  # 0 * t adds nothing; skipping also keeps exact copies exact
                        acc += wi * t.to(acc_dtype)
                merged_state[k] = acc.to(tensors[0].dtype)
            else:
                if any(not torch.equal(t, tensors[0]) for t in tensors[1:]):
                    raise ConfigError(f"non-float tensor {k!r} differs between models and cannot be averaged")
                merged_state[k] = tensors[0].clone()
    merged = copy.deepcopy(models[0])
    merged.load_state_dict(merged_state)
    return merged


def _lora_layers(model):
    from peft.tuners.lora import LoraLayer

    return [m for m in model.modules() if isinstance(m, LoraLayer)]


def _factor_pairs(layer, name: str):
    """(A, B) parameters of adapter `name` in one LoRA layer, or None if it does not target this layer."""
    if name in layer.lora_A:
        return layer.lora_A[name].weight, layer.lora_B[name].weight
    if name in getattr(layer, "lora_embedding_A", {}):
        return layer.lora_embedding_A[name], layer.lora_embedding_B[name]
    return None


def _load_adapters(base_model, adapter_dirs: Sequence[str | Path]):
    from peft import PeftModel

    names = [f"rs_source_{i}" for i in range(len(adapter_dirs))]
    for d in adapter_dirs:
        if not (Path(d) / "adapter_config.json").is_file():
            raise ModelLoadError(f"{str(d)!r} is not a PEFT adapter folder (no adapter_config.json); check the path")
    try:
        model = PeftModel.from_pretrained(base_model, str(adapter_dirs[0]), adapter_name=names[0])
        for name, d in zip(names[1:], adapter_dirs[1:]):
            model.load_adapter(str(d), adapter_name=name)
    except Exception as e:
        raise ModelLoadError(
            f"could not load the LoRA adapters {list(map(str, adapter_dirs))} onto the base model: {e}"
        ) from e
    for name, d in zip(names, adapter_dirs):
        cfg = model.peft_config[name]
        if (
            getattr(cfg, "peft_type", None) is not None
            and str(getattr(cfg.peft_type, "value", cfg.peft_type)) != "LORA"
        ):
            raise ConfigError(f"adapter {str(d)!r} is a {cfg.peft_type} adapter; only LoRA adapters can be merged here")
        if getattr(cfg, "use_dora", False) or getattr(cfg, "lora_bias", False):
            raise ConfigError(
                f"adapter {str(d)!r} uses DoRA or LoRA biases; its update is not B A, so it cannot be merged exactly"
            )
        if getattr(cfg, "modules_to_save", None):
            raise ConfigError(
                f"adapter {str(d)!r} has modules_to_save (fully trained modules); merge such models with merge_full_models"
            )
    return model, names


def _merge_exact(model, names: list[str], weights: list[float], merged_name: str) -> None:
    # PEFT folds weight * scaling_i into the stacked A factors ("cat"; with one adapter it uses the
    # equivalent sqrt split), so the merged adapter must apply scaling 1. Its config says
    # lora_alpha = r, but with use_rslora that would give sqrt(r): pin it to 1 explicitly.
    model.add_weighted_adapter(names, weights, merged_name, combination_type="cat")
    model.peft_config[merged_name].use_rslora = False
    for layer in _lora_layers(model):
        if merged_name in layer.scaling:
            layer.scaling[merged_name] = 1.0


def _merge_factor_average(model, names: list[str], weights: list[float], merged_name: str) -> None:
    configs = [model.peft_config[n] for n in names]
    fields = ("r", "lora_alpha", "use_rslora", "target_modules", "rank_pattern", "alpha_pattern")
    for f in fields:
        values = [getattr(c, f, None) for c in configs]
        if any(v != values[0] for v in values[1:]):
            raise ConfigError(
                f"factor averaging needs adapters with the same {f} (got {values}); use method='exact', "
                "which merges any LoRA adapters of one base model"
            )
    model.add_adapter(merged_name, copy.deepcopy(configs[0]))
    with torch.no_grad():
        for layer in _lora_layers(model):
            target = _factor_pairs(layer, merged_name)
            if target is None:
                continue
            sources = [_factor_pairs(layer, n) for n in names]
            target[0].copy_(sum(w * a for w, (a, _) in zip(weights, sources)))
            target[1].copy_(sum(w * b for w, (_, b) in zip(weights, sources)))


def merge_lora_adapters(
    base_model: torch.nn.Module,
    adapter_dirs: Sequence[str | Path],
    weights: Sequence[float],
    method: str = "exact",
    *,
    adapter_name: str = "rewarded_soup",
    merge: bool = False,
):
    """Rewarded Soups over LoRA adapters of `base_model`.

    method "exact": the adapter's update is sum_i w_i * scaling_i * B_i A_i (rank sum_i r_i).
    method "factor_average": the RS/MOD reference code's factor-wise averaging
    A = sum_i w_i A_i, B = sum_i w_i B_i with the shared scaling; needs identical adapter configs.

    Returns a PeftModel with only the merged adapter active (the source adapters are deleted), or with
    merge=True the plain base-model class with the update folded into its weights.
    `base_model` is modified in place (PEFT injects its layers into it): pass a fresh copy if you need
    the untouched base again.
    """
    dirs = list(adapter_dirs)
    if not dirs:
        raise ConfigError("merge_lora_adapters needs at least one adapter folder")
    w = _check_weights(weights, len(dirs), "adapters")
    if method not in LORA_MERGE_METHODS:
        raise UnknownNameError("LoRA merge method", str(method), LORA_MERGE_METHODS)
    model, names = _load_adapters(base_model, dirs)
    if adapter_name in names:
        raise ConfigError(f"adapter_name {adapter_name!r} clashes with an internal name; choose another")
    if method == "exact":
        _merge_exact(model, names, w, adapter_name)
    else:
        _merge_factor_average(model, names, w, adapter_name)
    model.set_adapter(adapter_name)
    for name in names:
        model.delete_adapter(name)
    model.eval()
    return model.merge_and_unload() if merge else model


# --- when merging means something ---------------------------------------------------------------

_ARCH_KEYS = ("model_type", "architectures", "vocab_size", "hidden_size", "intermediate_size",
              "num_hidden_layers", "num_attention_heads", "num_key_value_heads")


def rs_skip_reason(specs) -> str | None:
    """Why parameter merging is meaningless for these policies, or None when RS can run.

    `specs`: objects with `source`, `adapter` and `system_prompt` (e.g. moddecode.config.PolicySpec).
    """
    prompts = {s.system_prompt for s in specs}
    if len(prompts) > 1:
        return ("RS skipped: the policies differ in their system prompts, and parameter merging cannot merge "
                "prompts; with shared parameters a soup would just be the base model again. RS needs LoRA "
                "adapters of one base model or full fine-tuned models of one architecture")
    adapters = [s.adapter for s in specs]
    if all(adapters):
        if len({s.source for s in specs}) > 1:
            return "RS skipped: the LoRA adapters sit on different base models; RS merges adapters of one base"
        return None
    if any(adapters):
        return "RS skipped: some policies have a LoRA adapter and some do not; give every policy an adapter"
    if len({s.source for s in specs}) < len(specs):
        return "RS skipped: two policies load the same model with no adapter, so their parameters are identical"
    configs = [_local_config(s.source) for s in specs]
    if all(c is not None for c in configs):
        for key in _ARCH_KEYS:
            values = [c.get(key) for c in configs]
            if any(v != values[0] for v in values[1:]):
                return (f"RS skipped: the full models differ in architecture ({key}: {values}); "
                        "RS needs one architecture")
    return None


def _local_config(source: str) -> dict | None:
    path = Path(source) / "config.json"
    return json.loads(path.read_text()) if path.is_file() else None
