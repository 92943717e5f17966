"""``tweetwatch analyze``: the worker's validation, model and decoding applied to lines of a
file, without Kafka or a database (for trying the model and for scripts)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

from stream.inference import Analyzer
from stream.matcher import WatchMatcher
from stream.predictions import SENTIMENTS, TweetPrediction
from stream.publish import line_to_message
from stream.records import InvalidTweet, TweetIn, parse_tweet
from stream.settings import Settings

_CHUNK = 256


def prediction_json(tweet: TweetIn, prediction: TweetPrediction) -> dict[str, Any]:
    """The JSON form of one analysed tweet (``tweetwatch analyze --json``)."""
    return {
        "id": tweet.id,
        "sentiment": prediction.sentiment,
        "probs": dict(zip(SENTIMENTS, (round(p, 6) for p in prediction.probs), strict=True)),
        "entities": [
            {"entity": m.entity, "entity_key": m.entity_key, "type": m.type,
             "sentiment": m.sentiment, "score": round(m.score, 6), "start": m.start,
             "end": m.end, "watch": m.watch}
            for m in prediction.mentions
        ],
        "text": tweet.text,
    }


def line_to_tweet(line: str, max_text_chars: int) -> TweetIn:
    """What the worker would make of this line had `tweetwatch publish` sent it."""
    message = line_to_message(line)
    return parse_tweet(message.value if message else b"", max_text_chars)


def analyze_lines(settings: Settings, lines: Iterable[str],
                  matcher: WatchMatcher | None = None) -> Iterator[dict[str, Any]]:
    """One result per non-blank line, in order: the analysis, or ``{"line", "error"}`` for a
    line the worker would send to the dead-letter topic. With a ``matcher`` (a watchlist),
    every entity says which watched entity it is (``watch``: its name, None if discovered)."""
    analyzer = Analyzer(settings.model_dir, settings.model_variant, settings.intra_op_threads)
    numbered = ((n, line) for n, line in enumerate(lines, 1) if line.strip())
    while chunk := list(islice(numbered, _CHUNK)):
        parsed: list[tuple[int, TweetIn | str]] = []
        for number, line in chunk:
            try:
                parsed.append((number, line_to_tweet(line, settings.max_text_chars)))
            except InvalidTweet as exc:
                parsed.append((number, str(exc)))
        good = [t for _, t in parsed if isinstance(t, TweetIn)]
        predictions = iter(analyzer.analyze([t.text for t in good], matcher) if good else [])
        for number, item in parsed:
            if isinstance(item, TweetIn):
                yield prediction_json(item, next(predictions))
            else:
                yield {"id": None, "line": number, "error": item}
