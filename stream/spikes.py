"""Spike detection: is an entity's criticism now unusual against its own recent past?

Raw counts alert on whatever is always criticised (an entity with ten complaints every five
minutes re-alerted after every cooldown); social-listening products compare a query's last
period with its own baseline instead. Here, for a negative mention at time t of entity K:

- the current window is ``(t - w, t]`` and the baseline is the ``n`` windows before it,
  ``(t - (k+1)w, t - kw]`` for k = 1..n (``alert_window_s``, ``alert_baseline_windows``);
- counts are distinct tweets (a tweet naming K twice is one complaint): negative tweets about
  K and all tweets about K, per window, from one indexed query on ``entity_mentions``;
- the **count rule** fires when the window has at least ``min_negative`` negative tweets and
  more than ``mean + sensitivity * max(std, sqrt(mean), 1)`` of them, mean and std over the
  baseline windows (the ``sqrt(mean)`` floor is the Poisson noise of a steady stream, so a
  perfectly regular stream does not make every small wobble a spike);
- the **share rule** fires when the window's negative share exceeds the baseline's by
  ``share_jump`` and its negative count is ``SHARE_MIN_Z`` binomial standard deviations above
  what the baseline share predicts for the window's tweets (3 of 3 against 60% is chance),
  with at least ``min_negative`` negative tweets now and ``min_negative`` tweets in the
  baseline (a share of nothing is no baseline);
- and in both cases the window's negative share is at least ``min_share``.

A steady stream sets its own baseline and stays quiet; a storm is above it within one window.
Windows before the entity's first mention are not part of its baseline (no history is not
quiet history). An entity with no history has a baseline of zero, so its first window with
``min_negative`` negative tweets fires once (onset); the cooldown (``stream.alerting``) then
keeps one storm from firing again while its own tweets are still rising into the baseline.

Watched and discovered entities use different thresholds (:class:`SpikeThresholds`):
discovered ones need more tweets and a larger excess, since the model's open-domain spans are
noisier than a user's aliases.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from stream.settings import Settings
from stream.storage import EntityMention, Tweet

EXAMPLES = 5  # example tweets carried by an alert record
VISIBLE_WAIT_S = 5.0  # longest wait for the triggering tweet's batch to commit
MAX_TWEET_IDS = 50
# The share rule's least binomial z (about a 2% chance that the baseline's share gives that
# many negative tweets): 5 of 6 against 33% is 2.6 and fires; 3 of 3 against 60% is 1.4.
SHARE_MIN_Z = 2.0


@dataclass(frozen=True, slots=True)
class SpikeThresholds:
    """The knobs of one entity class (watched or discovered); see the module docstring."""

    window_s: int
    baseline_windows: int
    min_negative: int
    sensitivity: float
    share_jump: float
    min_share: float
    negative_threshold: float

    @classmethod
    def from_settings(cls, settings: Settings, watched: bool) -> SpikeThresholds:
        return cls(
            window_s=settings.alert_window_s,
            baseline_windows=settings.alert_baseline_windows,
            min_negative=(settings.alert_min_negative if watched
                          else settings.alert_discovered_min_negative),
            sensitivity=(settings.alert_sensitivity if watched
                         else settings.alert_discovered_sensitivity),
            share_jump=settings.alert_share_jump,
            min_share=settings.alert_min_negative_share,
            negative_threshold=settings.negative_threshold,
        )


@dataclass(frozen=True, slots=True)
class WindowCounts:
    """Distinct tweets about an entity in one window, and how many of them are negative."""

    negative: int
    tweets: int

    @property
    def share(self) -> float:
        return self.negative / self.tweets if self.tweets else 0.0


@dataclass(frozen=True, slots=True)
class SpikeStats:
    """The current window, the baseline windows (most recent first) and the window's
    negative tweets (ids and texts, newest first)."""

    current: WindowCounts
    baseline: tuple[WindowCounts, ...]
    tweet_ids: tuple[str, ...] = ()
    texts: tuple[str, ...] = ()

    @property
    def baseline_mean(self) -> float:
        return sum(w.negative for w in self.baseline) / max(1, len(self.baseline))

    @property
    def baseline_std(self) -> float:
        mean = self.baseline_mean
        n = max(1, len(self.baseline))
        return math.sqrt(sum((w.negative - mean) ** 2 for w in self.baseline) / n)

    @property
    def baseline_tweets(self) -> int:
        return sum(w.tweets for w in self.baseline)

    @property
    def baseline_share(self) -> float:
        total = self.baseline_tweets
        return sum(w.negative for w in self.baseline) / total if total else 0.0


@dataclass(frozen=True, slots=True)
class SpikeDecision:
    """Fire or not, the rule that decided, a one-line reason and the figures behind it."""

    fire: bool
    rule: str  # "count", "share" or "" (no alert)
    reason: str
    figures: dict[str, Any]


def count_threshold(th: SpikeThresholds, stats: SpikeStats) -> float:
    """Negative tweets the window must exceed for the count rule."""
    mean = stats.baseline_mean
    return mean + th.sensitivity * max(stats.baseline_std, math.sqrt(mean), 1.0)


def share_z(stats: SpikeStats) -> float:
    """How far the window's negative count sits above what the baseline's share predicts for
    its number of tweets, in binomial standard deviations (the share is clamped to
    [0.05, 0.95]: a baseline that was never or always negative still has some noise). Three
    negative tweets of three against a 60% baseline is z 1.4: chance, not a turn."""
    n = stats.current.tweets
    p = min(max(stats.baseline_share, 0.05), 0.95)
    return (stats.current.negative - n * p) / math.sqrt(max(n * p * (1 - p), 1e-9))


def judge(th: SpikeThresholds, stats: SpikeStats) -> SpikeDecision:
    """The pure policy (module docstring) on one window and its baseline."""
    now = stats.current
    threshold = count_threshold(th, stats)
    figures = {
        "negative_tweets": now.negative, "tweets": now.tweets, "share": round(now.share, 4),
        "baseline_mean": round(stats.baseline_mean, 3),
        "baseline_std": round(stats.baseline_std, 3), "threshold": round(threshold, 3),
        "baseline_share": round(stats.baseline_share, 4),
        "baseline_tweets": stats.baseline_tweets, "baseline_windows": len(stats.baseline),
        "window_s": th.window_s, "share_z": round(share_z(stats), 3),
    }
    if now.negative < th.min_negative:
        return SpikeDecision(False, "", f"{now.negative} negative tweets < {th.min_negative} "
                                        "needed", figures)
    if now.share < th.min_share:
        return SpikeDecision(False, "", f"negative share {now.share:.2f} < {th.min_share:.2f}",
                             figures)
    if now.negative > threshold:
        figures["rule"] = "count"
        return SpikeDecision(True, "count", (
            f"{now.negative} negative tweets of {now.tweets} in {th.window_s} s against a "
            f"baseline of {stats.baseline_mean:.1f} per window (threshold {threshold:.1f}); "
            f"negative share {now.share:.0%} (baseline {stats.baseline_share:.0%})"), figures)
    jump = now.share - stats.baseline_share
    if (stats.baseline_tweets >= th.min_negative and jump >= th.share_jump
            and figures["share_z"] >= SHARE_MIN_Z):
        figures["rule"] = "share"
        return SpikeDecision(True, "share", (
            f"negative share {now.share:.0%} ({now.negative} of {now.tweets} tweets) in "
            f"{th.window_s} s against {stats.baseline_share:.0%} in the "
            f"{len(stats.baseline)} windows before (z {figures['share_z']:.1f})"), figures)
    return SpikeDecision(False, "", (
        f"{now.negative} negative tweets <= threshold {threshold:.1f} and share "
        f"{now.share:.0%} not clearly above the baseline's {stats.baseline_share:.0%} "
        f"(jump < {th.share_jump:.0%} or z {figures['share_z']:.1f} < {SHARE_MIN_Z:g})"),
        figures)


async def wait_visible(conn: AsyncConnection, tweet_id: str, timeout_s: float) -> bool:
    """Wait until the tweet's row is committed (True), at most ``timeout_s`` (False).

    The analyze agent publishes a batch's negative mentions inside the transaction that
    stores the batch and commits once the broker has acknowledged them, so a mention can
    arrive before its batch is visible -- and with it the other tweets of the same batch in
    the same window, which the counts need. Once the trigger's row is visible, its whole batch
    is (one transaction).
    """
    tweets = Tweet.__table__
    deadline = time.monotonic() + timeout_s
    delay = 0.01
    while True:
        found = await conn.scalar(sa.select(tweets.c.id).where(tweets.c.id == tweet_id))
        if found is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        await conn.rollback()  # end the snapshot-holding transaction before asking again
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.2)


async def spike_stats(conn: AsyncConnection, th: SpikeThresholds, entity_key: str,
                      at: datetime, trigger: tuple[str, str] | None = None,
                      visible_wait_s: float = VISIBLE_WAIT_S) -> SpikeStats:
    """Per-window distinct-tweet counts of ``entity_key`` up to ``at`` and its first mention
    (one query over the ``(entity_key, created_at)`` index), and the current window's
    negative tweets.

    ``trigger`` = (tweet id, text) of the mention being judged: its batch is waited for (at
    most ``visible_wait_s``, :func:`wait_visible`), and it always counts, even if its row
    never became visible (a batch rolled back after publishing is stored again on
    redelivery).
    """
    if trigger is not None:
        await wait_visible(conn, trigger[0], visible_wait_s)
    em = EntityMention.__table__
    width = timedelta(seconds=th.window_s)
    n = th.baseline_windows
    is_negative = sa.and_(em.c.sentiment == "negative",
                          em.c.p_negative >= th.negative_threshold)
    columns = []
    for k in range(n + 1):
        in_k = sa.and_(em.c.created_at > at - (k + 1) * width, em.c.created_at <= at - k * width)
        columns.append(sa.func.count(sa.distinct(em.c.tweet_id)).filter(in_k))
        columns.append(sa.func.count(sa.distinct(em.c.tweet_id)).filter(sa.and_(in_k,
                                                                                is_negative)))
    # Baseline windows that end before the entity's first mention are not quiet history but
    # no history (a stream that started 10 minutes ago, a watch added then): leave them out,
    # or they drag the mean to zero and the first minutes alert as if every tweet were news.
    seen = em.alias("seen")
    columns.append(sa.select(sa.func.min(seen.c.created_at))
                   .where(seen.c.entity_key == entity_key).scalar_subquery())
    row = (await conn.execute(sa.select(*columns).where(
        em.c.entity_key == entity_key, em.c.created_at > at - (n + 1) * width,
        em.c.created_at <= at))).one()
    windows = [WindowCounts(negative=int(row[2 * k + 1]), tweets=int(row[2 * k]))
               for k in range(n + 1)]
    first = row[-1]
    if first is not None and first.tzinfo is None:
        first = first.replace(tzinfo=UTC)
    known = 1 + sum(1 for k in range(1, n + 1) if first is not None and at - k * width > first)
    in_window = sa.and_(em.c.entity_key == entity_key, em.c.created_at > at - width,
                        em.c.created_at <= at)
    tweets = Tweet.__table__
    rows = (await conn.execute(
        sa.select(em.c.tweet_id, tweets.c.text)
        .join(tweets, tweets.c.id == em.c.tweet_id)
        .where(in_window, is_negative)
        .order_by(em.c.created_at.desc(), em.c.tweet_id)
        .limit(MAX_TWEET_IDS * 2)
    )).all()
    texts = dict((r[0], r[1]) for r in rows)
    ids = list(texts)
    current = windows[0]
    if trigger is not None and trigger[0] not in texts:
        seen = await conn.scalar(sa.select(sa.func.count()).where(
            in_window, em.c.tweet_id == trigger[0]))
        if not seen:
            current = WindowCounts(current.negative + 1, current.tweets + 1)
        ids.insert(0, trigger[0])
        texts[trigger[0]] = trigger[1]
    ids = ids[:MAX_TWEET_IDS]
    return SpikeStats(current=current, baseline=tuple(windows[1:known]), tweet_ids=tuple(ids),
                      texts=tuple(texts[i] for i in ids[:EXAMPLES]))
