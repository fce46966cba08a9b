"""Summarise sweep runs as markdown (the tables docs/reproduction/README.md shows; scripts/reproduce.py writes
the whole page).

    .venv/bin/python scripts/repro_summary.py docs/reproduction/three-objectives docs/reproduction/jsd ...
"""

from __future__ import annotations

import sys
from pathlib import Path

from moddecode.eval.report import summarize
from moddecode.eval.report.markdown import run_markdown

if __name__ == "__main__":
    print("\n".join(run_markdown(summarize(r), Path(r).name, r) for r in sys.argv[1:]))
