"""One typed settings object for the whole runtime.

Every knob is an environment variable (prefix ``TWEETWATCH_``) with a documented default; the
README's configuration table is generated from the field descriptions below
(``tweetwatch config``). No other module reads ``os.environ``: settings are read once and
passed down, so tests can build their own ``Settings(...)`` without touching the process
environment.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Literal

import sqlalchemy as sa
from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.exc import ArgumentError

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL_DIR = PACKAGE_DIR / "artifacts" / "model"
DEFAULT_DATA_DIR = PACKAGE_DIR.parent.parent / "shared" / "data"
ENV_PREFIX = "TWEETWATCH_"
NOT_SETTINGS = frozenset({"TWEETWATCH_TEST_POSTGRES"})  # read by the test suite, not the product
_MAX_WINDOW_S = 30 * 24 * 3600  # windows and cooldowns: at most 30 days (see records.MIN_TIME)
# Database URL schemes people write, and the drivers tweetwatch runs them with.
_DRIVER_FOR_SCHEME = {
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
    "postgresql+psycopg_async": "postgresql+psycopg",
    "sqlite": "sqlite+aiosqlite",
    "sqlite+pysqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
}


class Settings(BaseSettings):
    """Runtime configuration; see the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    # --- Kafka -----------------------------------------------------------------------------
    kafka_bootstrap_servers: str = Field(
        "localhost:9092",
        validation_alias=AliasChoices(
            "TWEETWATCH_KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"
        ),
        description="Kafka bootstrap servers (host:port[,host:port]). "
        "KAFKA_BOOTSTRAP_SERVERS is accepted too.",
    )
    app_id: str = Field("tweetwatch", description="Faust app id (consumer group name).")
    topic_tweets: str = Field("tweets", description="Input topic of tweets (JSON).")
    topic_dlq: str = Field("tweets.dlq", description="Dead-letter topic: raw payload + reason.")
    topic_negative: str = Field(
        "entities.negative", description="Negative entity mentions, keyed by entity key."
    )
    topic_alerts: str = Field("alerts", description="Alerts written by the alert worker.")
    topic_partitions: int = Field(4, ge=1, description="Partitions when creating topics.")
    topic_replication: int = Field(1, ge=1, description="Replication factor when creating topics.")
    kafka_fetch_max_wait_ms: int = Field(
        100,
        ge=1,
        description="Longest time the broker may hold an empty fetch: it bounds latency on the "
        "embedded broker (Faust's own 1500 ms gave p50 1.2 s at 300 tweets/s).",
    )
    kafka_session_timeout_s: float = Field(
        10.0,
        ge=1.0,
        description="Consumer-group session timeout: how long a dead worker keeps its "
        "partitions before the group hands them to the others.",
    )

    # --- Storage ---------------------------------------------------------------------------
    database_url: str = Field(
        "postgresql+psycopg://postgres@localhost:5432/tweetwatch",
        validation_alias=AliasChoices("TWEETWATCH_DATABASE_URL", "DATABASE_URL"),
        description="Database URL: postgresql://user:pass@host/db (also postgres:// or "
        "postgresql+psycopg://) or sqlite:///file.db. DATABASE_URL is accepted too.",
    )

    # --- Model and micro-batching ----------------------------------------------------------
    model_dir: Path = Field(DEFAULT_MODEL_DIR, description="Folder of the ONNX model artifact.")
    model_variant: Literal["fp32", "int8"] = Field(
        "fp32", description="Which ONNX file to run: fp32 (model.onnx) or int8 (model.int8.onnx)."
    )
    max_batch: int = Field(
        128,
        ge=1,
        description="Micro-batch size: tweets per model call (128: +32% sustained throughput "
        "over 64 in `tweetwatch bench pipeline`, no gain at 256).",
    )
    max_latency_ms: int = Field(
        50, ge=1, description="Longest wait to fill a micro-batch before running it anyway."
    )
    inference_threads: int = Field(
        1, ge=1, description="Thread-pool workers running the model off the event loop."
    )
    intra_op_threads: int = Field(1, ge=1, description="onnxruntime intra-op threads per session.")
    max_text_chars: int = Field(
        2000, ge=1, description="Longest accepted tweet text; longer goes to the dead-letter topic."
    )
    negative_threshold: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="An entity mention is negative when its negative probability is at least "
        "this and is its most likely class.",
    )
    data_dir: Path = Field(DEFAULT_DATA_DIR, description="Training/test data folder.")
    batch_trace_path: Path | None = Field(
        None,
        description="Append one JSON line per committed micro-batch (size, stage timings) to "
        "this file, as `tweetwatch bench pipeline` does. Unset: no trace.",
    )

    # --- Alerts ----------------------------------------------------------------------------
    alert_window_s: int = Field(
        300, ge=1, le=_MAX_WINDOW_S, description="Alert window per entity, seconds."
    )
    alert_min_negative: int = Field(
        3, ge=1, description="Negative tweets in a window needed to fire (watched entities)."
    )
    alert_min_negative_share: float = Field(
        0.5, ge=0.0, le=1.0, description="Least negative share of an entity's mentions to fire."
    )
    alert_cooldown_s: int = Field(
        900, ge=0, le=_MAX_WINDOW_S, description="Quiet time per entity after an alert fired."
    )
    alert_scope: Literal["watched", "all"] = Field(
        "watched", description="watched: watchlist entities alert; all: also discovered ones.",
    )
    alert_baseline_windows: int = Field(
        12, ge=1, description="Windows before the current one that form the baseline.")
    alert_sensitivity: float = Field(
        3.0, gt=0, description="Spike: negative tweets > baseline mean + this x "
        "max(std, sqrt(mean), 1).",
    )
    alert_share_jump: float = Field(
        0.3, gt=0, le=1.0, description="Or: negative share above the baseline's by this "
        "(and the count 2 binomial SDs above what that share predicts)."
    )
    alert_discovered_min_negative: int = Field(
        10, ge=1, description="alert_min_negative, discovered entities.")
    alert_discovered_sensitivity: float = Field(
        5.0, gt=0, description="alert_sensitivity, discovered entities.")
    watchlist_poll_s: float = Field(
        2.0, gt=0, description="Seconds between a worker's checks for watchlist changes.")
    llm_base_url: str | None = Field(
        None,
        description="OpenAI-compatible API base URL (e.g. http://ollama:11434/v1). "
        "Unset: alerts use the template text.",
    )
    llm_model: str = Field("llama3.2:3b", description="Model name sent to the LLM endpoint.")
    llm_api_key: str | None = Field(None, description="Bearer token for the LLM endpoint.")
    llm_timeout_s: float = Field(10.0, gt=0, description="Timeout of one LLM request.")
    llm_max_concurrency: int = Field(4, ge=1, description="Concurrent LLM requests at most.")
    llm_retries: int = Field(2, ge=0, description="Retries after a failed LLM request.")
    llm_backoff_s: float = Field(0.5, ge=0, description="Base of the exponential retry backoff.")
    llm_breaker_failures: int = Field(
        5, ge=1, description="Consecutive failures that open the circuit breaker."
    )
    llm_breaker_reset_s: float = Field(
        30.0, gt=0, description="Seconds the breaker stays open before a trial request."
    )
    llm_two_stage: bool = Field(
        False, description="Two-stage prompting: candidate alerts, then a selection prompt."
    )

    # --- Dashboard, HTTP API, metrics, alert delivery -----------------------------------------
    api_token: str | None = Field(
        None, description="Bearer token that `tweetwatch serve` requires for changing the "
        "watchlist (POST/DELETE /api/watchlist). Unset: the watchlist is read-only over HTTP."
    )
    web_poll_s: float = Field(
        2.0, gt=0, le=60, description="How often the live alert feed "
        "(`GET /api/alerts/stream`) looks for new rows in the alerts table, seconds."
    )
    dashboard_url: str = Field(
        "http://127.0.0.1:8080/", description="Public URL of `tweetwatch serve`, used in the "
        "links of delivered alerts."
    )
    metrics_port: int = Field(
        9108, ge=0, le=65535, description="Port of the worker's Prometheus endpoint "
        "(/metrics); 0 = off. A port already taken (a second worker on the host) logs a "
        "warning and the worker runs without it."
    )
    metrics_host: str = Field(
        "127.0.0.1", description="Address the metrics endpoint listens on (0.0.0.0 in a "
        "container)."
    )
    alert_webhook_url: str | None = Field(
        None, description="Post every alert to this URL as Slack-compatible JSON (a Slack "
        "incoming webhook, or any receiver). Unset: no delivery."
    )
    alert_webhook_queue: int = Field(
        1000, ge=1, description="Alerts waiting for webhook delivery at most; beyond, new "
        "ones are not delivered (they stay on the topic and in the table)."
    )
    alert_webhook_retries: int = Field(
        3, ge=0, description="Retries of a failed webhook delivery (exponential backoff)."
    )
    alert_webhook_timeout_s: float = Field(
        5.0, gt=0, description="Timeout of one webhook request, seconds."
    )

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _strip_kafka_scheme(cls, value: str) -> str:
        # Faust wants kafka://host:port, aiokafka wants host:port; we store the bare form.
        return ",".join(part.removeprefix("kafka://").strip() for part in value.split(","))

    @field_validator("database_url")
    @classmethod
    def _database_driver(cls, value: str) -> str:
        return database_url(value)

    @property
    def model_path(self) -> Path:
        name = "model.int8.onnx" if self.model_variant == "int8" else "model.onnx"
        return self.model_dir / name


def database_url(value: str) -> str:
    """``value`` with the driver tweetwatch uses (psycopg 3 async, aiosqlite); plain
    ``postgres://``, ``postgresql://`` and ``sqlite:///`` URLs are accepted, as most tools do."""
    try:
        url = sa.make_url(value)
    except ArgumentError:
        raise ValueError("not a database URL (expected postgresql://user:pass@host:5432/db "
                         "or sqlite:///path/file.db)") from None
    driver = _DRIVER_FOR_SCHEME.get(url.drivername)
    if driver is None:
        raise ValueError(f"unsupported database {url.drivername!r} (use postgresql:// or "
                         "sqlite:///)")
    return url.set(drivername=driver).render_as_string(hide_password=False)


def safe_url(url: str) -> str:
    """A URL with its password hidden, for messages and ``tweetwatch config``."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """One warning per ``TWEETWATCH_*`` variable that names no setting (a typo such as
    ``TWEETWATCH_ALERT_WINDOWS_S`` would otherwise be ignored in silence)."""
    environ = os.environ if environ is None else environ
    known = sorted(name.upper() for name in Settings.model_fields)
    warnings = []
    for name in sorted(environ):
        suffix = name.removeprefix(ENV_PREFIX)
        if suffix == name or suffix in known or name in NOT_SETTINGS:
            continue
        close = difflib.get_close_matches(suffix, known, n=1, cutoff=0.75)
        hint = f"; did you mean {ENV_PREFIX}{close[0]}?" if close else ""
        warnings.append(f"unknown setting {name} is ignored{hint}")
    return warnings


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()
