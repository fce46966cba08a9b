"""A sweep's prompts: a JSONL/CSV file, a Hugging Face dataset, or an inline list -> ((id, text), ...).

Files go through the package's one prompt reader (moddecode.prompts); this module adds the sweep's
`prompts:` spec, datasets and inline lists.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ...checks import positive_int
from ...config import check_keys
from ...errors import ConfigError
from ...prompts import PromptItem, check_prompts, prompt_item, read_prompt_file

PROMPT_FILE_KEYS = ["path", "id_field", "text_field", "limit"]
PROMPT_DATASET_KEYS = ["dataset", "config", "split", "id_field", "text_field", "limit"]


def load_prompts(spec, base_dir: Path) -> tuple[tuple[tuple[str, str], ...], str]:
    """((id, text), ...) and a description of where they came from; ids are unique strings."""
    if isinstance(spec, (str, Path)):
        spec = {"path": str(spec)}
    limit = spec.get("limit") if isinstance(spec, Mapping) else None
    if limit is not None:
        positive_int(limit, "`prompts.limit`")
    if isinstance(spec, list):
        source = "inline list"
        items = check_prompts([_inline_prompt(x, i) for i, x in enumerate(spec)], source)
    elif isinstance(spec, Mapping) and "dataset" in spec:
        check_keys("prompts", spec, PROMPT_DATASET_KEYS)
        source = f"Hugging Face dataset {spec['dataset']}"
        items = check_prompts(_dataset_prompts(spec), source)  # `limit` applies as the rows are read
    elif isinstance(spec, Mapping) and "path" in spec:
        check_keys("prompts", spec, PROMPT_FILE_KEYS)
        path = Path(str(spec["path"])).expanduser()
        path = path if path.is_absolute() else (base_dir / path).resolve()
        # index_ids: records without an id are numbered 0, 1, ... as they always were (the hash covers ids)
        items = read_prompt_file(path, id_field=spec.get("id_field", "id"), text_field=spec.get("text_field", "prompt"),
                                 plain_text=False, index_ids=True, limit=limit)
        source = str(path)
    else:
        raise ConfigError("`prompts` must be a file path, {path: FILE.jsonl|.csv, limit: N}, "
                          f"{{dataset: NAME, split: test, text_field: prompt}} or a list of prompts; got {spec!r}")
    return tuple((item.id, item.prompt) for item in items), source


def _inline_prompt(item, index: int) -> PromptItem:
    if isinstance(item, Mapping):
        return prompt_item(item.get("id", f"p{index}"), item.get("prompt"), f"prompts[{index}]")
    return prompt_item(f"p{index}", item, f"prompts[{index}]")


def _dataset_prompts(spec: Mapping) -> list[PromptItem]:
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
    rows = data.select(range(min(len(data), limit))) if limit is not None else data
    return [prompt_item(r[id_field] if id_field else str(k), r[text_field], f"{name} row {k}")
            for k, r in enumerate(rows)]
