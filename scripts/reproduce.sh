#!/usr/bin/env bash
# Regenerate docs/reproduction/ from examples/repro/*.yaml (resumable: rerun after an interruption).
# Options: see `.venv/bin/python scripts/reproduce.py --help` (e.g. --smoke, --only jsd, --skip-h1).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python scripts/reproduce.py "$@"
