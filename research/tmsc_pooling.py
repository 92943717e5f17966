"""TMSC dev: serve-time pooling rules for the sentiment toward a mention, compared before the
test split is read (the rule chosen here is then scored on test by ``tweetwatch eval``).

Run from the repository root: ``python -m research.tmsc_pooling [--split dev]``. Each rule maps
the entity-sentiment logits of a tweet (and its tweet-level probabilities) to the class of one
target span; accuracy and macro-F1 (%) over TMSC Twitter-2015 + 2017.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import click
import numpy as np

from model_export.tmsc import TargetExample, _scores, read_tmsc
from stream.inference import Analyzer, TokenAnalysis, softmax
from stream.settings import Settings

ROOT = Path(__file__).resolve().parent.parent

Rule = Callable[[TokenAnalysis, TargetExample], int]


def _logits(a: TokenAnalysis, e: TargetExample, before: int = 0, after: int = 0) -> np.ndarray:
    return a.entity_sentiment_logits[max(0, e.start - before):e.end + after]


RULES: dict[str, Rule] = {
    "mean of logits (serving)": lambda a, e: int(_logits(a, e).mean(0).argmax()),
    "tweet sentiment (baseline)": lambda a, e: int(a.tweet_probs.argmax()),
    "mean of probabilities": lambda a, e: int(softmax(_logits(a, e)).mean(0).argmax()),
    "first token": lambda a, e: int(a.entity_sentiment_logits[e.start].argmax()),
    "last token": lambda a, e: int(a.entity_sentiment_logits[e.end - 1].argmax()),
    **{f"mean with {k} context token(s) each side":
       (lambda a, e, k=k: int(_logits(a, e, k, k).mean(0).argmax())) for k in (1, 2, 3)},
    **{f"minus {lam} x the tweet's mean logits":
       (lambda a, e, lam=lam: int((_logits(a, e).mean(0)
                                   - lam * a.entity_sentiment_logits.mean(0)).argmax()))
       for lam in (0.25, 0.5, 0.75)},
    **{f"plus {w} x log tweet probabilities":
       (lambda a, e, w=w: int((np.log(softmax(_logits(a, e).mean(0)))
                               + w * np.log(a.tweet_probs)).argmax()))
       for w in (0.5, 1.0, 2.0)},
    **{f"neutral bias {b:+}":
       (lambda a, e, b=b: int((_logits(a, e).mean(0) + np.array([0.0, b, 0.0])).argmax()))
       for b in (-0.5, 0.5, 1.0)},
}


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--split", type=click.Choice(["dev", "test"]), default="dev", show_default=True,
              help="TMSC split to score.")
def main(split: str) -> None:
    """Accuracy and macro F1 of each rule for an entity's sentiment on TMSC pairs; writes
    benchmarks/results/tmsc_pooling/SPLIT.json."""
    settings = Settings()
    analyzer = Analyzer(settings.model_dir)
    examples = read_tmsc(settings.data_dir, split)
    distinct = list(dict.fromkeys(e.tokens for e in examples))
    analyses = dict(zip(distinct, analyzer.analyze_tokens([list(t) for t in distinct], []),
                        strict=True))
    gold = [e.label for e in examples]
    result = {name: _scores(gold, [rule(analyses[e.tokens], e) for e in examples])
              for name, rule in RULES.items()}
    print(f"| rule (TMSC {split}, {len(examples)} pairs) | accuracy | macro F1 |")
    print("|---|---|---|")
    for name, s in result.items():
        print(f"| {name} | {s['accuracy']} | {s['macro_f1']} |")
    out = ROOT / "benchmarks" / "results" / "tmsc_pooling" / f"{split}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model_version": analyzer.model_version, "rules": result},
                              indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
