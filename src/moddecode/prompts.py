"""Prompt files: the one reader behind the CLI's --prompts-file, preference sampling and sweeps.

Formats, by suffix: .jsonl / .json / .ndjson (one object per line), .csv (a header row, then one
prompt per row), anything else - and '-', standard input - one prompt per non-blank line.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from .checks import positive_int
from .errors import ConfigError
from .jsonl import read_jsonl

JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")


@dataclass(frozen=True)
class PromptItem:
    id: str
    prompt: str


def read_prompt_file(path: str | Path, *, id_field: str = "id", text_field: str = "prompt",
                     plain_text: bool = True, index_ids: bool = False, limit: int | None = None) -> list[PromptItem]:
    """The prompts of a file (see the module docstring), at most `limit`, with unique, non-empty ids.

    A record without `id_field` is numbered by its line (row) number; `index_ids=True` numbers it
    0, 1, 2, ... in file order instead (the sweeps' ids, which their config hash covers).
    `plain_text=False` rejects files that are neither JSON Lines nor CSV.
    """
    if limit is not None:
        positive_int(limit, "the prompt limit")
    stdin = str(path) == "-"
    path = Path(path).expanduser()
    suffix = "" if stdin else path.suffix.lower()
    if not stdin and not path.is_file():
        raise ConfigError(f"prompts file not found: {path}")
    if suffix in JSONL_SUFFIXES:
        records = _fields(read_jsonl(path, f'{{"{id_field}": ..., "{text_field}": ...}}'), path, id_field, text_field)
    elif suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            records = list(_fields(enumerate(csv.DictReader(f), start=2), path, id_field, text_field))
    elif plain_text:
        text = sys.stdin.read() if stdin else path.read_text(encoding="utf-8")
        records = ((n, _ABSENT, line.strip()) for n, line in enumerate(text.splitlines(), start=1) if line.strip())
    else:
        raise ConfigError(f"prompts file {path.name} must end in .jsonl or .csv")
    source = "standard input" if stdin else str(path)
    items = []
    for k, (number, pid, text) in enumerate(records):
        if pid is _ABSENT:
            pid = k if index_ids else number
        items.append(prompt_item(pid, text, f"{source}:{number}"))
    return check_prompts(items[:limit] if limit is not None else items, source)


def check_prompts(items: list[PromptItem], source: str) -> list[PromptItem]:
    """`items` if there is at least one and no id repeats (ids key stored rows and pairs)."""
    if not items:
        raise ConfigError(f"no prompts found in {source}")
    ids = [item.id for item in items]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ConfigError(f"prompt ids must be unique; repeated in {source}: {repeated[:5]}")
    return items


def prompt_item(pid, text, where: str) -> PromptItem:
    """One prompt after the checks every source shares: non-empty text, non-empty id."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{where}: the prompt text must be a non-empty string, got {text!r}")
    if pid is None or str(pid) == "":
        raise ConfigError(f"{where}: the prompt id is empty")
    return PromptItem(str(pid), text)


_ABSENT = object()  # a record without an id field (an id field holding null is an error)


def _fields(rows: Iterable[tuple[int, Mapping]], path: Path, id_field: str,
            text_field: str) -> Iterator[tuple[int, object, object]]:
    """(line number, id or _ABSENT, text) per record."""
    for number, row in rows:
        if text_field not in row:
            raise ConfigError(f"{path}:{number}: no {text_field!r} field (it has {sorted(row)}); each record needs "
                              f"the prompt text under {text_field!r}")
        yield number, row.get(id_field, _ABSENT), row[text_field]
