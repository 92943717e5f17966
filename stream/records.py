"""Wire records (JSON, ``"v": 1``) and the validation of incoming tweets.

Anything can arrive on a Kafka topic. Every incoming message is either turned into a
``TweetIn`` or rejected with a one-line reason; the reject goes to the dead-letter topic with
its raw bytes, so nothing is dropped in silence and one bad message never stops the worker.
The outgoing records (negative entity mention, dead letter) are built here too, so the schema
documented in the README lives in one place.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

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


class InvalidTweet(ValueError):
    """An incoming message that cannot be analysed; ``str(exc)`` is the DLQ reason."""


@dataclass(frozen=True, slots=True)
class TweetIn:
    """A validated incoming tweet."""

    id: str
    text: str
    created_at: datetime | None = None
    author: str | None = None
    lang: str | None = None


def _optional_str(doc: dict[str, Any], name: str) -> str | None:
    value = doc.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidTweet(f"field '{name}' must be a string, got {type(value).__name__}")
    if len(value) > MAX_FIELD_CHARS:
        raise InvalidTweet(f"field '{name}' is longer than {MAX_FIELD_CHARS} characters")
    _check_storable(name, value)
    return value


def _check_storable(name: str, value: str) -> None:
    # PostgreSQL text cannot hold NUL, and lone surrogates (legal in JSON "\ud800") cannot be
    # encoded as UTF-8 at all: both would fail the whole micro-batch's transaction later.
    if "\x00" in value:
        raise InvalidTweet(f"field '{name}' contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidTweet(f"field '{name}' contains an unpaired UTF-16 surrogate") from None


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


def max_message_bytes(max_text_chars: int) -> int:
    """The largest tweet message read at all: a text at the limit, fully escaped, plus room
    for the other fields. Larger messages are refused before parsing."""
    return 6 * max_text_chars + 16 * 1024


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
    version = doc.get("v", WIRE_VERSION)
    if type(version) is not int or version != WIRE_VERSION:
        raise InvalidTweet(f"unsupported record version {short_repr(version)} "
                           f"(expected {WIRE_VERSION})")

    tweet_id = doc.get("id")
    if tweet_id is None:
        raise InvalidTweet("missing field 'id'")
    if isinstance(tweet_id, int) and not isinstance(tweet_id, bool):
        if tweet_id < 0 or tweet_id.bit_length() > 128:
            raise InvalidTweet("field 'id' is a number outside 0..2^128")
        tweet_id = str(tweet_id)  # Twitter's own JSON carries numeric ids
    if not isinstance(tweet_id, str):
        raise InvalidTweet(f"field 'id' must be a string, got {type(tweet_id).__name__}")
    if not tweet_id.strip():
        raise InvalidTweet("field 'id' is empty")
    if len(tweet_id) > MAX_ID_CHARS:
        raise InvalidTweet(f"field 'id' is longer than {MAX_ID_CHARS} characters")
    _check_storable("id", tweet_id)

    text = doc.get("text")
    if text is None:
        raise InvalidTweet("missing field 'text'")
    if not isinstance(text, str):
        raise InvalidTweet(f"field 'text' must be a string, got {type(text).__name__}")
    if not text.strip():
        raise InvalidTweet("field 'text' is empty")
    if len(text) > max_text_chars:
        raise InvalidTweet(f"field 'text' has {len(text)} characters, more than the limit of "
                           f"{max_text_chars}")
    _check_storable("text", text)

    return TweetIn(
        id=tweet_id,
        text=text,
        created_at=parse_created_at(doc.get("created_at")),
        author=_optional_str(doc, "author"),
        lang=_optional_str(doc, "lang"),
    )


def tweet_record(tweet_id: str, text: str, created_at: datetime | None = None,
                 author: str | None = None, lang: str | None = None) -> dict[str, Any]:
    """The input record as producers should publish it."""
    record: dict[str, Any] = {"v": WIRE_VERSION, "id": tweet_id, "text": text}
    if created_at is not None:
        record["created_at"] = created_at.isoformat()
    if author is not None:
        record["author"] = author
    if lang is not None:
        record["lang"] = lang
    return record


def dead_letter_record(raw: bytes | None, reason: str, topic: str, partition: int,
                       offset: int, rejected_at: datetime,
                       max_bytes: int = MAX_DEAD_LETTER_BYTES) -> dict[str, Any]:
    """What goes to the DLQ: the raw payload (UTF-8 text, or base64 when it is not UTF-8),
    the reason, and where it came from so an operator can find and replay it.

    A payload too large for one broker request is cut to its first bytes; the letter then
    carries ``payload_truncated``, the original's size and SHA-256, so it still identifies
    the message (a letter that cannot be sent would stop the stream instead)."""
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[: MAX_REASON_CHARS - 1] + "…"
    record: dict[str, Any] = {
        "v": WIRE_VERSION,
        "reason": reason,
        **_payload_fields(raw),
        "source_topic": topic,
        "source_partition": partition,
        "source_offset": offset,
        "rejected_at": rejected_at.isoformat(),
    }
    if raw is not None and len(encode(record)) > max_bytes:
        # JSON escaping can make a text up to six times longer: an eighth of the limit fits.
        record.update(_payload_fields(raw[: max_bytes // 8], cut=True))
        record.update(payload_truncated=True, payload_bytes=len(raw),
                      payload_sha256=hashlib.sha256(raw).hexdigest())
    return record


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


def is_negative(mention: Mention, threshold: float) -> bool:
    """Negative = negative is the most likely class and its probability reaches the threshold."""
    return mention.sentiment == "negative" and mention.probs[0] >= threshold


def negative_entity_record(tweet: TweetIn, prediction: TweetPrediction, mention: Mention,
                           created_at: datetime) -> dict[str, Any]:
    """One negative entity mention for the alert worker (keyed by ``entity_key`` on the topic)."""
    return {
        "v": WIRE_VERSION,
        "tweet_id": tweet.id,
        "entity": mention.entity,
        "entity_key": mention.entity_key,
        "type": mention.type,
        "type_source": mention.type_source,
        "watch": mention.watch,
        "sentiment": "negative",
        "score": round(mention.probs[0], 6),
        "tweet_sentiment": prediction.sentiment,
        "text": tweet.text,
        "created_at": created_at.isoformat(),
    }


def encode(record: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON, the one encoding of every record on the wire."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
