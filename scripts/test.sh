#!/usr/bin/env bash
# The README's test command: set up a virtual environment (if missing) and run lint + the tests.
# Needs: Python 3.11, PostgreSQL on 127.0.0.1:5432 (or TWEETWATCH_TEST_POSTGRES), ../shared/data.
# KAFKA_BOOTSTRAP_SERVERS set: the tests run against that broker instead of the embedded one.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
echo "== ruff"
ruff check stream model_export research benchmarks infra tests scripts
echo "== pytest"
python -m pytest -q -ra "$@"
