#!/usr/bin/env bash
# Create .venv and install tweetwatch with the training, benchmark and dev extras.
# torch is pinned to 2.13.0 (the CPU build); never let pip choose another torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[train,bench,dev]"
python -c "import torch, onnxruntime, faust; print('torch', torch.__version__, '| onnxruntime', onnxruntime.__version__, '| faust', faust.__version__)"
