"""Wire records (JSON, ``"v": 1``): each record on a topic is defined once, here, as a pydantic
model, and the producer, the agents, the CLI and the tests all use these definitions.

| topic | model |
|---|---|
| tweets | :class:`TweetIn` (what producers publish) |
| tweets.dlq | :class:`DeadLetter` |
| entities.negative | :class:`NegativeMention` |
| alerts | :class:`AlertRecord` (also a row of the ``alerts`` table) |

Anything can arrive on a Kafka topic. Every incoming message is either turned into a record
or rejected with a one-line reason; a rejected tweet goes to the dead-letter topic with its raw
bytes, so nothing is dropped in silence and one bad message never stops the worker. The JSON
is read by the standard library (its error messages, its recursion and integer-size limits
turned into reasons, see :func:`load_json`); the models then check the fields, each rule with
the reason a user reads in the dead letter.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidationInfo,
    model_serializer,
)
from pydantic_core import PydanticCustomError

from stream.predictions import Mention, TweetPrediction

WIRE_VERSION = 1
MAX_ID_CHARS = 128
MAX_FIELD_CHARS = 256
# Timestamps the whole pipeline can do arithmetic on: the alert windows and cooldowns reach
# at most 60 days either side (settings bound them), and PostgreSQL stores years 4713 BC to
# 294276 AD, while Python's datetime stops at years 1 and 9999.
MIN_TIME = datetime(1970, 1, 1, tzinfo=UTC)
MAX_TIME = datetime(2200, 1, 1, tzinfo=UTC)
# A dead letter must always fit in one broker request (Faust's producer allows 1,000,000 bytes):
# beyond this size its payload is cut, and the letter keeps the original's size and SHA-256.
MAX_DEAD_LETTER_BYTES = 512 * 1024
MAX_REASON_CHARS = 1000

Record = TypeVar("Record", bound="WireRecord")


class InvalidTweet(ValueError):
    """An incoming message that cannot be analysed; ``str(exc)`` is the DLQ reason."""


class InvalidNegativeRecord(ValueError):
    """A message on the negative-entity topic that is not a valid record; says why."""


# --- rules shared by the records -----------------------------------------------------------


def _reject(reason: str) -> PydanticCustomError:
    """A validation error whose reason is exactly ``reason`` (no template formatting)."""
    return PydanticCustomError("wire_record", "{reason}", {"reason": reason})


def _check_storable(name: str, value: str) -> None:
    # PostgreSQL text cannot hold NUL, and lone surrogates (legal in JSON "\ud800") cannot be
    # encoded as UTF-8 at all: both would fail the whole micro-batch's transaction later.
    if "\x00" in value:
        raise _reject(f"field '{name}' contains a NUL character")
    if value.isascii():  # most tweets: no surrogate possible, and no copy to make
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _reject(f"field '{name}' contains an unpaired UTF-16 surrogate") from None


def parse_created_at(value: Any) -> datetime | None:
    """ISO-8601 timestamp in UTC, or None; naive times are taken as UTC. Times outside
    ``MIN_TIME``..``MAX_TIME`` are refused: the window arithmetic downstream would overflow."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidTweet(f"field 'created_at' must be an ISO-8601 string, got "
                           f"{type(value).__name__}")
    try:
        if len(value) > 64:
            raise ValueError(value)
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidTweet(f"field 'created_at' is not ISO-8601: {value[:40]!r}") from None
    try:
        utc = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:
        raise InvalidTweet(f"field 'created_at' {value!r} is outside the accepted range "
                           f"{MIN_TIME.year}-{MAX_TIME.year}") from None
    return check_time(utc, "created_at")


def check_time(value: datetime, name: str) -> datetime:
    """``value`` if the pipeline can compute windows around it, else ``InvalidTweet``."""
    if not MIN_TIME <= value < MAX_TIME:
        raise InvalidTweet(f"field '{name}' {value.isoformat()} is outside the accepted range "
                           f"{MIN_TIME.year}-{MAX_TIME.year}")
    return value


def short_repr(value: Any) -> str:
    """A few characters naming a JSON value, for a reason; containers by type only (the
    ``repr`` of a deeply nested list would itself overflow the stack)."""
    if value is None or isinstance(value, bool | int | float | str):
        text = repr(value) if not isinstance(value, int) or value.bit_length() < 64 else "int"
        return text if len(text) <= 40 else text[:39] + "…"
    return type(value).__name__


def load_json(raw: bytes | str) -> Any:
    """``json.loads`` whose every failure is a ``ValueError`` with a readable message: JSON
    nested thousands deep (``RecursionError``) and integers of thousands of digits (Python's
    int limit) are malformed input like any other."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except ValueError as exc:
        raise ValueError(str(exc).splitlines()[0]) from None


def _version(value: Any) -> int:
    if type(value) is not int or value != WIRE_VERSION:
        raise _reject(f"unsupported record version {short_repr(value)} "
                      f"(expected {WIRE_VERSION})")
    return value


def _utc(value: Any) -> Any:
    # SQLite hands back naive datetimes for timezone-aware columns; every time here is UTC.
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


# A time on the wire is written by ``isoformat()`` (``+00:00``, as every record has always had);
# WireTime also reads naive values as UTC.
_ISO_8601 = PlainSerializer(datetime.isoformat, return_type=str, when_used="json")
IsoTime = Annotated[datetime, _ISO_8601]
WireTime = Annotated[IsoTime, BeforeValidator(_utc)]


class WireRecord(BaseModel):
    """What every record shares: the schema version ``v`` and the one JSON encoding.

    ``_omit_if_none`` names optional fields left out of the JSON when they are None (the
    tweet's optional fields, the dead letter's truncation fields); every other field is
    always written, ``null`` included.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")
    _omit_if_none: ClassVar[frozenset[str]] = frozenset()
    _absent: ClassVar[str] = "missing field '{name}'"

    v: Annotated[Literal[1], BeforeValidator(_version)] = WIRE_VERSION

    @model_serializer(mode="wrap")
    def _leave_out_absent(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        for name in self._omit_if_none:
            if name in data and data[name] is None:
                del data[name]
        return data

    @classmethod
    def rejection(cls, exc: ValidationError) -> str:
        """One line saying why a document is not this record: the first failed rule."""
        error = exc.errors(include_url=False)[0]
        context = error.get("ctx") or {}
        if "reason" in context:
            return str(context["reason"])
        name = ".".join(str(part) for part in error["loc"]) or "record"
        if error["type"] == "missing":
            return cls._absent.format(name=name)
        return f"field '{name}': {error['msg']}"

    def to_json(self) -> bytes:
        """Compact UTF-8 JSON, the record as it goes on the wire."""
        return self.model_dump_json().encode("utf-8")


# --- tweets in ------------------------------------------------------------------------------


def _tweet_id(value: Any) -> str:
    if value is None:
        raise _reject("missing field 'id'")
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0 or value.bit_length() > 128:
            raise _reject("field 'id' is a number outside 0..2^128")
        value = str(value)  # Twitter's own JSON carries numeric ids
    if not isinstance(value, str):
        raise _reject(f"field 'id' must be a string, got {type(value).__name__}")
    if not value.strip():
        raise _reject("field 'id' is empty")
    if len(value) > MAX_ID_CHARS:
        raise _reject(f"field 'id' is longer than {MAX_ID_CHARS} characters")
    _check_storable("id", value)
    return value


def _tweet_text(value: Any, info: ValidationInfo) -> str:
    if value is None:
        raise _reject("missing field 'text'")
    if not isinstance(value, str):
        raise _reject(f"field 'text' must be a string, got {type(value).__name__}")
    if not value.strip():
        raise _reject("field 'text' is empty")
    limit = info.context.get("max_text_chars") if info.context else None
    if limit is not None and len(value) > limit:
        raise _reject(f"field 'text' has {len(value)} characters, more than the limit of "
                      f"{limit}")
    _check_storable("text", value)
    return value


def _time(value: Any) -> datetime | None:
    """A record's time: an ISO-8601 string from JSON (:func:`parse_created_at`), or a datetime
    given in Python (naive = UTC); within ``MIN_TIME``..``MAX_TIME`` either way."""
    try:
        if isinstance(value, datetime):
            return check_time(_utc(value).astimezone(UTC), "created_at")
        return parse_created_at(value)
    except InvalidTweet as exc:
        raise _reject(str(exc)) from None


def _optional_text(name: str, limit: int) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise _reject(f"field '{name}' must be a string, got {type(value).__name__}")
        if len(value) > limit:
            raise _reject(f"field '{name}' is longer than {limit} characters")
        _check_storable(name, value)
        return value

    return check


class TweetIn(WireRecord):
    """A tweet on the input topic: what producers publish, and what the worker analyses once
    validated. ``id`` and ``text`` are required; ``created_at`` (ISO-8601, naive = UTC;
    default: the Kafka message's timestamp), ``author`` and ``lang`` are optional."""

    _omit_if_none = frozenset({"created_at", "author", "lang"})

    id: Annotated[str, BeforeValidator(_tweet_id)]
    text: Annotated[str, BeforeValidator(_tweet_text)]
    created_at: Annotated[IsoTime | None, BeforeValidator(_time)] = None
    author: Annotated[str | None, BeforeValidator(_optional_text("author", MAX_FIELD_CHARS))] \
        = None
    lang: Annotated[str | None, BeforeValidator(_optional_text("lang", MAX_FIELD_CHARS))] = None


def max_message_bytes(max_text_chars: int) -> int:
    """The largest tweet message read at all: a text at the limit, fully escaped, plus room
    for the other fields. Larger messages are refused before parsing."""
    return 6 * max_text_chars + 16 * 1024


_CONTEXTS: dict[int, dict[str, int]] = {}  # the validation context of each text limit


def parse_tweet(raw: bytes | None, max_text_chars: int) -> TweetIn:
    """Validate one message value; raise ``InvalidTweet`` with the reason when it is unusable."""
    if raw is None or raw == b"":
        raise InvalidTweet("empty message")
    limit = max_message_bytes(max_text_chars)
    if len(raw) > limit:
        raise InvalidTweet(f"message of {len(raw)} bytes is larger than the limit of {limit}")
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidTweet(f"invalid UTF-8 at byte {exc.start}") from None
    try:
        doc = load_json(decoded)
    except ValueError as exc:
        raise InvalidTweet(f"malformed JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidTweet(f"expected a JSON object, got {type(doc).__name__}")
    context = _CONTEXTS.get(max_text_chars)
    if context is None:
        context = _CONTEXTS.setdefault(max_text_chars, {"max_text_chars": max_text_chars})
    try:
        return TweetIn.model_validate(doc, context=context)
    except ValidationError as exc:
        raise InvalidTweet(TweetIn.rejection(exc)) from None


def tweet_record(tweet_id: str, text: str, created_at: datetime | None = None,
                 author: str | None = None, lang: str | None = None) -> TweetIn:
    """A tweet as a producer publishes it. Not validated here: the worker's validation
    decides, and a bad tweet lands in the dead-letter topic as it would from any producer."""
    return TweetIn.model_construct(id=tweet_id, text=text, created_at=created_at,
                                   author=author, lang=lang)


# --- dead letters -----------------------------------------------------------------------------


class DeadLetter(WireRecord):
    """A rejected message: the raw payload (UTF-8 text, or base64 when it is not UTF-8), the
    reason, and where it came from, so an operator can find and replay it. A payload cut to
    fit one broker request carries ``payload_truncated``, the original's size and SHA-256."""

    _omit_if_none = frozenset({"payload_truncated", "payload_bytes", "payload_sha256"})

    reason: str
    payload: str | None
    payload_encoding: Literal["utf-8", "base64"]
    source_topic: str
    source_partition: int
    source_offset: int
    rejected_at: WireTime
    payload_truncated: bool | None = None
    payload_bytes: int | None = None
    payload_sha256: str | None = None


def dead_letter_record(raw: bytes | None, reason: str, topic: str, partition: int,
                       offset: int, rejected_at: datetime,
                       max_bytes: int = MAX_DEAD_LETTER_BYTES) -> DeadLetter:
    """What goes to the DLQ for message ``raw``.

    A payload too large for one broker request is cut to its first bytes; the letter then
    carries ``payload_truncated``, the original's size and SHA-256, so it still identifies
    the message (a letter that cannot be sent would stop the stream instead)."""
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[: MAX_REASON_CHARS - 1] + "…"
    letter = DeadLetter(reason=reason, **_payload_fields(raw), source_topic=topic,
                        source_partition=partition, source_offset=offset,
                        rejected_at=rejected_at)
    if raw is not None and len(letter.to_json()) > max_bytes:
        # JSON escaping can make a text up to six times longer: an eighth of the limit fits.
        letter = letter.model_copy(update={
            **_payload_fields(raw[: max_bytes // 8], cut=True), "payload_truncated": True,
            "payload_bytes": len(raw), "payload_sha256": hashlib.sha256(raw).hexdigest()})
    return letter


def _payload_fields(raw: bytes | None, cut: bool = False) -> dict[str, Any]:
    if raw is None:
        return {"payload": None, "payload_encoding": "utf-8"}
    try:
        return {"payload": raw.decode("utf-8"), "payload_encoding": "utf-8"}
    except UnicodeDecodeError as exc:
        if cut and exc.start >= len(raw) - 3 and exc.reason == "unexpected end of data":
            # A cut in the middle of a character: keep the complete ones.
            return {"payload": raw[: exc.start].decode("utf-8"), "payload_encoding": "utf-8"}
        return {"payload": base64.b64encode(raw).decode("ascii"), "payload_encoding": "base64"}


# --- negative entity mentions ---------------------------------------------------------------


def _required_text(name: str, limit: int) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise _reject(f"field {name!r} missing or not a non-empty string")
        if len(value) > limit:
            raise _reject(f"field {name!r} is longer than {limit} characters")
        return value

    return check


def _lenient_text(name: str, limit: int, when_null: str | None) -> Callable[[Any], str | None]:
    """An optional string field: ``null`` reads as ``when_null``."""

    def check(value: Any) -> str | None:
        if value is None:
            return when_null
        if not isinstance(value, str):
            raise _reject(f"field {name!r} is not a string")
        if len(value) > limit:
            raise _reject(f"field {name!r} is longer than {limit} characters")
        return value

    return check


_type_text = _lenient_text("type", 32, "")
_watch_text = _lenient_text("watch", 2000, None)
_created_text = _required_text("created_at", 64)


def _entity_type(value: Any) -> str:
    if not isinstance(value, str):
        raise _reject("field 'type' missing or not a string")
    return _type_text(value) or ""


def _watch(value: Any) -> str | None:
    return _watch_text(value) or None  # "" is no watched entity


def _score(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            0.0 <= value <= 1.0):
        raise _reject("field 'score' is not a number between 0 and 1")
    return float(value)


def _mention_time(value: Any) -> datetime | None:
    return _time(value if isinstance(value, datetime) else _created_text(value))


class NegativeMention(WireRecord):
    """One entity mention whose most likely sentiment is negative (the analyze agent's output,
    the alert agent's input), keyed by ``entity_key`` on its topic. ``watch`` is the watched
    entity's name (None: found by the model only); ``type_source`` says where ``type`` came
    from (``"watchlist"``, ``"model"``, or ``""`` when neither gave one)."""

    _absent = "field '{name}' missing"

    tweet_id: Annotated[str, BeforeValidator(_required_text("tweet_id", MAX_ID_CHARS))]
    entity: Annotated[str, BeforeValidator(_required_text("entity", 2000))]
    entity_key: Annotated[str, BeforeValidator(_required_text("entity_key", 2000))]
    type: Annotated[str, BeforeValidator(_entity_type)]
    type_source: Annotated[str, BeforeValidator(_lenient_text("type_source", 16, ""))] = "model"
    watch: Annotated[str | None, BeforeValidator(_watch)] = None
    sentiment: str = "negative"
    score: Annotated[float, BeforeValidator(_score)] = 1.0
    tweet_sentiment: str | None = None
    text: Annotated[str, BeforeValidator(_required_text("text", 20_000))]
    created_at: Annotated[IsoTime, BeforeValidator(_mention_time)]


def is_negative(mention: Mention, threshold: float) -> bool:
    """Negative = negative is the most likely class and its probability reaches the threshold."""
    return mention.sentiment == "negative" and mention.probs[0] >= threshold


def negative_entity_record(tweet: TweetIn, prediction: TweetPrediction, mention: Mention,
                           created_at: datetime) -> NegativeMention:
    """One negative entity mention for the alert worker. Not validated here: the alert agent
    validates what it reads (an over-long model span goes to its dead-letter topic there)."""
    return NegativeMention.model_construct(
        tweet_id=tweet.id,
        entity=mention.entity,
        entity_key=mention.entity_key,
        type=mention.type,
        type_source=mention.type_source,
        watch=mention.watch,
        sentiment="negative",
        score=round(mention.probs[0], 6),
        tweet_sentiment=prediction.sentiment,
        text=tweet.text,
        created_at=created_at,
    )


def parse_negative_record(raw: bytes | None) -> NegativeMention:
    """Validate one negative-entity message; raises :class:`InvalidNegativeRecord`."""
    if not raw:
        raise InvalidNegativeRecord("empty message")
    try:
        return parse_record(NegativeMention, raw)
    except ValueError as exc:
        raise InvalidNegativeRecord(str(exc)) from None


# --- alerts -----------------------------------------------------------------------------------


class AlertRecord(WireRecord):
    """An alert: on the alerts topic (keyed by entity key) and, field for field, a row of the
    ``alerts`` table. ``alert_id`` is deterministic (entity key + window), so a subscriber
    dedupes on it; ``reason`` holds the spike rule and its figures (``stream.spikes``)."""

    alert_id: str
    entity: str
    entity_key: str
    type: str
    window_start: WireTime
    window_end: WireTime
    negative_mentions: int
    mentions: int
    tweet_ids: tuple[str, ...]
    text: str
    generator: str
    model: str | None = None
    created_at: WireTime
    watch: str | None = None
    reason: dict[str, Any] | None = None
    examples: tuple[str, ...] | None = None

    def row(self) -> dict[str, Any]:
        """The ``alerts`` table row (the same fields, less ``v``)."""
        row = self.model_dump(exclude={"v"})
        row["tweet_ids"] = list(self.tweet_ids)
        row["examples"] = None if self.examples is None else list(self.examples)
        return row

    @classmethod
    def from_row(cls, row: Any) -> AlertRecord:
        """The record of a stored alert row (a SQLAlchemy row or a mapping)."""
        return cls.model_validate(dict(getattr(row, "_mapping", row)))


def parse_record(model: type[Record], raw: bytes | str) -> Record:
    """Any record from its JSON; ``ValueError`` with a one-line reason when it is not one."""
    try:
        doc = load_json(raw)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"expected a JSON object, got {type(doc).__name__}")
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        raise ValueError(model.rejection(exc)) from None


def encode(record: WireRecord | Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON, the one encoding of every record on the wire (a plain mapping is
    encoded the same way: tests and tools send hand-made documents)."""
    if isinstance(record, WireRecord):
        return record.to_json()
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
