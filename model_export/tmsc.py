"""TMSC (Yu & Jiang 2019): sentiment toward each named entity of a tweet, scored two ways.

Each example is a tweet (already tokenised: ``@ user``, ``# tag``), one target entity in it and
the polarity toward that target; tweets with several targets appear once per target, often
with different polarities. That is exactly what a per-mention sentiment must get right, and
what a tweet-level sentiment cannot: so the score is reported beside its baseline,

- **entity**: the entity-sentiment head pooled over the target's tokens
  (``stream.inference.span_sentiment``, the serving code), and
- **tweet baseline**: the tweet-level sentiment used as the target's label,

both as accuracy and macro-F1 over negative / neutral / positive, on Twitter-2015 and
Twitter-2017 together (and each apart), and on the **mixed** tweets alone: those whose targets
carry different polarities. The data: ``targeted_sentiment/tmsc_twitter15_17``
(see ``../shared/data/README.md``); the images of the original multimodal task are not used.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from stream.inference import TokenAnalysis, span_sentiment
from stream.predictions import SENTIMENTS

Predictor = Callable[[Sequence[Sequence[str]], Sequence[str] | None], list[TokenAnalysis]]
SUBSETS = ("twitter2015", "twitter2017")
_MARK = "$T$"


@dataclass(frozen=True, slots=True)
class TargetExample:
    """One (tweet, target) pair: tokens, the target's token span and its polarity index."""

    tokens: tuple[str, ...]
    start: int
    end: int
    label: int
    subset: str


def read_tmsc(data_dir: Path, split: str,
              subsets: Sequence[str] = SUBSETS) -> list[TargetExample]:
    """The examples of ``split`` (train/dev/test); the target span comes from the template
    (the tokens before ``$T$``), checked against the text."""
    examples: list[TargetExample] = []
    for subset in subsets:
        path = data_dir / "targeted_sentiment" / "tmsc_twitter15_17" / subset / f"{split}.jsonl"
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                row = json.loads(line)
                tokens = tuple(row["text"].split())
                template = row["template"]
                if _MARK not in template:
                    raise ValueError(f"{path}:{number}: template without {_MARK}")
                start = len(template[: template.index(_MARK)].split())
                target = row["target"].split()
                end = start + len(target)
                if list(tokens[start:end]) != target:
                    raise ValueError(f"{path}:{number}: target {row['target']!r} is not at "
                                     f"token {start} of the text")
                examples.append(TargetExample(tokens, start, end,
                                              SENTIMENTS.index(row["label"]), subset))
    return examples


def _scores(gold: Sequence[int], pred: Sequence[int]) -> dict[str, float]:
    """Accuracy and macro-F1 (%) over the three classes."""
    f1s = []
    for c in range(len(SENTIMENTS)):
        tp = sum(g == c and p == c for g, p in zip(gold, pred, strict=True))
        n_pred = sum(p == c for p in pred)
        n_gold = sum(g == c for g in gold)
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_gold if n_gold else 0.0
        f1s.append(2 * precision * recall / (precision + recall) if tp else 0.0)
    accuracy = sum(g == p for g, p in zip(gold, pred, strict=True)) / max(1, len(gold))
    return {"accuracy": round(100 * accuracy, 1),
            "macro_f1": round(100 * sum(f1s) / len(f1s), 1)}


def entity_prediction(analysis: TokenAnalysis, start: int, end: int) -> int:
    """The serving rule: the class of the pooled entity-sentiment logits over the target."""
    return int(span_sentiment(analysis.entity_sentiment_logits, start, end).argmax())


def score_tmsc(predict: Predictor, data_dir: Path, split: str) -> dict:
    """Entity-level and tweet-level-baseline scores, overall and per subset."""
    examples = read_tmsc(data_dir, split)
    # Tweets repeat once per target: run each distinct tweet once.
    distinct = list(dict.fromkeys(e.tokens for e in examples))
    analyses = dict(zip(distinct, predict([list(t) for t in distinct], []), strict=True))
    gold = [e.label for e in examples]
    entity = [entity_prediction(analyses[e.tokens], e.start, e.end) for e in examples]
    tweet = [int(analyses[e.tokens].tweet_probs.argmax()) for e in examples]
    result: dict = {"examples": len(examples), "entity": _scores(gold, entity),
                    "tweet_baseline": _scores(gold, tweet)}
    # Tweets whose targets carry different polarities ("Chelsea were brilliant, Arsenal
    # clueless"): the tweet's sentiment can be right for one side only, the mention's for
    # both; the case per-mention sentiment exists for.
    polarities: dict[tuple[str, ...], set[int]] = {}
    for e in examples:
        polarities.setdefault(e.tokens, set()).add(e.label)
    parts = {subset: [i for i, e in enumerate(examples) if e.subset == subset]
             for subset in SUBSETS}
    parts["mixed"] = [i for i, e in enumerate(examples) if len(polarities[e.tokens]) > 1]
    for name, idx in parts.items():
        result[name] = {
            "examples": len(idx),
            "entity": _scores([gold[i] for i in idx], [entity[i] for i in idx]),
            "tweet_baseline": _scores([gold[i] for i in idx], [tweet[i] for i in idx]),
        }
    return result
