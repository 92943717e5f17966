"""Run ``tweetwatch worker`` as a child process with given settings.

The demo, the tests and the benchmarks start real worker processes (the same command an
operator runs), passing the settings through the environment exactly as a deployment would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from stream.settings import Settings


def settings_env(settings: Settings) -> dict[str, str]:
    """The ``TWEETWATCH_*`` variables that reproduce ``settings`` in another process."""
    env: dict[str, str] = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        env[f"TWEETWATCH_{name.upper()}"] = str(value)
    return env


class WorkerProcess:
    """A ``tweetwatch worker`` child process writing its log to ``log_path``."""

    def __init__(self, settings: Settings, log_path: Path, agents: Sequence[str] = (),
                 loglevel: str = "info") -> None:
        self.settings = settings
        self.log_path = Path(log_path)
        self.agents = list(agents)
        self.loglevel = loglevel
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> WorkerProcess:
        """Spawn the worker in its own session (so signals reach only it)."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("TWEETWATCH_") and k not in ("KAFKA_BOOTSTRAP_SERVERS",
                                                                 "DATABASE_URL")}
        env.update(settings_env(self.settings))
        env["PYTHONUNBUFFERED"] = "1"
        command = [sys.executable, "-m", "stream.cli", "worker", "--loglevel", self.loglevel]
        for agent in self.agents:
            command += ["--agent", agent]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self._proc = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT,
                                      env=env, start_new_session=True)
        return self

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def log_tail(self, lines: int = 20) -> str:
        """The end of the worker's log, for error messages."""
        if not self.log_path.is_file():
            return ""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 20.0) -> int | None:
        """Graceful stop (SIGTERM, as a container runtime sends), SIGKILL after ``timeout``."""
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        return self._close()

    def kill(self) -> int | None:
        """Abrupt death (SIGKILL): nothing is flushed or committed on the way out."""
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        return self._close()

    def _close(self) -> int | None:
        code = self._proc.returncode if self._proc else None
        if self._log is not None:
            self._log.close()
            self._log = None
        return code
