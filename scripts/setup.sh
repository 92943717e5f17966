#!/usr/bin/env bash
# Create .venv and install tweetwatch with the training, benchmark and dev extras.
# torch is pinned to 2.13.0 (the CPU build); never let pip choose another torch.
set -euo pipefail
cd "$(dirname "$0")/.."
# System packages the tests drive: Debian's chromium (the dashboard's browser test; Playwright
# never downloads a browser of its own) and docker-compose (validates docker-compose.yml).
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
  else
    echo "setup: missing ${missing[*]} (apt-get install ${missing[*]}, as root); the tests" \
         "that need them will fail" >&2
  fi
fi
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
