#!/usr/bin/env bash
# The README's demo command: install the runtime (no torch) into .venv and run `tweetwatch demo`.
# Nothing has to be running: the demo starts an embedded Kafka-protocol broker, a SQLite store
# and a worker, replays real tweets from ../shared/data and prints what it found.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q -e .
exec tweetwatch demo "$@"
