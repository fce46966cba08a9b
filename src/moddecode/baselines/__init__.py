"""Baselines MOD is compared against."""

from .rewarded_soups import LORA_MERGE_METHODS, merge_full_models, merge_lora_adapters, rs_skip_reason

__all__ = ["LORA_MERGE_METHODS", "merge_full_models", "merge_lora_adapters", "rs_skip_reason"]
