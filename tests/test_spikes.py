"""The spike policy as a pure function, and its window counts on a real store (SQLite)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.settings import Settings
from stream.spikes import SpikeStats, SpikeThresholds, WindowCounts, judge, spike_stats
from stream.storage import create_engine, store_batch

TH = SpikeThresholds(window_s=300, baseline_windows=12, min_negative=3, sensitivity=3.0,
                     share_jump=0.3, min_share=0.0, negative_threshold=0.5)


def stats(now: tuple[int, int], baseline: list[tuple[int, int]]) -> SpikeStats:
    return SpikeStats(WindowCounts(*now), tuple(WindowCounts(*w) for w in baseline))


def test_a_storm_over_a_quiet_baseline_fires_on_counts():
    decision = judge(TH, stats((12, 15), [(1, 4)] * 12))
    assert decision.fire and decision.rule == "count"
    assert decision.figures["baseline_mean"] == 1.0
    assert decision.figures["threshold"] == 4.0  # 1 + 3 * max(0, sqrt(1), 1)
    assert "12 negative tweets of 15 in 300 s against a baseline of 1.0" in decision.reason


def test_a_steady_stream_does_not_fire():
    assert not judge(TH, stats((5, 8), [(5, 8)] * 12)).fire
    assert not judge(TH, stats((7, 10), [(4, 8), (6, 9), (5, 8)] * 4)).fire


def test_first_window_of_a_new_entity_fires_at_min_negative():
    assert not judge(TH, stats((3, 3), [(0, 0)] * 12)).fire  # 3 is not above 0 + 3
    assert judge(TH, stats((4, 4), [(0, 0)] * 12)).fire
    assert not judge(TH, stats((2, 2), [(0, 0)] * 12)).fire  # below min_negative


def test_a_share_jump_fires_without_a_count_spike():
    # Many mentions as usual, but now mostly negative.
    decision = judge(TH, stats((9, 10), [(2, 10)] * 12))
    assert decision.fire and decision.rule == "count"
    quiet = judge(TH, stats((5, 6), [(1, 4), (2, 5)] * 6))
    assert quiet.fire and quiet.rule == "share", quiet.reason
    assert quiet.figures["share_z"] == pytest.approx(2.598, abs=1e-3)


def test_a_few_negative_tweets_of_an_often_criticised_entity_are_chance():
    """3 of 3 negative against a 60% baseline share is a 30% jump but z 1.4: no alert (the
    demo's steady politicians re-alerted every few windows on exactly this)."""
    decision = judge(TH, stats((3, 3), [(3, 5)] * 12))
    assert not decision.fire and "z 1.4" in decision.reason
    # Against a baseline that was never negative, the same three tweets are a turn.
    turned = judge(TH, stats((3, 3), [(0, 5)] * 12))
    assert turned.fire and turned.rule == "share"
    assert not judge(TH, stats((5, 6), [(4, 5), (5, 6)] * 6)).fire


def test_discovered_entities_have_stricter_thresholds():
    config = Settings(alert_min_negative=3, alert_sensitivity=3.0,
                      alert_discovered_min_negative=10, alert_discovered_sensitivity=5.0)
    watched = SpikeThresholds.from_settings(config, watched=True)
    discovered = SpikeThresholds.from_settings(config, watched=False)
    window = stats((8, 8), [(1, 5)] * 12)
    assert judge(watched, window).fire
    assert not judge(discovered, window).fire


@settings(max_examples=200, deadline=None)
@given(level=st.integers(0, 40), extra=st.integers(0, 40), neutral=st.integers(0, 20))
def test_property_more_negatives_never_turn_a_fire_off(level, extra, neutral):
    """Monotone in the window's negative count, all else equal."""
    base = [(level, level + neutral)] * 12
    low = judge(TH, stats((level, level + neutral), base))
    high = judge(TH, stats((level + extra, level + extra + neutral), base))
    assert not low.fire or high.fire
    assert not low.fire  # a window exactly like its baseline never fires


T0 = datetime(2021, 2, 3, 10, 0, tzinfo=UTC)


@pytest.fixture
async def engine(sqlite_url):
    engine = create_engine(sqlite_url)
    yield engine
    await engine.dispose()


async def test_counts_are_distinct_tweets_per_window(engine):
    tweets, mentions = [], []

    def add(tweet_id: str, at: datetime, sentiment: str, starts=(0,)) -> None:
        tweets.append({"id": tweet_id, "text": f"Acme {sentiment}", "created_at": at,
                       "ingested_at": at, "author": None, "lang": None, "sentiment": sentiment,
                       "p_negative": 0.9 if sentiment == "negative" else 0.1,
                       "p_neutral": 0.05, "p_positive": 0.05, "model_version": "t"})
        for start in starts:
            mentions.append({"tweet_id": tweet_id, "start": start, "end": start + 4,
                             "entity": "Acme", "entity_key": "acme", "type": "company",
                             "sentiment": sentiment, "score": 0.9,
                             "p_negative": 0.9 if sentiment == "negative" else 0.1,
                             "created_at": at, "watch": "Acme"})

    add("now1", T0 - timedelta(seconds=10), "negative", starts=(0, 10))  # twice: one tweet
    add("now2", T0 - timedelta(seconds=20), "neutral")
    add("prev1", T0 - timedelta(seconds=310), "negative")
    add("old", T0 - timedelta(seconds=300 * 13 + 5), "negative")  # before the baseline
    async with engine.begin() as conn:
        await store_batch(conn, tweets, mentions)
    async with engine.connect() as conn:
        result = await spike_stats(conn, TH, "acme", T0, ("now3", "Acme is down"),
                                   visible_wait_s=0.05)
    # now3's row is not stored: it counts anyway, as a negative tweet.
    assert result.current == WindowCounts(negative=2, tweets=3)
    assert result.baseline[0] == WindowCounts(negative=1, tweets=1)
    assert sum(w.tweets for w in result.baseline) == 1
    assert result.tweet_ids[:2] == ("now3", "now1")
    assert result.texts[:2] == ("Acme is down", "Acme negative")
    # "old" (13 windows back) is Acme's first mention: all 12 baseline windows are history.
    assert len(result.baseline) == TH.baseline_windows

    # An entity first mentioned 7 minutes ago has one window of history, not twelve windows
    # of which eleven are "quiet": its mean is that window's, not a twelfth of it.
    tweets.clear()
    mentions.clear()
    add("new1", T0 - timedelta(seconds=420), "negative")
    add("new2", T0 - timedelta(seconds=400), "negative")
    for m in mentions:
        m.update(entity="Initech", entity_key="initech")
    async with engine.begin() as conn:
        await store_batch(conn, tweets, mentions)
    async with engine.connect() as conn:
        fresh = await spike_stats(conn, TH, "initech", T0, visible_wait_s=0.05)
        unknown = await spike_stats(conn, TH, "globex", T0, visible_wait_s=0.05)
    assert fresh.baseline == (WindowCounts(negative=2, tweets=2),)
    assert fresh.baseline_mean == 2.0
    assert unknown.baseline == ()
