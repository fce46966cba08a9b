"""Policy sets: a YAML file (or dict) naming the policies MOD combines, shared by the CLI and the server.

Schema (unknown keys are errors, with "did you mean"):

    name: mod                      # optional id (the server's model id); default "mod"
    policies:                      # one per objective, all sharing one vocabulary
      - name: helpful              # unique; also selectable as a model id (one-hot weights)
        source: smollm2            # HF folder, .gguf file, hub id (online only) or "smollm2" (bundled)
        adapter: adapters/helpful  # optional PEFT LoRA folder
        system_prompt: "..."       # optional
        objective: helpfulness     # optional label shown to users; default = name
    reference: {source: smollm2}   # optional pi_ref (adapter/system_prompt allowed); needed for JSD etc.
    divergence: reverse_kl         # default divergence (or `divergence:` under defaults)
    defaults: {max_new_tokens: 128, strategy: greedy, weights: [0.4, 0.3, 0.3], ...}  # any DecodingConfig field
    device: cpu                    # optional (default: cuda if available)
    dtype: float32                 # optional: float32, bfloat16, float16
    engine: transformers           # optional: what runs the models, "transformers" (default) or "vllm"
    engine_options: {tensor_parallel_size: 2, max_model_len: 4096}   # optional, passed to the engine
    server: {...}                  # read by moddecode.server.config, ignored here

Relative `source`/`adapter` paths are resolved against the YAML file's folder.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from .bundled import SMOLLM2_ALIAS
from .decoding import DecodingConfig
from .divergences import get_divergence
from .weights import as_weight_tensor
from .errors import ConfigError
from .mod import MOD
from .policy import ModelCache, Policy

TOP_LEVEL_KEYS = ["name", "policies", "reference", "divergence", "defaults", "device", "dtype", "engine",
                  "engine_options", "server"]
POLICY_KEYS = ["name", "source", "adapter", "system_prompt", "objective"]
REFERENCE_KEYS = ["source", "adapter", "system_prompt"]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class PolicySpec:
    """One policy (or the reference) as written in the policy set, with paths resolved."""

    name: str
    source: str
    adapter: str | None = None
    system_prompt: str | None = None
    objective: str | None = None


@dataclass(frozen=True)
class PolicySetMeta:
    """Everything in a policy set besides the loaded models."""

    name: str
    policies: tuple[PolicySpec, ...]
    reference: PolicySpec | None
    divergence: str  # canonical name, e.g. "reverse_kl" or "alpha:0.5"
    defaults: Mapping[str, Any] = field(default_factory=dict)  # the decoding defaults as written (+ "weights")
    server: Mapping[str, Any] = field(default_factory=dict)  # raw `server:` section
    path: Path | None = None
    engine: str = "transformers"

    @property
    def default_weights(self) -> list[float]:
        """The policy set's `defaults.weights`, else equal weights summing to 1."""
        n = len(self.policies)
        return list(self.defaults.get("weights") or [1.0 / n] * n)

    @property
    def decoding(self) -> DecodingConfig:
        """The policy set's decoding defaults (its divergence included) as a config."""
        return DecodingConfig.from_mapping({**self.decoding_defaults, "divergence": self.divergence})

    @property
    def decoding_defaults(self) -> dict[str, Any]:
        """The decoding options the policy set sets explicitly (no weights, no divergence)."""
        return {k: v for k, v in self.defaults.items() if k not in ("weights", "divergence")}

    @property
    def objectives(self) -> list[str]:
        return [p.objective or p.name for p in self.policies]

    @classmethod
    def from_mod(cls, mod: MOD, name: str = "mod") -> "PolicySetMeta":
        """Meta for a MOD built in code; objectives come from adapter metadata (`moddecode.json`) if any."""
        def spec(policy: Policy) -> PolicySpec:
            return PolicySpec(name=policy.name, source=policy.base.key.split("|")[0],
                              system_prompt=policy.system_prompt, objective=policy.metadata.get("objective"))

        return cls(name=name, policies=tuple(spec(p) for p in mod.policies),
                   reference=spec(mod.reference) if mod.reference is not None else None,
                   divergence=mod.divergence.name)


def load_policy_set(path_or_dict: str | Path | Mapping, *, cache: ModelCache | None = None,
                    engine: str | None = None, for_server: bool = False) -> tuple[MOD, PolicySetMeta]:
    """Load a policy set from a YAML file or an already-parsed mapping; returns (MOD, meta).

    `engine` replaces the set's `engine:`; `for_server` builds the engine the server drives (on vLLM:
    its async engine)."""
    raw, base_dir, path = _read(path_or_dict)
    check_keys("policy set", raw, TOP_LEVEL_KEYS)
    engine, engine_options = _engine(engine or raw.get("engine"), raw.get("engine_options"))
    if for_server and engine == "vllm":
        engine_options["async_engine"] = True
    specs = _policy_specs(raw.get("policies"), base_dir)
    reference = _reference_spec(raw.get("reference"), base_dir)
    name = raw.get("name", "mod")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"policy set `name` must be a non-empty string, got {name!r}")
    if name in {s.name for s in specs}:
        raise ConfigError(f"policy set name {name!r} equals a policy name; rename one of them")
    defaults = _defaults(raw.get("defaults") or {}, len(specs))
    divergence = _divergence(raw.get("divergence"), defaults.get("divergence"))
    server = raw.get("server") or {}
    if not isinstance(server, Mapping):
        raise ConfigError(f"`server` must be a mapping, got {type(server).__name__}")
    device, dtype = raw.get("device"), _dtype(raw.get("dtype"))

    def load(spec: PolicySpec) -> Policy:
        return Policy.load(spec.source, adapter=spec.adapter, system_prompt=spec.system_prompt, name=spec.name,
                           device=device, dtype=dtype, cache=cache)

    mod = MOD([load(s) for s in specs], reference=load(reference) if reference else None, divergence=divergence,
              engine=engine, engine_options=engine_options)
    meta = PolicySetMeta(name=name, policies=tuple(specs), reference=reference, divergence=divergence,
                         defaults=defaults, server=dict(server), path=path, engine=engine)
    return mod, meta


def read_yaml_mapping(path: Path, *, missing: str, not_mapping: str) -> dict:
    """A YAML file's top-level mapping; ConfigError with the given messages if absent or not a mapping."""
    if not path.is_file():
        raise ConfigError(missing)
    import yaml

    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(raw, Mapping):
        raise ConfigError(not_mapping)
    return dict(raw)


def _read(path_or_dict) -> tuple[dict, Path, Path | None]:
    if isinstance(path_or_dict, Mapping):
        return dict(path_or_dict), Path.cwd(), None
    path = Path(path_or_dict).expanduser()
    raw = read_yaml_mapping(path, missing=f"policy set file not found: {path}",
                            not_mapping=f"{path} must contain a mapping with a `policies` list")
    return raw, path.parent.resolve(), path


def check_keys(where: str, entry: Mapping, allowed: list[str]) -> None:
    """Raise ConfigError for a key not in `allowed`, suggesting the closest one."""
    for key in entry:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown key {key!r} in {where}.{hint} Allowed: {', '.join(allowed)}.")


def _resolve(value: str | None, base_dir: Path) -> str | None:
    """Paths relative to the YAML file's folder; aliases and hub ids stay as they are."""
    if value is None or value == SMOLLM2_ALIAS:
        return value
    candidate = base_dir / Path(value).expanduser()
    return str(candidate) if not Path(value).is_absolute() and candidate.exists() else value


def _spec(entry, where: str, allowed: list[str], base_dir: Path, default_name: str | None = None) -> PolicySpec:
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where} must be a mapping with at least `source`, got {entry!r}")
    check_keys(where, entry, allowed)
    name = entry.get("name", default_name)
    for key in ("name", "source"):
        value = name if key == "name" else entry.get("source")
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where} needs a non-empty string `{key}`, got {value!r}")
    for key in ("adapter", "system_prompt", "objective"):
        if entry.get(key) is not None and not isinstance(entry[key], str):
            raise ConfigError(f"{where} `{key}` must be a string, got {entry[key]!r}")
    return PolicySpec(name=name, source=_resolve(entry["source"], base_dir),
                      adapter=_resolve(entry.get("adapter"), base_dir),
                      system_prompt=entry.get("system_prompt"), objective=entry.get("objective"))


def _policy_specs(entries, base_dir: Path) -> list[PolicySpec]:
    if not isinstance(entries, list) or not entries:
        raise ConfigError("a policy set needs a non-empty `policies` list of {name, source, ...} entries")
    specs = [_spec(e, f"policies[{i}]", POLICY_KEYS, base_dir) for i, e in enumerate(entries)]
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"policy names must be unique; repeated: {', '.join(duplicates)}")
    return specs


def _reference_spec(entry, base_dir: Path) -> PolicySpec | None:
    if entry is None:
        return None
    return _spec(entry, "reference", REFERENCE_KEYS, base_dir, default_name="reference")


def _defaults(entry, num_policies: int) -> dict:
    """Validated decoding defaults: the same checks as a request would get."""
    if not isinstance(entry, Mapping):
        raise ConfigError(f"`defaults` must be a mapping, got {entry!r}")
    defaults = dict(entry)
    if "weights" in defaults:
        try:
            defaults["weights"] = as_weight_tensor(defaults.pop("weights"), num_policies).tolist()
        except ConfigError as exc:
            raise ConfigError(f"defaults.weights: {exc}") from None
    config = DecodingConfig.from_mapping({k: v for k, v in defaults.items() if k != "weights"}, where="defaults")
    for key in ("stop", "divergence"):  # as the config normalised them
        if key in defaults:
            defaults[key] = list(config.stop) if key == "stop" else config.divergence
    return defaults


def _divergence(top_level, in_defaults) -> str:
    """The policy set's divergence: top-level `divergence` or `defaults.divergence` (not two different ones)."""
    top = get_divergence(top_level).name if top_level is not None else None
    if top is not None and in_defaults is not None and top != in_defaults:
        raise ConfigError(f"the policy set names two divergences ({top!r} at the top, {in_defaults!r} under "
                          "defaults); keep one")
    return top or in_defaults or "reverse_kl"


def _engine(name, options) -> tuple[str, dict]:
    """The engine's name (checked against the registry, before any model loads) and its options."""
    from .engines import get_engine_class

    name = name or "transformers"
    if options is not None and not isinstance(options, Mapping):
        raise ConfigError(f"`engine_options` must be a mapping of engine settings, got {options!r}")
    get_engine_class(name)  # unknown names ("did you mean"), or vLLM not installed: fail before loading models
    if options and name == "transformers":
        raise ConfigError(f"`engine_options` {dict(options)} are for engine 'vllm'; the transformers engine takes "
                          "none (set `engine: vllm`, or drop them)")
    return name, dict(options or {})


def _dtype(value) -> torch.dtype | None:
    if value is None:
        return None
    if value not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {value!r}")
    return DTYPES[value]
