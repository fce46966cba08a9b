"""Training the single-objective policies: preference data from pi_ref, then f-DPO LoRA adapters."""

from .dpo import TrainSettings, load_pairs, train_dpo
from .prefs import build_pairs, make_prefs, read_prompts

__all__ = ["TrainSettings", "build_pairs", "load_pairs", "make_prefs", "read_prompts", "train_dpo"]
