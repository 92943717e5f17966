"""Wire records (JSON, ``"v": 1``) and the validation of incoming tweets.

Anything can arrive on a Kafka topic. Every incoming message is either turned into a
``TweetIn`` or rejected with a one-line reason; the reject goes to the dead-letter topic with
its raw bytes, so nothing is dropped in silence and one bad message never stops the worker.
The outgoing records (negative entity mention, dead letter) are built here too, so the schema
documented in the README lives in one place.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from stream.predictions import Mention, TweetPrediction

WIRE_VERSION = 1
MAX_ID_CHARS = 128
MAX_FIELD_CHARS = 256


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
    """ISO-8601 timestamp, or None; naive times are taken as UTC."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidTweet(f"field 'created_at' must be an ISO-8601 string, got "
                           f"{type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidTweet(f"field 'created_at' is not ISO-8601: {value[:40]!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_tweet(raw: bytes | None, max_text_chars: int) -> TweetIn:
    """Validate one message value; raise ``InvalidTweet`` with the reason when it is unusable."""
    if raw is None or raw == b"":
        raise InvalidTweet("empty message")
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidTweet(f"invalid UTF-8 at byte {exc.start}") from None
    try:
        doc = json.loads(decoded)
    except json.JSONDecodeError as exc:
        raise InvalidTweet(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
                           ) from None
    if not isinstance(doc, dict):
        raise InvalidTweet(f"expected a JSON object, got {type(doc).__name__}")
    version = doc.get("v", WIRE_VERSION)
    if version != WIRE_VERSION:
        raise InvalidTweet(f"unsupported record version {version!r} (expected {WIRE_VERSION})")

    tweet_id = doc.get("id")
    if tweet_id is None:
        raise InvalidTweet("missing field 'id'")
    if isinstance(tweet_id, int) and not isinstance(tweet_id, bool):
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
                       offset: int, rejected_at: datetime) -> dict[str, Any]:
    """What goes to the DLQ: the raw payload (UTF-8 text, or base64 when it is not UTF-8),
    the reason, and where it came from so an operator can find and replay it."""
    payload: str | None
    try:
        payload, encoding = (None if raw is None else raw.decode("utf-8")), "utf-8"
    except UnicodeDecodeError:
        payload, encoding = base64.b64encode(raw or b"").decode("ascii"), "base64"
    return {
        "v": WIRE_VERSION,
        "reason": reason,
        "payload": payload,
        "payload_encoding": encoding,
        "source_topic": topic,
        "source_partition": partition,
        "source_offset": offset,
        "rejected_at": rejected_at.isoformat(),
    }


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
