"""Scores on the public dev/test sets, computed from decoded runtime outputs.

A predictor is anything that maps token lists to :class:`stream.inference.TokenAnalysis`:
``Analyzer.analyze_tokens`` (ONNX fp32/int8, what ``tweetwatch eval`` reports) or the torch
model during training (dev scores for early stopping). Both go through the same numpy decoding.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from seqeval.metrics import classification_report, f1_score
from seqeval.scheme import IOB2

from model_export.corpus import (
    SENTIMENT_INDEX,
    held_out_dev_sentences,
    locate_target,
    mitchell_examples,
    sentiment_dev_examples,
    sentiment_examples,
    topic_rows,
)
from model_export.heads import HEAD_BY_NAME
from model_export.readers import read_conll, read_sentiment_tsv
from model_export.tmsc import score_tmsc
from stream.inference import (
    MODEL_FILES,
    Analyzer,
    TokenAnalysis,
    bio_spans,
    softmax,
    span_sentiment,
)
from stream.predictions import SENTIMENTS
from stream.textproc import tokenize

Predictor = Callable[[Sequence[Sequence[str]], Sequence[str] | None], list[TokenAnalysis]]


def untyped(tags: list[list[str]]) -> list[list[str]]:
    """The same BIO spans with every type replaced by one (``B-company`` -> ``B-ENT``)."""
    return [[tag if tag == "O" else tag[:2] + "ENT" for tag in row] for row in tags]


def type_confusions(gold: list[list[str]], pred: list[list[str]]) -> dict[str, int]:
    """``"gold -> predicted"`` counts of spans found with exact boundaries but the wrong type,
    most frequent first: which types the model cannot tell apart."""
    counts: Counter[str] = Counter()
    for gold_tags, pred_tags in zip(gold, pred, strict=True):
        found = {(start, end): kind for start, end, kind in bio_spans(pred_tags)}
        for start, end, kind in bio_spans(gold_tags):
            other = found.get((start, end))
            if other is not None and other != kind:
                counts[f"{kind} -> {other}"] += 1
    return dict(counts.most_common())


def ner_scores(gold: list[list[str]], pred: list[list[str]]) -> dict:
    """Entity-level exact-match micro F1 (seqeval, strict IOB2) overall and per type, with
    precision and recall, and the F1 of the spans alone (types ignored), all in %: the gap
    between ``f1`` and ``span_f1`` is what typing costs."""
    report = classification_report(gold, pred, mode="strict", scheme=IOB2, output_dict=True,
                                   zero_division=0)
    per_type = {
        name: round(100 * values["f1-score"], 1)
        for name, values in report.items()
        if not name.endswith("avg")
    }
    micro = report["micro avg"]
    span_f1 = f1_score(untyped(gold), untyped(pred), mode="strict", scheme=IOB2,
                       average="micro", zero_division=0)
    return {"f1": round(100 * float(micro["f1-score"]), 1),
            "precision": round(100 * float(micro["precision"]), 1),
            "recall": round(100 * float(micro["recall"]), 1),
            "span_f1": round(100 * span_f1, 1),
            "per_type": per_type, "type_confusions": type_confusions(gold, pred)}


def classification_scores(gold: Sequence[int], pred: Sequence[int], classes: Sequence[int]) -> dict:
    """Macro recall, macro F1 over ``classes``, accuracy (fractions, 0-1), and the recall and
    precision of each class: a macro recall that moves is read by which class moved it, and
    the negative class's precision is how many alert-driving predictions are right."""
    gold_a, pred_a = np.asarray(gold), np.asarray(pred)
    recalls, precisions, f1s = [], [], []
    for c in classes:
        tp = float(np.sum((gold_a == c) & (pred_a == c)))
        support = float(np.sum(gold_a == c))
        predicted = float(np.sum(pred_a == c))
        recall = tp / support if support else 0.0
        precision = tp / predicted if predicted else 0.0
        recalls.append(recall)
        precisions.append(precision)
        f1s.append(2 * precision * recall / (precision + recall) if tp else 0.0)
    return {
        "macro_recall": round(float(np.mean(recalls)), 4),
        "macro_f1": round(float(np.mean(f1s)), 4),
        "accuracy": round(float(np.mean(gold_a == pred_a)), 4),
        "recall_per_class": {SENTIMENTS[c]: round(r, 4) for c, r in zip(classes, recalls,
                                                                         strict=True)},
        "precision_per_class": {SENTIMENTS[c]: round(p, 4)
                                for c, p in zip(classes, precisions, strict=True)},
    }


def span_f1(gold: list[set], pred: list[set]) -> float:
    """Micro F1 (%) of exact-match items per sentence."""
    tp = sum(len(g & p) for g, p in zip(gold, pred, strict=True))
    n_gold = sum(len(g) for g in gold)
    n_pred = sum(len(p) for p in pred)
    if not tp:
        return 0.0
    precision, recall = tp / n_pred, tp / n_gold
    return round(100 * 2 * precision * recall / (precision + recall), 1)


def score_ner(predict: Predictor, data_dir: Path, head_name: str, split: str,
              dev_shares: Mapping[str, float] | None = None) -> dict:
    """Scores of one NER head; on ``dev``, only the tweets that did not train
    (``dev_shares``, see ``TrainConfig.train_with_dev``)."""
    sentences = (held_out_dev_sentences(data_dir, head_name, dev_shares or {})
                 if split == "dev"
                 else read_conll(data_dir / HEAD_BY_NAME[head_name].dataset
                                 / f"{split}.conll").sentences)
    analyses = predict([s.tokens for s in sentences], [head_name])
    gold = [s.tags for s in sentences]
    return ner_scores(gold, [a.tags[head_name] for a in analyses])


def score_sentiment(predict: Predictor, data_dir: Path, split: str,
                    topic_share: float = 0.0) -> dict:
    """4A scores of a split; ``dev`` is val or the held-out topics (``sentiment_dev_examples``)."""
    examples = (sentiment_dev_examples(data_dir, topic_share) if split == "dev"
                else sentiment_examples(data_dir, split))
    analyses = predict([e.tokens for e in examples], [])
    pred = [int(a.tweet_probs.argmax()) for a in analyses]
    gold = [int(e.tweet_sentiment) for e in examples]  # type: ignore[arg-type]
    return classification_scores(gold, pred, range(len(SENTIMENTS)))


def score_mitchell(predict: Predictor, data_dir: Path, fold: int, split: str) -> dict:
    """Span + polarity F1 (the unified-tagger metric) and span-only F1, in %."""
    examples = mitchell_examples(data_dir, fold, split)
    analyses = predict([e.tokens for e in examples], ["targets"])
    gold_full, pred_full, gold_span, pred_span = [], [], [], []
    for example, analysis in zip(examples, analyses, strict=True):
        gold = set()
        tags = example.ner_tags or []
        polarity = example.entity_sentiment or []
        for start, end, _ in bio_spans([HEAD_BY_NAME["targets"].tags[t] for t in tags]):
            gold.add((start, end, SENTIMENTS[polarity[start]]))
        pred = set()
        for start, end, _ in bio_spans(analysis.tags["targets"]):
            probs = span_sentiment(analysis.entity_sentiment_logits, start, end)
            pred.add((start, end, SENTIMENTS[int(probs.argmax())]))
        gold_full.append(gold)
        pred_full.append(pred)
        gold_span.append({g[:2] for g in gold})
        pred_span.append({p[:2] for p in pred})
    return {"f1": span_f1(gold_full, pred_full), "span_f1": span_f1(gold_span, pred_span)}


def score_topic(predict: Predictor, data_dir: Path, split: str) -> dict:
    """Polarity toward a given topic: entity-sentiment logits pooled over the located target
    tokens (tweet sentiment when the target is not in the text); the 2017 test set has only
    negative/positive labels, so the prediction is the likelier of those two."""
    rows = topic_rows(data_dir, split)
    token_lists = [[t.text for t in tokenize(r.text)] for r in rows]
    analyses = predict(token_lists, [])
    classes = sorted({SENTIMENT_INDEX[r.label] for r in rows})
    gold, pred, located = [], [], 0
    for row, tokens, analysis in zip(rows, token_lists, analyses, strict=True):
        spans = locate_target(tokens, row.target or "")
        if spans:
            located += 1
            logits = np.concatenate(
                [analysis.entity_sentiment_logits[s:e] for s, e in spans]
            ).mean(axis=0)
            probs = softmax(logits)
        else:
            probs = analysis.tweet_probs
        gold.append(SENTIMENT_INDEX[row.label])
        pred.append(classes[int(np.argmax(probs[classes]))])
    scores = classification_scores(gold, pred, classes)
    scores["target_located"] = round(located / max(1, len(rows)), 4)
    return scores


def evaluate(predict: Predictor, data_dir: Path, split: str, mitchell_folds: Sequence[int],
             dev_shares: Mapping[str, float] | None = None,
             sentiment_dev_topics: float = 0.0) -> dict:
    """Every score of one split (``dev`` or ``test``); NER dev scores leave out the tweets that
    trained (``dev_shares``). SemEval 4A dev is ``val``, or with ``sentiment_dev_topics`` the
    held-out topics' tweets, with val beside them as ``semeval2017_4a_val``."""
    results: dict = {}
    for name in ("wnut16", "wnut17", "btc"):
        results[name] = score_ner(predict, data_dir, name, split, dev_shares)
    results["semeval2017_4a"] = score_sentiment(predict, data_dir, split, sentiment_dev_topics)
    if split == "dev" and sentiment_dev_topics > 0:
        results["semeval2017_4a_val"] = score_sentiment(predict, data_dir, "val")
    folds = {str(f): score_mitchell(predict, data_dir, f, split) for f in mitchell_folds}
    results["mitchell2013"] = {
        "folds": folds,
        "f1": round(float(np.mean([v["f1"] for v in folds.values()])), 1),
        "span_f1": round(float(np.mean([v["span_f1"] for v in folds.values()])), 1),
    }
    results["tmsc"] = score_tmsc(predict, data_dir, split)
    if split == "test":
        results["semeval2017_topic"] = score_topic(predict, data_dir, split)
    return results


def dev_objective(results: dict, exclude: Sequence[str] = (), tmsc: bool = False) -> float:
    """One number for early stopping: mean of the dev scores, all on a 0-100 scale.

    ``exclude`` names NER corpora whose dev split was trained on (their score would only
    measure memorisation); ``tmsc`` adds the TMSC dev macro-F1 of the entity-sentiment head
    (when TMSC trains it: the sentiment toward each mention is what users read).
    """
    scores = [results[name]["f1"] for name in ("wnut16", "wnut17", "btc") if name not in exclude]
    scores += [100 * results["semeval2017_4a"]["macro_recall"], results["mitchell2013"]["f1"]]
    if tmsc:
        scores.append(results["tmsc"]["entity"]["macro_f1"])
    return float(np.mean(scores))


def test_metrics(model_dir: Path, data_dir: Path, folds: Sequence[int]) -> dict:
    """Test-set scores of the fp32 and int8 ONNX models through the runtime decoding."""
    metrics: dict = {}
    for variant in MODEL_FILES:
        analyzer = Analyzer(model_dir, variant=variant)  # type: ignore[arg-type]
        metrics[variant] = evaluate(analyzer.analyze_tokens, data_dir, "test", folds)
    return metrics


def throughput(
    model_dir: Path, data_dir: Path, batch_sizes: Sequence[int] = (32, 64, 256),
    tweets: int = 4096,
) -> dict:
    """Tweets per second of ``Analyzer.analyze`` (tokenise, encode, ONNX, decode) on one
    intra-op thread, on SemEval-2017 test tweets; best of three passes per batch size."""
    texts = [r.text for r in read_sentiment_tsv(data_dir / "sentiment" / "test.tsv")[:tweets]]
    speeds: dict = {}
    for variant in MODEL_FILES:
        analyzer = Analyzer(model_dir, variant=variant)  # type: ignore[arg-type]
        speeds[variant] = {}
        for size in batch_sizes:
            analyzer.analyze(texts[:size])
            best = float("inf")
            for _ in range(3):
                started = time.perf_counter()
                for begin in range(0, len(texts), size):
                    analyzer.analyze(texts[begin : begin + size])
                best = min(best, time.perf_counter() - started)
            speeds[variant][str(size)] = round(len(texts) / best)
    return speeds
