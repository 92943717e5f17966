"""An embedded Kafka-protocol broker: librdkafka's mock cluster, driven through ctypes.

The demo and the tests need a real Kafka wire protocol without Docker or a JVM. librdkafka
ships a mock cluster (produce, fetch, consumer groups, offsets) that listens on 127.0.0.1; we
load the copy inside the confluent-kafka wheel (or the system's ``librdkafka.so.1``) and call
its C API directly. It keeps data in memory only and does not implement CreateTopics, so the
topics are created here through the mock API before any client connects.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

_RD_KAFKA_PRODUCER = 0
_ERRSTR_SIZE = 512


class BrokerError(RuntimeError):
    """The embedded broker could not be loaded, started or configured."""


def find_librdkafka() -> Path:
    """Locate a librdkafka that exports the mock-cluster API.

    The confluent-kafka wheel's private copy comes first (it is always recent enough); then the
    system library (Debian's ``librdkafka1``, Homebrew's ``librdkafka``).
    """
    candidates: list[str] = []
    for entry in sys.path:
        for folder in ("confluent_kafka.libs", os.path.join("confluent_kafka", ".dylibs")):
            candidates += sorted(glob.glob(os.path.join(entry, folder, "librdkafka*")))
    system = ctypes.util.find_library("rdkafka")
    if system:
        candidates.append(system)
    candidates += ["librdkafka.so.1", "/opt/homebrew/lib/librdkafka.dylib",
                   "/usr/local/lib/librdkafka.dylib"]
    for candidate in candidates:
        try:
            lib = ctypes.CDLL(candidate)
        except OSError:
            continue
        if hasattr(lib, "rd_kafka_mock_cluster_new"):
            return Path(candidate)
    raise BrokerError(
        "librdkafka with the mock-cluster API not found: install confluent-kafka "
        "(pip install confluent-kafka) or the system package librdkafka1"
    )


def _load(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    lib.rd_kafka_conf_new.restype = ctypes.c_void_p
    lib.rd_kafka_conf_new.argtypes = []
    lib.rd_kafka_conf_set.restype = ctypes.c_int
    lib.rd_kafka_conf_set.argtypes = [
        ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t
    ]
    lib.rd_kafka_conf_destroy.restype = None
    lib.rd_kafka_conf_destroy.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_new.restype = ctypes.c_void_p
    lib.rd_kafka_new.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.rd_kafka_destroy.restype = None
    lib.rd_kafka_destroy.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_mock_cluster_new.restype = ctypes.c_void_p
    lib.rd_kafka_mock_cluster_new.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.rd_kafka_mock_cluster_bootstraps.restype = ctypes.c_char_p
    lib.rd_kafka_mock_cluster_bootstraps.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_mock_topic_create.restype = ctypes.c_int
    lib.rd_kafka_mock_topic_create.argtypes = [
        ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int
    ]
    lib.rd_kafka_mock_cluster_destroy.restype = None
    lib.rd_kafka_mock_cluster_destroy.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_mock_group_initial_rebalance_delay_ms.restype = None
    lib.rd_kafka_mock_group_initial_rebalance_delay_ms.argtypes = [ctypes.c_void_p, ctypes.c_int32]
    lib.rd_kafka_err2str.restype = ctypes.c_char_p
    lib.rd_kafka_err2str.argtypes = [ctypes.c_int]
    return lib


class EmbeddedBroker:
    """A running mock Kafka cluster on 127.0.0.1; use as a context manager or start()/stop().

    ``rebalance_delay_ms`` shortens the group coordinator's initial rebalance delay (3 s by
    default in the mock) so a worker joins its group quickly in tests and the demo.
    """

    def __init__(self, brokers: int = 1, rebalance_delay_ms: int = 100,
                 library: Path | None = None) -> None:
        self.brokers = brokers
        self.rebalance_delay_ms = rebalance_delay_ms
        self._library = library
        self._lib: ctypes.CDLL | None = None
        self._rk: int | None = None
        self._cluster: int | None = None
        self.bootstrap_servers = ""

    @property
    def running(self) -> bool:
        return self._cluster is not None

    def start(self) -> EmbeddedBroker:
        """Start the cluster; a producer handle owns it (librdkafka's design)."""
        if self.running:
            return self
        lib = self._lib = _load(self._library or find_librdkafka())
        errstr = ctypes.create_string_buffer(_ERRSTR_SIZE)
        conf = lib.rd_kafka_conf_new()
        # The owning handle never produces; keep its logging quiet.
        for key, value in ((b"log_level", b"3"),):
            if lib.rd_kafka_conf_set(conf, key, value, errstr, _ERRSTR_SIZE) != 0:
                lib.rd_kafka_conf_destroy(conf)
                raise BrokerError(f"librdkafka config {key.decode()}: {errstr.value.decode()}")
        rk = lib.rd_kafka_new(_RD_KAFKA_PRODUCER, conf, errstr, _ERRSTR_SIZE)
        if not rk:
            raise BrokerError(f"rd_kafka_new failed: {errstr.value.decode()}")
        cluster = lib.rd_kafka_mock_cluster_new(rk, self.brokers)
        if not cluster:
            lib.rd_kafka_destroy(rk)
            raise BrokerError("rd_kafka_mock_cluster_new failed")
        self._rk, self._cluster = rk, cluster
        lib.rd_kafka_mock_group_initial_rebalance_delay_ms(cluster, self.rebalance_delay_ms)
        self.bootstrap_servers = lib.rd_kafka_mock_cluster_bootstraps(cluster).decode()
        return self

    def create_topic(self, name: str, partitions: int = 1, replication: int = 1) -> None:
        """Create a topic (the mock has no CreateTopics request; clients cannot do it)."""
        if self._lib is None or self._cluster is None:
            raise BrokerError("broker is not running")
        err = self._lib.rd_kafka_mock_topic_create(
            self._cluster, name.encode(), partitions, min(replication, self.brokers)
        )
        if err != 0:
            reason = self._lib.rd_kafka_err2str(err).decode()
            raise BrokerError(f"cannot create topic {name!r}: {reason}")

    def create_topics(self, names: Iterable[str], partitions: int = 1,
                      replication: int = 1) -> None:
        """Create several topics with the same layout."""
        for name in names:
            self.create_topic(name, partitions, replication)

    def stop(self) -> None:
        """Destroy the cluster and its owning handle; all data is gone."""
        if self._lib is not None and self._cluster is not None:
            self._lib.rd_kafka_mock_cluster_destroy(self._cluster)
            if self._rk:
                self._lib.rd_kafka_destroy(self._rk)
        self._cluster = self._rk = None
        self.bootstrap_servers = ""

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
