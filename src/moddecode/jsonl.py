"""JSON Lines input: one object per line, errors that name the file and line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from .errors import ConfigError


def read_jsonl(path: Path, example: str = '{"prompt": "..."}') -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line; ConfigError for a line that is not a JSON object."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{number}: not valid JSON ({exc.msg}); write one object per line") from None
        if not isinstance(record, dict):
            raise ConfigError(f"{path}:{number}: each line must be an object like {example}")
        yield number, record
