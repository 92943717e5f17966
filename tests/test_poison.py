"""Property tests: no input, however hostile, raises anything on the way from the wire to the
alert policy except the rejections that send it to the dead-letter topic.

Each property walks the same path the worker does: validation -> model -> rows -> negative
record -> the alert agent's parsing and window arithmetic -> dead letter encoding.
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream.alerting import AlertPolicy, alert_id_for, window_for, within_cooldown
from stream.analyze_agent import tweet_rows
from stream.inference import MAX_ENTITY_CHARS, MAX_MENTIONS, Analyzer
from stream.prompts import AlertContext, InvalidAlert, template_alert, validate_alert
from stream.records import (
    MAX_DEAD_LETTER_BYTES,
    InvalidNegativeRecord,
    InvalidTweet,
    dead_letter_record,
    negative_entity_record,
    parse_negative_record,
    parse_tweet,
)
from stream.settings import Settings
from stream.textproc import INVISIBLE

LIMIT = 2000
# The widest policy the settings allow: the window arithmetic must hold at its extremes.
POLICY = AlertPolicy(window_s=30 * 24 * 3600, cooldown_s=30 * 24 * 3600)
NOW = datetime(2026, 12, 7, tzinfo=UTC)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=20,
)
timestamps = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat()),
    st.sampled_from(["0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00",
                     "9999-12-31T23:59:59-14:00", "9999-12-31T23:58:00+00:00",
                     "1969-12-31T23:59:59Z", "2199-12-31T23:59:59+00:00"]),
    st.text(max_size=30),
)
hostile_text = st.one_of(
    st.text(min_size=1, max_size=300),
    st.sampled_from([
        "Trump\u200b " * 100,
        "Micro\u2060soft is the worst company ever",
        "Boycott #" + "Verizon" * 45 + " they are the worst company ever",
        "@Delta lost my bag AGAIN. Never flying with you again.",
        "\u202eevil\u202c Apple \ufeff\u200d",
    ]),
)
tweet_docs = st.fixed_dictionaries(
    {"id": st.one_of(st.text(max_size=140), st.integers(), json_values),
     "text": st.one_of(hostile_text, json_values)},
    optional={"created_at": st.one_of(timestamps, json_values), "author": json_values,
              "lang": json_values, "v": json_values, "extra": json_values},
)


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    settings = Settings()
    return Analyzer(settings.model_dir, settings.model_variant)


def _walk(raw: bytes, analyzer: Analyzer) -> None:
    """The worker's path for one message; only the DLQ rejections may be raised."""
    try:
        tweet = parse_tweet(raw, LIMIT)
    except InvalidTweet as exc:
        letter = dead_letter_record(raw, str(exc), "tweets", 0, 0, NOW).to_json()
        assert len(letter) <= MAX_DEAD_LETTER_BYTES and "\n" not in str(exc)
        return
    created = tweet.created_at or NOW
    assert created.tzinfo is not None and created.utcoffset() == timedelta(0)
    (prediction,) = analyzer.analyze([tweet.text])
    assert len(prediction.mentions) <= MAX_MENTIONS
    tweets, mentions = tweet_rows([tweet], [prediction], [created], NOW, "v")
    assert len(tweets) == 1 and len(mentions) == len(prediction.mentions)
    for mention in prediction.mentions:
        assert not INVISIBLE.search(mention.entity) and len(mention.entity) <= MAX_ENTITY_CHARS
        record = negative_entity_record(tweet, prediction, mention, created).to_json()
        try:
            negative = parse_negative_record(record)
        except InvalidNegativeRecord as exc:  # only an over-long name may be refused here
            assert "longer than" in str(exc)
            continue
        start, end = window_for(POLICY, negative.created_at)
        assert len(alert_id_for(negative.entity_key, start, end)) == 32
        within_cooldown(POLICY, end, end + timedelta(seconds=POLICY.cooldown_s))
        context = AlertContext(entity=negative.entity, entity_key=negative.entity_key,
                               type=negative.type, window_start=start, window_end=end,
                               negative_mentions=1, mentions=1, tweets=(negative.text,))
        assert template_alert(context)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=tweet_docs)
def test_any_json_tweet_is_stored_or_dead_lettered(doc: dict, analyzer: Analyzer) -> None:
    _walk(json.dumps(doc).encode("utf-8", "surrogatepass"), analyzer)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.binary(max_size=400) | json_values.map(lambda v: json.dumps(v).encode()))
def test_any_bytes_are_stored_or_dead_lettered(raw: bytes, analyzer: Analyzer) -> None:
    _walk(raw, analyzer)


@pytest.mark.parametrize("raw", [
    b'{"id": "deep", "text": "hi", "extra": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    b'{"id": ' + b"9" * 5001 + b', "text": "hi"}',
    json.dumps({"id": "huge", "text": "\u0001" * 1_000_000}).encode(),
    b"\xff" * 2_000_000,
])
def test_extreme_messages_are_dead_lettered_within_the_size_limit(raw: bytes,
                                                                  analyzer: Analyzer) -> None:
    with pytest.raises(InvalidTweet):
        parse_tweet(raw, LIMIT)
    letter = dead_letter_record(raw, "reason " * 1000, "tweets", 3, 9, NOW)
    assert len(letter.to_json()) <= MAX_DEAD_LETTER_BYTES
    if letter.payload_truncated:
        assert letter.payload_bytes == len(raw) > MAX_DEAD_LETTER_BYTES // 8
        assert letter.payload_sha256 is not None and len(letter.payload_sha256) == 64
    else:  # kept whole
        assert letter.payload is not None
        assert letter.payload.encode() == raw and len(raw) < MAX_DEAD_LETTER_BYTES
        assert "payload_truncated" not in json.loads(letter.to_json())
    assert len(letter.reason) <= 1000
    _walk(raw, analyzer)


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=300) | st.builds(
    lambda doc: json.dumps(doc).encode(),
    st.fixed_dictionaries({}, optional={
        "tweet_id": json_values, "entity": json_values, "entity_key": json_values,
        "type": json_values, "text": json_values, "created_at": timestamps,
        "score": json_values, "v": json_values})))
def test_any_negative_record_is_parsed_or_rejected(raw: bytes) -> None:
    try:
        negative = parse_negative_record(raw)
    except InvalidNegativeRecord:
        return
    start, end = window_for(POLICY, negative.created_at)
    alert_id_for(negative.entity_key, start, end)
    assert within_cooldown(POLICY, end, end)


@settings(max_examples=300, deadline=None)
@given(answer=st.text(max_size=400))
def test_any_llm_answer_is_accepted_or_rejected(answer: str) -> None:
    context = AlertContext(entity="Verizon", entity_key="verizon", type="company",
                           window_start=NOW - timedelta(minutes=5), window_end=NOW,
                           negative_mentions=3, mentions=4, tweets=("Verizon is down",))
    with contextlib.suppress(InvalidAlert):
        validate_alert(answer, context)


def test_a_repeated_invisible_name_is_one_clean_bounded_mention_list(analyzer: Analyzer) -> None:
    """``"Trump\\u200b" x 100`` once stored 100 mentions named ``Trump\\u200b``."""
    (prediction,) = analyzer.analyze(["Trump\u200b " * 100 + "is a disgrace"])
    assert len(prediction.mentions) <= MAX_MENTIONS
    assert all(not INVISIBLE.search(m.entity) for m in prediction.mentions)
    (joined,) = analyzer.analyze(["Micro\u2060soft is the worst company ever"])
    assert all(m.entity != "Micro" for m in joined.mentions)
