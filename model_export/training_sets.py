"""The training examples of each task, as the recipe assembles them.

Each NER corpus's training split (plus the share of its dev split that trains, repeated),
Mitchell's targets, the SemEval-4A tweets and the topic targets; the tweets of held-out topics
and every dev text that early stopping scores are kept out of training.
"""

from __future__ import annotations

import logging
from pathlib import Path

from model_export.corpus import (
    Example,
    anonymise_handles,
    dev_tweet_trains,
    held_out_topic_texts,
    mitchell_examples,
    ner_examples,
    sentiment_examples,
    text_key,
    tmsc_examples,
    topic_examples,
    unlabeled_token_lists,
)
from model_export.distill import DISTILL_TASK, distill_examples, with_teacher
from model_export.heads import NER_HEADS
from model_export.recipe import TrainConfig

log = logging.getLogger(__name__)


def load_training_sets(config: TrainConfig) -> dict[str, list[Example]]:
    """Training examples per task (optionally the first ``limit`` of each)."""
    shares = config.dev_shares
    sets = {
        head.dataset: ner_examples(config.data_dir, head.name, "train")
        + ([e for e in ner_examples(config.data_dir, head.name, "dev")
            if dev_tweet_trains(e.tokens, shares[head.name])] * config.dev_repeat
           if head.name in shares else [])
        for head in NER_HEADS
        if head.name != "targets"
    }
    sets["mitchell2013"] = [
        e for fold in config.mitchell_folds
        for e in mitchell_examples(config.data_dir, fold, "train")
    ]
    if config.tmsc_train:
        sets["tmsc"] = tmsc_examples(config.data_dir, "train")
    if config.teacher:
        unlabeled = unlabeled_token_lists(config.data_dir, config.unlabeled_files)
        if config.limit is not None:
            unlabeled = unlabeled[: config.limit]
        sets[DISTILL_TASK] = distill_examples(Path(config.teacher), unlabeled,
                                              config.work_dir / "distill")
    sets["sentiment"] = sentiment_examples(config.data_dir, "train", config.limit)
    sets["topic"] = topic_examples(config.data_dir, "train", config.limit)
    held_topics = held_out_topic_texts(config.data_dir, config.sentiment_dev_topics)
    for task in ("sentiment", "topic") if held_topics else ():
        kept = [e for e in sets[task] if text_key(e.tokens) not in held_topics]
        log.info("%s: %d training tweets of held-out topics leave training for the 4A dev "
                 "split", task, len(sets[task]) - len(kept))
        sets[task] = kept
    if config.anonymise_handles:
        sets["sentiment"] = [anonymise_handles(e) for e in sets["sentiment"]]
    if config.limit is not None:
        sets = {task: examples[: config.limit] for task, examples in sets.items()}
    held_out = held_out_texts(config)
    for task, examples in sets.items():
        kept = [e for e in examples if tuple(e.tokens) not in held_out]
        if len(kept) < len(examples):
            log.info("%s: dropped %d training texts that are in a dev set used for early "
                     "stopping", task, len(examples) - len(kept))
        sets[task] = kept
    if config.teacher and config.distill_labelled:
        labelled = {task: examples for task, examples in sets.items() if task != DISTILL_TASK}
        sets.update(with_teacher(labelled, Path(config.teacher), config.work_dir / "distill"))
    return sets


def held_out_texts(config: TrainConfig) -> set[tuple[str, ...]]:
    """Token sequences of the NER dev sets that early stopping scores.

    WNUT17 train holds 996 of WNUT16's 1,000 dev tweets (re-annotated): left in, the shared
    encoder memorises them and the WNUT16 dev score measures recall of seen text, not
    generalisation (52.5 dev vs 29.1 test for the first artifact).
    """
    shares = config.dev_shares
    return {
        tuple(e.tokens)
        for head in NER_HEADS
        if head.name != "targets"
        for e in ner_examples(config.data_dir, head.name, "dev")
        if not dev_tweet_trains(e.tokens, shares.get(head.name, 0.0))
    }
