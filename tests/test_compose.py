"""docker-compose.yml is valid for docker-compose (Debian's, installed by scripts/setup.sh)
and publishes the dashboard and the worker's metrics on the host's loopback only."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _compose(*args: str) -> str:
    assert shutil.which("docker-compose"), ("docker-compose is missing: apt-get install "
                                            "docker-compose (scripts/setup.sh does it as root)")
    done = subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yml"), *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_compose_file_is_valid_with_serve_and_metrics() -> None:
    _compose("config", "-q")
    assert "serve" in _compose("config", "--services").split()
    resolved = _compose("config")
    assert "127.0.0.1:8080:8080/tcp" in resolved
    assert "127.0.0.1:9108-9111:9108/tcp" in resolved
    assert "TWEETWATCH_METRICS_HOST: 0.0.0.0" in resolved
