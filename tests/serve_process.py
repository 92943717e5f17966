"""Run ``tweetwatch serve`` as a child process on a free loopback port (what a user runs)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServeProcess:
    """``tweetwatch serve`` over ``database_url``, started and ready on ``with``."""

    def __init__(self, database_url: str, log_path: Path, poll_s: float = 0.5) -> None:
        self.database_url = database_url
        self.log_path = log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.poll_s = poll_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.returncode: int | None = None
        self.stop_s: float | None = None  # how long SIGTERM took to end the process

    def __enter__(self) -> ServeProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TWEETWATCH_")}
        env.update({"TWEETWATCH_DATABASE_URL": self.database_url,
                    "TWEETWATCH_WEB_POLL_S": str(self.poll_s), "PYTHONUNBUFFERED": "1"})
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in __exit__
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "stream.cli", "serve", "--port", str(self.port)],
            stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 60
        while True:
            assert self._proc.poll() is None, self.log()
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError):
                pass
            assert time.monotonic() < deadline, f"serve did not get ready:\n{self.log()}"
            time.sleep(0.2)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None and self._proc.poll() is None:
            began = time.monotonic()
            self._proc.terminate()
            try:
                self._proc.wait(15)
                self.stop_s = time.monotonic() - began
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc is not None:
            self.returncode = self._proc.returncode
        if self._log is not None:
            self._log.close()
