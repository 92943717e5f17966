"""What the model says about one tweet: the contract between inference and its consumers.

The pipeline, the `analyze` command and evaluation all read these objects, so the decoding
of logits into spans and labels happens in exactly one place (`stream.inference`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

SENTIMENTS: tuple[str, str, str] = ("negative", "neutral", "positive")


@dataclass(frozen=True, slots=True)
class Mention:
    """One entity mention with the sentiment expressed toward it."""

    entity: str  # text of the span start:end, zero-width and bidi characters removed
    entity_key: str  # stream.textproc.entity_key(entity)
    type: str  # the watchlist's type, else the serving NER head's ("" when neither gave one)
    start: int  # character offset in the tweet text
    end: int
    sentiment: str  # one of SENTIMENTS
    score: float  # probability of `sentiment`
    probs: tuple[float, float, float]  # (negative, neutral, positive)
    watch: str | None = None  # the watched entity's name (stream.watchlist), None: discovered
    type_source: str = "model"  # "model", "watchlist" or "" (a watched entity without a type)


@dataclass(frozen=True, slots=True)
class TweetPrediction:
    """Tweet-level sentiment plus the entity mentions found in the tweet."""

    sentiment: str
    probs: tuple[float, float, float]  # (negative, neutral, positive)
    mentions: list[Mention] = field(default_factory=list)
