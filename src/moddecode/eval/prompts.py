"""A sweep's prompts: a JSONL/CSV file, a Hugging Face dataset, or an inline list -> ((id, text), ...)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ..config import check_keys
from ..errors import ConfigError
from ..jsonl import read_jsonl

PROMPT_FILE_KEYS = ["path", "id_field", "text_field", "limit"]
PROMPT_DATASET_KEYS = ["dataset", "config", "split", "id_field", "text_field", "limit"]


def load_prompts(spec, base_dir: Path) -> tuple[tuple[tuple[str, str], ...], str]:
    """((id, text), ...) and a description of where they came from; ids are unique strings."""
    if isinstance(spec, (str, Path)):
        spec = {"path": str(spec)}
    if isinstance(spec, list):
        items, source, limit = [_inline_prompt(x, i) for i, x in enumerate(spec)], "inline list", None
    elif isinstance(spec, Mapping) and "dataset" in spec:
        check_keys("prompts", spec, PROMPT_DATASET_KEYS)
        items, source = _dataset_prompts(spec), f"Hugging Face dataset {spec['dataset']}"
        limit = spec.get("limit")
    elif isinstance(spec, Mapping) and "path" in spec:
        check_keys("prompts", spec, PROMPT_FILE_KEYS)
        path = Path(str(spec["path"])).expanduser()
        path = path if path.is_absolute() else (base_dir / path).resolve()
        items = _file_prompts(path, spec.get("id_field", "id"), spec.get("text_field", "prompt"))
        source, limit = str(path), spec.get("limit")
    else:
        raise ConfigError("`prompts` must be a file path, {path: FILE.jsonl|.csv, limit: N}, "
                          f"{{dataset: NAME, split: test, text_field: prompt}} or a list of prompts; got {spec!r}")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigError(f"`prompts.limit` must be a positive integer, got {limit!r}")
        items = items[:limit]
    if not items:
        raise ConfigError(f"no prompts found in {source}")
    ids = [i for i, _ in items]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ConfigError(f"prompt ids must be unique; repeated in {source}: {repeated[:5]}")
    return tuple(items), source


def _prompt(pid, text, where: str) -> tuple[str, str]:
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{where}: the prompt text must be a non-empty string, got {text!r}")
    if pid is None or str(pid) == "":
        raise ConfigError(f"{where}: the prompt id is empty")
    return str(pid), text


def _inline_prompt(item, index: int) -> tuple[str, str]:
    if isinstance(item, Mapping):
        return _prompt(item.get("id", f"p{index}"), item.get("prompt"), f"prompts[{index}]")
    return _prompt(f"p{index}", item, f"prompts[{index}]")


def _file_prompts(path: Path, id_field: str, text_field: str) -> list[tuple[str, str]]:
    if not path.is_file():
        raise ConfigError(f"prompts file not found: {path}")
    records: list[tuple[str, Mapping]] = []
    if path.suffix.lower() == ".csv":
        import csv

        with path.open(newline="", encoding="utf-8") as f:
            records = [(f"{path.name} row {n}", r) for n, r in enumerate(csv.DictReader(f), start=2)]
    elif path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        records = [(f"{path.name} line {n}", r) for n, r in read_jsonl(path, '{"id": ..., "prompt": ...}')]
    else:
        raise ConfigError(f"prompts file {path.name} must end in .jsonl or .csv")
    out = []
    for k, (where, r) in enumerate(records):
        if text_field not in r:
            raise ConfigError(f"{where} has no {text_field!r} field (it has {sorted(r)}); set prompts.text_field")
        out.append(_prompt(r.get(id_field, str(k)), r[text_field], where))
    return out


def _dataset_prompts(spec: Mapping) -> list[tuple[str, str]]:
    """A Hugging Face dataset (needs `datasets` and network access, or its local cache)."""
    try:
        import datasets
    except ImportError:
        raise ConfigError("prompts from a Hugging Face dataset need the `datasets` package: "
                          "pip install datasets") from None
    name, split = spec["dataset"], spec.get("split", "test")
    try:
        data = datasets.load_dataset(name, spec.get("config"), split=split)
    except Exception as exc:  # offline, unknown name or split: one clear line
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"could not load Hugging Face dataset {name!r} (split {split!r}): {reason}. Offline? "
                          "Export the prompts to JSONL ({\"id\": ..., \"prompt\": ...} per line) and use "
                          "prompts: {path: FILE}") from None
    text_field, id_field = spec.get("text_field", "prompt"), spec.get("id_field")
    if text_field not in data.column_names:
        raise ConfigError(f"dataset {name!r} has no column {text_field!r}; its columns are {data.column_names}")
    limit = spec.get("limit")
    rows = data.select(range(min(len(data), limit))) if isinstance(limit, int) and limit > 0 else data
    return [_prompt(r[id_field] if id_field else str(k), r[text_field], f"{name} row {k}") for k, r in enumerate(rows)]
