"""Validation of incoming messages: every kind of bad input gets a clear reason."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from stream.offline import line_to_tweet
from stream.publish import line_to_message, replay_messages, text_id
from stream.records import InvalidTweet, dead_letter_record, parse_tweet
from stream.settings import Settings

LIMIT = 280


def _raw(doc: object) -> bytes:
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty message"),
        (None, "empty message"),
        (b'{"id": "1", "text": "hi"', "malformed JSON"),
        (b'{"id": "1", "text": "hi', "malformed JSON: Unterminated string starting at (line 1, "
                                    "column 21)"),
        (b"not json at all", "malformed JSON"),
        (b"\xff\xfe{}", "invalid UTF-8 at byte 0"),
        (b'{"id": "1", "text": "caf\xe9"}', "invalid UTF-8"),
        (_raw(["id", "text"]), "expected a JSON object, got list"),
        (_raw({"text": "hello"}), "missing field 'id'"),
        (_raw({"id": "1"}), "missing field 'text'"),
        (_raw({"id": "1", "text": ""}), "field 'text' is empty"),
        (_raw({"id": "1", "text": "   \n\t"}), "field 'text' is empty"),
        (_raw({"id": "1", "text": "x" * (LIMIT + 1)}), "more than the limit of 280"),
        (_raw({"id": "1", "text": 42}), "field 'text' must be a string, got int"),
        (_raw({"id": ["1"], "text": "hi"}), "field 'id' must be a string, got list"),
        (_raw({"id": True, "text": "hi"}), "field 'id' must be a string, got bool"),
        (_raw({"id": " ", "text": "hi"}), "field 'id' is empty"),
        (_raw({"id": "1", "text": "hi", "created_at": 17}), "must be an ISO-8601 string"),
        (_raw({"id": "1", "text": "hi", "created_at": "yesterday"}), "is not ISO-8601"),
        (_raw({"id": "1", "text": "hi", "author": {"n": 1}}), "field 'author' must be a string"),
        (_raw({"id": "1", "text": "a\u0000b"}), "contains a NUL character"),
        (b'{"id": "1", "text": "lone \\ud800 surrogate"}', "unpaired UTF-16 surrogate"),
        (_raw({"v": 2, "id": "1", "text": "hi"}), "unsupported record version 2"),
        # Inputs that once passed validation and then crashed the worker in a later stage.
        (_raw({"id": "ts-1", "text": "Delta Airlines lost my bag",
               "created_at": "0001-01-01T00:00:00+01:00"}), "outside the accepted range"),
        (_raw({"id": "ts-2", "text": "hi", "created_at": "0001-01-01T00:00:00"}),
         "outside the accepted range"),
        (_raw({"id": "ts-3", "text": "hi", "created_at": "9999-12-31T23:59:59-14:00"}),
         "outside the accepted range"),
        (_raw({"id": "ts-4", "text": "hi", "created_at": "9999-12-31T23:58:00+00:00"}),
         "outside the accepted range"),
        (b'{"id": "deep", "text": "hi", "extra": ' + b"[" * 1500 + b"]" * 1500 + b"}",
         "malformed JSON: nested too deeply"),
        (b'{"id": ' + b"7" * 5001 + b', "text": "hi"}', "malformed JSON: Exceeds the limit"),
        (_raw({"id": "big", "text": "x" * 1_000_000}), "larger than the limit"),
        (_raw({"id": 2**200, "text": "hi"}), "outside 0..2^128"),
        (_raw({"v": [[1]], "id": "1", "text": "hi"}), "unsupported record version list"),
    ],
)
def test_bad_input_is_rejected_with_a_reason(raw: bytes | None, reason: str) -> None:
    with pytest.raises(InvalidTweet) as caught:
        parse_tweet(raw, LIMIT)
    assert reason in str(caught.value)
    assert "\n" not in str(caught.value)


def test_good_record_is_parsed() -> None:
    tweet = parse_tweet(_raw({"v": 1, "id": "t1", "text": "Apple is great",
                              "created_at": "2024-03-01T10:00:00", "author": "a",
                              "lang": "en"}), LIMIT)
    assert tweet.id == "t1"
    assert tweet.text == "Apple is great"
    assert tweet.created_at == datetime(2024, 3, 1, 10, tzinfo=UTC)
    assert (tweet.author, tweet.lang) == ("a", "en")


def test_numeric_ids_and_offsets_are_accepted() -> None:
    tweet = parse_tweet(_raw({"id": 1234567890123, "text": "hi",
                              "created_at": "2024-03-01T10:00:00+02:00"}), LIMIT)
    assert tweet.id == "1234567890123"
    assert tweet.created_at == datetime(2024, 3, 1, 8, tzinfo=UTC)  # stored in UTC


def test_text_at_the_limit_is_accepted() -> None:
    assert len(parse_tweet(_raw({"id": "1", "text": "y" * LIMIT}), LIMIT).text) == LIMIT


def test_dead_letter_keeps_the_raw_payload() -> None:
    now = datetime(2024, 1, 1, tzinfo=UTC)
    text = json.loads(dead_letter_record(b'{"id": 1', "malformed JSON", "tweets", 2, 17,
                                         now).to_json())
    assert text == {"v": 1, "reason": "malformed JSON", "payload": '{"id": 1',
                    "payload_encoding": "utf-8", "source_topic": "tweets",
                    "source_partition": 2, "source_offset": 17,
                    "rejected_at": "2024-01-01T00:00:00+00:00"}
    binary = dead_letter_record(b"\xff\x00", "invalid UTF-8 at byte 0", "tweets", 0, 0, now)
    assert binary.payload_encoding == "base64" and binary.payload is not None
    assert base64.b64decode(binary.payload) == b"\xff\x00"


def test_publish_lines() -> None:
    plain = line_to_message("Microsoft stock is down again")
    assert plain is not None and plain.key == text_id("Microsoft stock is down again").encode()
    doc = json.loads(plain.value)
    assert doc == {"v": 1, "id": text_id("Microsoft stock is down again"),
                   "text": "Microsoft stock is down again"}
    record = line_to_message('{"id": 7, "text": "hello"}')
    assert record is not None and record.key == b"7"
    assert record.value == b'{"id": 7, "text": "hello"}'
    broken = line_to_message('{"id": 7, "text": ')
    assert broken is not None and broken.key is None  # sent as is; the worker rejects it
    assert line_to_message("   ") is None


def test_undecodable_lines_are_published_raw_for_the_dlq() -> None:
    line = b"caf\xe9 is closed".decode("utf-8", "surrogateescape")  # as `publish FILE` reads it
    message = line_to_message(line)
    assert message is not None and message.value == b"caf\xe9 is closed"
    with pytest.raises(InvalidTweet, match="invalid UTF-8 at byte 3"):
        parse_tweet(message.value, LIMIT)


def test_analyze_reads_lines_as_the_worker_would() -> None:
    assert line_to_tweet("Samsung phones explode", LIMIT).id == text_id("Samsung phones explode")
    assert line_to_tweet('{"id": "x", "text": "hi"}', LIMIT).id == "x"
    with pytest.raises(InvalidTweet, match="invalid UTF-8 at byte 3"):
        line_to_tweet(b"caf\xe9".decode("utf-8", "surrogateescape"), LIMIT)
    with pytest.raises(InvalidTweet, match="missing field 'text'"):
        line_to_tweet('{"id": "x"}', LIMIT)


def test_a_replay_spreads_event_times_over_its_span() -> None:
    """The demo's replay: valid tweets whose created_at rise evenly over the span up to the
    end, in publish order; without a span, no created_at (the worker stamps ingest time)."""
    data = Settings().data_dir
    end = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    messages = replay_messages(data, 50, span=timedelta(hours=5), end=end)
    times = [parse_tweet(m.value, LIMIT).created_at for m in messages]
    assert all(t is not None for t in times)
    assert times == sorted(times) and len(set(times)) == 50
    assert times[-1] == end and times[0] == end - timedelta(hours=5) * 49 / 50
    assert [m.key for m in replay_messages(data, 50)] == [m.key for m in messages]
    assert all(parse_tweet(m.value, LIMIT).created_at is None for m in replay_messages(data, 5))
