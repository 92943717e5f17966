"""Dev-set calibration of the heads' biases, folded into the model after training.

NER heads: how eagerly each one leaves the ``O`` tag. Trained with many more ``O`` tokens than
entity tokens and tested on text with new entities, the heads are conservative: on clean dev
sets the WNUT17 head found a quarter of the mentions at 56% precision. Lowering the ``O`` logit
by a constant trades precision for recall; the constant that maximises each head's dev F1 is
folded into that head's ``O`` bias.

Tweet head: SemEval-4A is scored by macro-averaged recall, whose best decision divides the
class probabilities by the training prior (it does not depend on the test set's own class
mix, which in 2017 has twice train's share of negatives). The loss's inverse-sqrt class weights
do half of that division; how much more (``beta`` x -log prior) is chosen on the 4A dev split
(the held-out topics' tweets, or val; ``sentiment_dev_examples``) and folded into the head's
output bias.

Both leave the exported graph and the runtime decoding exactly as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from model_export.corpus import (
    Example,
    fully_trained,
    held_out_dev_sentences,
    held_out_topic_texts,
    mitchell_examples,
    sentiment_dev_examples,
    sentiment_examples,
    text_key,
)
from model_export.evaluate import classification_scores, ner_scores
from model_export.heads import (
    HEAD_BY_NAME,
    NER_HEADS,
    TWEET_SENTIMENT_OUTPUT,
)
from model_export.model import TweetTagger
from model_export.predictor import named_outputs
from stream.inference import LabelSpace
from stream.textproc import Vocab

log = logging.getLogger(__name__)
# Candidate O-logit offsets (0 = leave the head as trained).
OFFSETS: tuple[float, ...] = tuple(np.round(np.arange(-1.0, 3.01, 0.25), 2))
# Candidate strengths of the tweet head's prior correction (0 = as trained).
PRIOR_BETAS: tuple[float, ...] = tuple(np.round(np.arange(0.0, 1.51, 0.25), 2))


def dev_sentences(data_dir: Path, head_name: str, mitchell_folds: Sequence[int],
                  dev_shares: Mapping[str, float] | None = None,
                  ) -> tuple[list[list[str]], list[list[str]]]:
    """Token lists and gold BIO tags of a head's dev split (the held-out part of it, when
    ``dev_shares`` gives part of it to training)."""
    head = HEAD_BY_NAME[head_name]
    if head_name == "targets":
        examples = [e for f in mitchell_folds for e in mitchell_examples(data_dir, f, "dev")]
        return ([e.tokens for e in examples],
                [[head.tags[t] for t in e.ner_tags or []] for e in examples])
    sentences = held_out_dev_sentences(data_dir, head_name, dev_shares or {})
    return [s.tokens for s in sentences], [s.tags for s in sentences]


def model_outputs(model: TweetTagger, vocab: Vocab, token_lists: Sequence[Sequence[str]],
                  batch_size: int = 256) -> list[tuple[dict[str, np.ndarray], np.ndarray]]:
    """Named raw outputs and lengths, batch by batch (computed once, decoded per offset)."""
    model.eval()
    chunks = []
    with torch.no_grad():
        for begin in range(0, len(token_lists), batch_size):
            feeds = vocab.encode(token_lists[begin : begin + batch_size])
            chunks.append((named_outputs(model, feeds), feeds["lengths"]))
    return chunks


def best_offset(model: TweetTagger, vocab: Vocab, labels: LabelSpace, head_name: str,
                data_dir: Path, mitchell_folds: Sequence[int],
                dev_shares: Mapping[str, float] | None = None) -> dict:
    """Dev F1 for each candidate offset of one head, and the best offset (ties: the smallest
    change)."""
    tokens, gold = dev_sentences(data_dir, head_name, mitchell_folds, dev_shares)
    chunks = model_outputs(model, vocab, tokens)
    output = HEAD_BY_NAME[head_name].output
    scores = {}
    for offset in OFFSETS:
        predicted: list[list[str]] = []
        for named, lengths in chunks:
            shifted = dict(named)
            shifted[output] = named[output].copy()
            shifted[output][..., 0] -= offset
            predicted += [a.tags[head_name]
                          for a in labels.decode(shifted, lengths, [head_name])]
        scores[float(offset)] = ner_scores(gold, predicted)["f1"]
    best = max(scores, key=lambda o: (scores[o], -abs(o)))
    return {"offset": best, "dev_f1_before": scores[0.0], "dev_f1_after": scores[best],
            "sweep": scores}


def calibrate_heads(model: TweetTagger, vocab: Vocab, labels: LabelSpace, data_dir: Path,
                    mitchell_folds: Sequence[int],
                    dev_shares: Mapping[str, float] | None = None) -> dict[str, dict]:
    """Choose each NER head's O offset on the held-out part of its dev split and fold it
    into the model; heads whose whole dev split trained (share 1 in ``dev_shares``) keep
    their bias."""
    shares = dev_shares or {}
    report = {}
    for index, head in enumerate(NER_HEADS):
        if head.name in fully_trained(shares):
            continue
        found = best_offset(model, vocab, labels, head.name, data_dir, mitchell_folds, shares)
        with torch.no_grad():
            model.ner_heads[index].bias[0] -= found["offset"]
        log.info("calibrated %s: O offset %.2f, dev F1 %.1f -> %.1f", head.name,
                 found["offset"], found["dev_f1_before"], found["dev_f1_after"])
        report[head.name] = found
    return report


def sentiment_gold(examples: Sequence[Example]) -> list[int]:
    """Tweet-sentiment class ids of SemEval-4A examples (every one is labelled)."""
    return [int(e.tweet_sentiment) for e in examples]  # type: ignore[arg-type]


def train_log_prior(data_dir: Path, topic_share: float = 0.0) -> np.ndarray:
    """log of the SemEval-4A training class shares (negative, neutral, positive), without the
    held-out topics' tweets (``TrainConfig.sentiment_dev_topics``)."""
    held = held_out_topic_texts(data_dir, topic_share)
    counts = np.bincount(sentiment_gold([e for e in sentiment_examples(data_dir, "train")
                                         if text_key(e.tokens) not in held]), minlength=3)
    return np.log(counts / counts.sum())


def prior_sweep(logits: np.ndarray, gold: Sequence[int],
                log_prior: np.ndarray) -> dict[float, float]:
    """Macro recall of ``argmax(logits - beta * log_prior)`` for each candidate beta."""
    return {float(beta): classification_scores(
        gold, (logits - beta * log_prior).argmax(1).tolist(), range(3))["macro_recall"]
        for beta in PRIOR_BETAS}


def best_beta(scores: dict[float, float]) -> float:
    """The beta of the highest score; ties go to the smallest correction."""
    return max(scores, key=lambda b: (scores[b], -b))


def tweet_prior_correction(model: TweetTagger, vocab: Vocab, data_dir: Path,
                           topic_share: float = 0.0) -> dict:
    """Choose ``beta`` on the 4A dev split (val, or the held-out topics with ``topic_share``;
    macro recall; ties: the smallest) and add ``-beta * log(train prior)`` to the tweet
    head's output bias."""
    log_prior = train_log_prior(data_dir, topic_share)
    val = sentiment_dev_examples(data_dir, topic_share)
    logits = np.concatenate([named[TWEET_SENTIMENT_OUTPUT]
                             for named, _ in model_outputs(model, vocab, [e.tokens for e in val])])
    scores = prior_sweep(logits, sentiment_gold(val), log_prior)
    best = best_beta(scores)
    with torch.no_grad():
        model.tweet_out.bias -= torch.from_numpy(best * log_prior).to(model.tweet_out.bias)
    log.info("calibrated tweet head: prior correction %.2f, 4A dev macro recall %.4f -> %.4f",
             best, scores[0.0], scores[best])
    return {"beta": best, "train_prior": np.round(np.exp(log_prior), 4).tolist(),
            "dev_split": "val" if topic_share <= 0 else f"held-out topics ({topic_share:g})",
            "dev_macro_recall_before": scores[0.0], "dev_macro_recall_after": scores[best],
            "sweep": scores}
