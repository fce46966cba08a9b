"""Policies: a model (+ optional LoRA adapter) (+ optional system prompt) that scores next tokens.

Policies loaded from the same source share one model object in memory (`ModelCache`), so the engine
can batch them into a single forward pass: LoRA adapters of one base become PEFT adapters of one
PeftModel (mixed-adapter batches), and prompted policies differ only in their input rows.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .bundled import SMOLLM2_ALIAS, bundled_smollm2_gguf, converted_gguf_folder
from .errors import ConfigError, IncompatiblePoliciesError, ModelLoadError

# A chat: [{"role": "system" | "user" | "assistant", "content": text}, ...], ending with a user turn.
Conversation = list[dict[str, str]]
BASE_ADAPTER = "__base__"  # PEFT's name for "no adapter" in a mixed-adapter batch
ADAPTER_METADATA_FILE = "moddecode.json"


@dataclass(eq=False)
class LoadedModel:
    """One base model in memory, shared by every policy loaded from the same source."""

    key: str
    model: torch.nn.Module  # a transformers causal LM, or a PeftModel wrapping it once adapters load
    tokenizer: object
    adapters: dict[str, str] = field(default_factory=dict)  # resolved adapter folder -> PEFT adapter name

    @property
    def vocab_size(self) -> int:
        """Tokens the tokenizer can produce; the lm_head may be padded beyond this."""
        return len(self.tokenizer)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def cache_argument(self) -> str:
        """Name of the KV-cache argument/output: 'cache' from transformers 5.2x, 'past_key_values' before."""
        if not hasattr(self, "_cache_argument"):
            import inspect

            core = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
            params = inspect.signature(core.forward).parameters
            self._cache_argument = "cache" if "cache" in params else "past_key_values"
        return self._cache_argument

    @property
    def has_adapters(self) -> bool:
        return bool(self.adapters)

    def vocab_fingerprint(self) -> str:
        if not hasattr(self, "_fingerprint"):
            items = sorted(self.tokenizer.get_vocab().items())
            self._fingerprint = hashlib.sha256(json.dumps(items).encode()).hexdigest()
        return self._fingerprint

    def attach_adapter(self, adapter_dir: Path) -> str:
        """Load a PEFT LoRA adapter onto this model (once); return its adapter name."""
        key = str(adapter_dir.resolve())
        if key in self.adapters:
            return self.adapters[key]
        if not (adapter_dir / "adapter_config.json").exists():
            raise ModelLoadError(f"{adapter_dir} is not a PEFT adapter folder (no adapter_config.json)")
        from peft import PeftModel

        name = f"adapter{len(self.adapters)}"
        try:
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(str(adapter_dir), adapter_name=name, is_trainable=False)
            else:
                self.model = PeftModel.from_pretrained(self.model, str(adapter_dir), adapter_name=name)
        except Exception as exc:  # shape mismatches, bad files: one clear error
            raise ModelLoadError(f"could not load adapter {adapter_dir} onto {self.key}: {exc}") from exc
        self.model.eval()
        self.adapters[key] = name
        return name


def default_device(device: str | torch.device | None = None) -> torch.device:
    """`device`, or else the GPU where torch sees one, else the CPU: where a model loads unless told."""
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def describe_device(device: str | torch.device) -> str:
    """The device and torch build, e.g. 'NVIDIA H200, torch 2.11.0+cu130' (said where results were decoded)."""
    device = torch.device(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    return f"{name}, torch {torch.__version__}"


class ModelCache:
    """Loaded base models by (source, device, dtype), so loading the same source twice reuses one copy."""

    def __init__(self) -> None:
        self._models: dict[str, LoadedModel] = {}

    def get(self, source: str, *, device: str | torch.device | None = None,
            dtype: torch.dtype | None = None) -> LoadedModel:
        folder, gguf = resolve_source(source)
        device = default_device(device)
        if device.type == "cuda" and device.index is None:  # "cuda" and "cuda:0" are one device: one copy
            device = torch.device("cuda", torch.cuda.current_device())
        dtype = dtype or torch.float32
        key = f"{folder if gguf is None else gguf}|{device}|{dtype}"
        if key not in self._models:
            self._models[key] = _load(key, folder, device, dtype)
        return self._models[key]

    def clear(self) -> None:
        self._models.clear()


DEFAULT_CACHE = ModelCache()


def resolve_source(source: str) -> tuple[str, Path | None]:
    """(folder or hub id to load, the GGUF file it came from or None)."""
    if source == SMOLLM2_ALIAS:
        gguf = bundled_smollm2_gguf()
        return str(converted_gguf_folder(gguf)), gguf
    path = Path(source).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelLoadError(f"GGUF file not found: {path}")
        return str(converted_gguf_folder(path)), path.resolve()
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelLoadError(f"{path} is not a Hugging Face model folder (no config.json)")
        return str(path.resolve()), None
    return source, None  # a hub id; only works online


def load_tokenizer(folder: str):
    """The folder's tokenizer, padding with EOS where it names no pad token (batched prompts are left-padded)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _load(key: str, folder: str, device: torch.device, dtype: torch.dtype) -> LoadedModel:
    from transformers import AutoModelForCausalLM

    try:
        tokenizer = load_tokenizer(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    except Exception as exc:  # network, missing files, bad config: one clear error
        hint = "" if Path(folder).exists() else " (not a local folder or .gguf file; a hub id needs network access)"
        raise ModelLoadError(f"could not load model {folder!r}{hint}: {str(exc).splitlines()[0]}") from exc
    model.to(device).eval()
    return LoadedModel(key=key, model=model, tokenizer=tokenizer)


class Policy:
    """A next-token predictor aligned to one objective.

    It is a base model, optionally a LoRA adapter on it, optionally a system prompt. Prompts are
    formatted with the tokenizer's chat template (one user message, generation prompt added) and, if
    a system prompt is set, a system message before it.
    """

    def __init__(self, base: LoadedModel, *, adapter_name: str | None, system_prompt: str | None,
                 name: str, metadata: dict | None = None):
        self.base = base
        self.adapter_name = adapter_name
        self.system_prompt = system_prompt
        self.name = name
        self.metadata = metadata or {}

    @classmethod
    def load(cls, source: str, *, adapter: str | Path | None = None, system_prompt: str | None = None,
             name: str | None = None, device: str | None = None, dtype: torch.dtype | None = None,
             cache: ModelCache | None = None) -> "Policy":
        """Load a policy from a HF folder, a hub id (online only), a .gguf file, or 'smollm2' (bundled)."""
        if isinstance(source, os.PathLike):
            source = os.fspath(source)
        if not isinstance(source, str) or not source:
            raise ConfigError(f"policy source must be a non-empty string or path, got {source!r}")
        base = (cache or DEFAULT_CACHE).get(source, device=device, dtype=dtype)
        adapter_name, metadata = None, {}
        if adapter is not None:
            adapter_dir = Path(adapter).expanduser()
            if not adapter_dir.is_dir():
                raise ModelLoadError(f"adapter folder not found: {adapter_dir}")
            adapter_name = base.attach_adapter(adapter_dir)
            meta_file = adapter_dir / ADAPTER_METADATA_FILE
            if meta_file.exists():
                metadata = json.loads(meta_file.read_text())
        if system_prompt is not None and not isinstance(system_prompt, str):
            raise ConfigError(f"system_prompt must be a string, got {type(system_prompt).__name__}")
        default_name = metadata.get("objective") or (
            Path(str(adapter)).name if adapter is not None else (source if system_prompt is None else "prompted"))
        return cls(base, adapter_name=adapter_name, system_prompt=system_prompt, name=name or default_name,
                   metadata=metadata)

    @property
    def model(self) -> torch.nn.Module:
        return self.base.model

    @property
    def tokenizer(self):
        return self.base.tokenizer

    @property
    def peft_adapter(self) -> str:
        """This policy's PEFT adapter name in a mixed batch ('__base__' for the plain base model)."""
        return self.adapter_name or BASE_ADAPTER

    def messages(self, prompt: str | Conversation) -> Conversation:
        """The chat messages this policy formats for `prompt` (one user message) or a conversation.

        The policy's own system prompt comes first; a conversation's system text follows it in the same
        system message, after a blank line (one system message suits every chat template)."""
        turns = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
        system = [self.system_prompt] if self.system_prompt is not None else []
        system += [m["content"] for m in turns if m["role"] == "system"]
        rest = [m for m in turns if m["role"] != "system"]
        return [*([{"role": "system", "content": "\n\n".join(system)}] if system else []), *rest]

    def encode(self, prompt: str | Conversation) -> list[int]:
        """Token ids of the formatted prompt or conversation, ending where the response starts.

        Message texts are taken literally: control-token strings in them (e.g. "<|im_end|>") stay plain
        text, so a user cannot close their turn and forge a system one.
        """
        tok = self.tokenizer
        messages = self.messages(prompt)
        if not getattr(tok, "chat_template", None):
            if [m["role"] for m in messages if m["role"] != "system"] != ["user"]:
                raise ConfigError(f"policy {self.name!r} has no chat template, so it can only answer one user "
                                  "message, not a conversation with assistant turns")
            text = "\n\n".join(m["content"] for m in messages)
            return tok(text, add_special_tokens=True, split_special_tokens=True)["input_ids"]
        contents = [m["content"] for m in messages]
        literal = [tok(c, add_special_tokens=False, split_special_tokens=True)["input_ids"] for c in contents]
        if all(tok(c, add_special_tokens=False)["input_ids"] == ids for c, ids in zip(contents, literal)):
            # no control tokens in any message: the template's own tokenization, unchanged
            return list(tok.apply_chat_template(messages, add_generation_prompt=True, return_dict=False))
        # The template tokenizes its whole text with control tokens recognised: render it around
        # placeholders instead, and put each message's literal tokens in its placeholder's place.
        holders = [f"\ue000moddecode-{i}\ue000" for i in range(len(messages))]  # private use: no template alters them
        rest = tok.apply_chat_template([{**m, "content": h} for m, h in zip(messages, holders)],
                                       add_generation_prompt=True, tokenize=False)
        ids: list[int] = []
        for holder, text_ids in zip(holders, literal):
            if rest.count(holder) != 1:
                raise ConfigError(f"policy {self.name!r}: its chat template does not show each message exactly "
                                  "once, so text containing control tokens cannot be encoded safely; remove them")
            before, rest = rest.split(holder)
            ids += [*tok(before, add_special_tokens=False)["input_ids"], *text_ids]
        return ids + tok(rest, add_special_tokens=False)["input_ids"]

    def eos_token_ids(self) -> set[int]:
        ids = set()
        config_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        for value in (self.tokenizer.eos_token_id, config_eos):
            if isinstance(value, int):
                ids.add(value)
            elif isinstance(value, (list, tuple)):
                ids.update(int(v) for v in value)
        return ids

    def __repr__(self) -> str:
        parts = [self.base.key.split("|")[0]]
        if self.adapter_name:
            parts.append(f"adapter={self.adapter_name}")
        if self.system_prompt is not None:
            parts.append(f"system={self.system_prompt[:30]!r}")
        return f"Policy({self.name!r}: {', '.join(parts)})"


def check_shared_vocabulary(policies: list[Policy]) -> int:
    """Fail unless all policies share one vocabulary; return its size (tokens beyond it are lm_head padding)."""
    first = policies[0]
    for other in policies[1:]:
        if other.base is first.base:
            continue
        if other.base.vocab_fingerprint() != first.base.vocab_fingerprint():
            raise IncompatiblePoliciesError(
                f"policies {first.name!r} and {other.name!r} have different vocabularies "
                f"({first.base.vocab_size} vs {other.base.vocab_size} tokens); MOD combines token "
                "distributions, so all policies must use the same tokenizer"
            )
    return first.base.vocab_size
