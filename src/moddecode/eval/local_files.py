"""The local model files a sweep names: checked before anything loads, and fingerprinted for its hash.

A row depends on the weights that produced and scored it, not just on the paths in the config: an
adapter overwritten in place must not count as "already done". `fingerprints` hashes (sha256) the
files of every local model folder, .gguf file and adapter folder a sweep references. Each file's
digest is remembered by (size, mtime) in the cache folder, so a rerun reads no unchanged file again.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..bundled import SMOLLM2_ALIAS, bundled_smollm2_gguf, cache_root
from ..errors import ConfigError, ModelLoadError

HASH_CACHE_FILE = "file-sha256.json"
# in a model or adapter folder, what does not change its outputs: training metadata (timings) and cards
NOT_CONTENT_NAMES, NOT_CONTENT_SUFFIXES = {"moddecode.json"}, {".md"}
# a file modified this recently may still change within one mtime tick: hash it, but do not remember it
RACY_SECONDS = 2.0
SCORER_PATH_OPTIONS = ("model", "tokenizer")  # scorer options that name model folders (hf_reward, llm_judge)


def check_policy_paths(where: str, source: str, adapter: str | None) -> None:
    """What loading would reject, found without loading: a missing adapter or .gguf, a folder that is no model."""
    if adapter is not None:
        path = Path(adapter).expanduser()
        if not path.is_dir():
            raise ConfigError(f"{where}: adapter folder not found: {adapter} (give the folder that holds "
                              "adapter_config.json, e.g. one `moddecode train` wrote)")
        if not (path / "adapter_config.json").is_file():
            raise ConfigError(f"{where}: {adapter} is not a PEFT adapter folder (no adapter_config.json)")
    path = Path(source).expanduser()
    if path.suffix == ".gguf" and not path.is_file():
        raise ConfigError(f"{where}: GGUF file not found: {source}")
    if path.is_dir() and not (path / "config.json").is_file():
        raise ConfigError(f"{where}: {source} is not a Hugging Face model folder (no config.json)")


def _entries(policy_set: Mapping) -> list[tuple[str, Mapping]]:
    out = [(f"policies[{i}]", p) for i, p in enumerate(policy_set.get("policies", []))]
    return out + ([("reference", policy_set["reference"])] if policy_set.get("reference") else [])


def check_policy_set_paths(policy_set: Mapping) -> None:
    """`check_policy_paths` for every policy and the reference of a policy-set dict."""
    for where, spec in _entries(policy_set):
        check_policy_paths(where, spec["source"], spec.get("adapter"))


def referenced_paths(policy_set: Mapping, scorers: Iterable[Mapping]) -> dict[str, str]:
    """{role: path} of every model-ish path a sweep names, e.g. {"policies[0].adapter": "/x/lora"}."""
    out = {}
    for where, spec in _entries(policy_set):
        for key in ("source", "adapter"):
            if isinstance(spec.get(key), str):
                out[f"{where}.{key}"] = spec[key]
    for i, spec in enumerate(scorers):
        for key in SCORER_PATH_OPTIONS:
            if isinstance(spec.get(key), str):
                out[f"scorers[{i}].{key}"] = spec[key]
    return out


def fingerprints(paths: Mapping[str, str]) -> dict[str, str]:
    """{role: sha256 of the content} for the roles whose path is a local folder or file (hub ids are skipped).

    The bundled-model alias counts as its .gguf file (an upgraded package changes the rows too).

    A folder's digest covers its top-level files by name and content (not sub-folders such as training
    checkpoints), so it does not depend on where the folder lives.
    """
    cache = _HashCache(cache_root() / HASH_CACHE_FILE)
    out = {}
    for role, text in paths.items():
        path = Path(text).expanduser()
        if text == SMOLLM2_ALIAS:
            try:
                path = bundled_smollm2_gguf()
            except ModelLoadError:  # not installed: loading will say so
                continue
        if path.is_file():
            out[role] = cache.sha256(path)
        elif path.is_dir():
            files = sorted(f for f in path.iterdir() if f.is_file() and not f.name.startswith(".")
                           and f.name not in NOT_CONTENT_NAMES and f.suffix not in NOT_CONTENT_SUFFIXES)
            digest = hashlib.sha256()
            for f in files:
                digest.update(f"{f.name}\0{cache.sha256(f)}\n".encode())
            out[role] = digest.hexdigest()
    cache.save()
    return out


class _HashCache:
    """sha256 per file, remembered by (resolved path, size, mtime_ns) in one JSON file."""

    def __init__(self, file: Path):
        self.file = file
        try:
            self.entries = json.loads(file.read_text())
        except (OSError, ValueError):  # none yet, or damaged: start over
            self.entries = {}
        self.changed = False

    def sha256(self, path: Path) -> str:
        key, stat = str(path.resolve()), path.stat()
        stamp = [stat.st_size, stat.st_mtime_ns]
        hit = self.entries.get(key)
        if isinstance(hit, list) and hit[:2] == stamp:
            return hit[2]
        with path.open("rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        if time.time() - stat.st_mtime > RACY_SECONDS:
            self.entries[key] = [*stamp, digest]
            self.changed = True
        return digest

    def save(self) -> None:
        if not self.changed:
            return
        self.entries = {k: v for k, v in self.entries.items() if os.path.exists(k)}  # forget deleted files
        try:  # atomic replace: concurrent sweeps may lose an entry, never corrupt the file
            self.file.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".file-sha256-", dir=self.file.parent)
            with os.fdopen(fd, "w") as f:
                json.dump(self.entries, f)
            os.replace(tmp, self.file)
        except OSError:  # a read-only cache only costs speed
            pass
