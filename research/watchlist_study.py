"""Watchlist acceptance study: on public tweets with labelled, named targets, does a watchlist
of the targets find their mentions, and is the per-mention sentiment a better predictor of the
target's label than the tweet's sentiment?

Run from the repository root (writes ``benchmarks/results/watchlist_study/study.json``)::

    python -m research.watchlist_study

Data (``../shared/data/targeted_sentiment``, see its README):

- **SemEval-2017 topic test** (6,185 tweets, label negative/positive toward a named topic).
  The watchlist has one entity per topic, written as a user would: the topic as given, plus
  its bare word when the topic is a ``#hashtag``/``@handle``. A *target mention* is an
  occurrence of the topic's words in the tweet, on word boundaries, separated by nothing but
  spaces or punctuation (a check independent of the matcher's tokeniser); many tweets of a
  topic never name it (they were collected by topic), so recall is over the tweets that do,
  with the share over all tweets beside it. Labels are two-way: each predictor's answer is
  the likelier of negative and positive (as ``tweetwatch eval`` scores this set).
- **TMSC test** (Twitter-2015 + 2017, 2,271 tweet-target pairs, three-way labels). The
  watchlist is every distinct target; the target is in the text by construction.

Predictors, on the tweets where the watchlist found the target: the sentiment of the watched
mention (``Analyzer.analyze`` with the matcher: entity-sentiment logits pooled over the
mention), against the tweet-level sentiment of the same tweets.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from pathlib import Path

from model_export.tmsc import read_tmsc
from stream.inference import Analyzer
from stream.matcher import WatchMatcher
from stream.predictions import SENTIMENTS
from stream.settings import Settings
from stream.watchlist import WatchedEntity, make_entity

ROOT = Path(__file__).resolve().parent.parent

OUT = ROOT / "benchmarks" / "results" / "watchlist_study" / "study.json"


def scores(gold: Sequence[int], pred: Sequence[int], classes: Sequence[int]) -> dict:
    """Accuracy, macro recall and macro F1 (%) over ``classes``."""
    recalls, f1s = [], []
    for c in classes:
        tp = sum(g == c and p == c for g, p in zip(gold, pred, strict=True))
        n_gold = sum(g == c for g in gold)
        n_pred = sum(p == c for p in pred)
        recall = tp / n_gold if n_gold else 0.0
        precision = tp / n_pred if n_pred else 0.0
        recalls.append(recall)
        f1s.append(2 * precision * recall / (precision + recall) if tp else 0.0)
    accuracy = sum(g == p for g, p in zip(gold, pred, strict=True)) / max(1, len(gold))
    return {"n": len(gold), "accuracy": round(100 * accuracy, 1),
            "macro_recall": round(100 * sum(recalls) / len(recalls), 1),
            "macro_f1": round(100 * sum(f1s) / len(f1s), 1)}


def pick(probs: Sequence[float], classes: Sequence[int]) -> int:
    return max(classes, key=lambda c: probs[c])


def mentioned(target: str, text: str) -> bool:
    """Whether ``text`` names ``target``: its words in order, on word boundaries, joined by
    nothing or by spaces/punctuation (``Melania speech``, ``#MelaniaSpeech``)."""
    words = re.findall(r"[^\W_]+", target.casefold())
    if not words:
        return False
    pattern = r"(?<![^\W_])" + r"[\W_]*".join(map(re.escape, words)) + r"(?![^\W_])"
    return re.search(pattern, text.casefold()) is not None


def run_study(analyzer: Analyzer, rows: list[tuple[str, str, int]],
              entities: dict[str, WatchedEntity], classes: Sequence[int],
              present: list[bool]) -> dict:
    """rows: (text, target, gold label index)."""
    matcher = WatchMatcher(list({e.key: e for e in entities.values()}.values()))
    texts = list(dict.fromkeys(text for text, _, _ in rows))
    started = time.perf_counter()
    predictions = dict(zip(texts, analyzer.analyze(texts, matcher), strict=True))
    elapsed = time.perf_counter() - started
    found_rows, gold, by_mention, by_tweet = 0, [], [], []
    found_present = 0
    for (text, target, label), is_present in zip(rows, present, strict=True):
        prediction = predictions[text]
        key = entities[target].key
        mention = next((m for m in prediction.mentions if m.watch and m.entity_key == key),
                       None)
        if mention is None:
            continue
        found_rows += 1
        found_present += is_present
        gold.append(label)
        by_mention.append(pick(mention.probs, classes))
        by_tweet.append(pick(prediction.probs, classes))
    n_present = sum(present)
    return {
        "rows": len(rows), "entities": len(matcher), "patterns": matcher.patterns,
        "target_mentions": n_present,
        "found_of_target_mentions": round(100 * found_present / max(1, n_present), 1),
        "found_of_all_rows": round(100 * found_rows / max(1, len(rows)), 1),
        "sentiment_on_found_rows": {
            "per_mention": scores(gold, by_mention, classes),
            "tweet_level": scores(gold, by_tweet, classes),
        },
        "analyze_s": round(elapsed, 1),
    }


def semeval_topic(analyzer: Analyzer, data_dir: Path) -> dict:
    path = data_dir / "targeted_sentiment" / "semeval2017_topic" / "test.tsv"
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[2].strip():
            rows.append((parts[2].strip(), parts[1].strip(), SENTIMENTS.index(parts[0])))
    entities = {}
    for target in sorted({t for _, t, _ in rows}):
        bare = target.lstrip("#@")
        entities[target] = make_entity(target, None, [bare] if bare != target else [])
    present = [mentioned(target, text) for text, target, _ in rows]
    return run_study(analyzer, rows, entities, (0, 2), present)


def tmsc(analyzer: Analyzer, data_dir: Path) -> dict:
    examples = read_tmsc(data_dir, "test")
    rows = [(" ".join(e.tokens), " ".join(e.tokens[e.start:e.end]), e.label) for e in examples]
    entities = {target: make_entity(target) for target in sorted({t for _, t, _ in rows})}
    return run_study(analyzer, rows, entities, (0, 1, 2), [True] * len(rows))


def main() -> None:
    settings = Settings()
    analyzer = Analyzer(settings.model_dir, settings.model_variant)
    result = {"model_version": analyzer.model_version,
              "semeval2017_topic_test": semeval_topic(analyzer, settings.data_dir),
              "tmsc_test": tmsc(analyzer, settings.data_dir)}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=1))
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
