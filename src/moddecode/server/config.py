"""Server settings: limits and batching, from the policy set's optional `server:` section.

    server:
      max_body_bytes: 1000000   # larger request bodies get 413
      max_queue: 256            # prompts waiting to be decoded; more get 429
      max_tokens_limit: 1024    # largest max_tokens a request may ask for
      max_batch_size: 32        # prompts decoded together in one batch
      batch_window_ms: 10       # how long an idle server waits to collect concurrent requests
      allowed_hosts: [gpu-box.lan]  # Host names answered besides localhost and IP addresses ("*": any)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Mapping

from ..config import PolicySetMeta, check_keys, load_policy_set
from ..errors import ConfigError
from ..mod import MOD
from ..policy import ModelCache


@dataclass(frozen=True)
class ServerSettings:
    """Limits that keep one server responsive; validated on construction."""

    max_body_bytes: int = 1_000_000
    max_queue: int = 256
    max_tokens_limit: int = 1024
    max_batch_size: int = 32
    batch_window_ms: float = 10.0
    allowed_hosts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        hosts = self.allowed_hosts
        if isinstance(hosts, str) or not isinstance(hosts, (list, tuple)) or \
                not all(isinstance(h, str) and h.strip() and not any(c.isspace() or c in "/:" for c in h.strip())
                        for h in hosts):
            raise ConfigError(f"server.allowed_hosts must be a list of host names without ports (e.g. "
                              f"[gpu-box.lan, '*.example.com']), got {hosts!r}")
        object.__setattr__(self, "allowed_hosts", tuple(h.strip() for h in hosts))
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "allowed_hosts":
                continue
            if f.name == "batch_window_ms":
                ok = isinstance(value, (int, float)) and math.isfinite(value) and value >= 0
            else:
                ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
            if not ok:
                kind = "a finite number >= 0" if f.name == "batch_window_ms" else "a positive integer"
                raise ConfigError(f"server.{f.name} must be {kind}, got {value!r}")

    @classmethod
    def from_mapping(cls, section: Mapping | None) -> "ServerSettings":
        section = dict(section or {})
        check_keys("server", section, [f.name for f in fields(cls)])
        return cls(**section)


def load_server_config(path_or_dict: str | Path | Mapping, *, cache: ModelCache | None = None,
                       engine: str | None = None) -> tuple[MOD, PolicySetMeta, ServerSettings]:
    """Load the policy set and its server settings (settings are checked before any model loads).

    `engine` replaces the set's `engine:` ('transformers' or 'vllm'); a vLLM engine is built for the
    server (vLLM's async engine, started by the app)."""
    if not isinstance(path_or_dict, Mapping):
        import yaml

        path = Path(path_or_dict).expanduser()
        raw = yaml.safe_load(path.read_text()) if path.is_file() else None
        section = raw.get("server") if isinstance(raw, Mapping) else None
    else:
        section = path_or_dict.get("server")
    if section is not None and not isinstance(section, Mapping):
        raise ConfigError(f"`server` must be a mapping, got {section!r}")
    settings = ServerSettings.from_mapping(section)
    mod, meta = load_policy_set(path_or_dict, cache=cache, engine=engine, for_server=True)
    return mod, meta, settings
