"""Batches for training: shuffled single-task batches per epoch, and their tensors with the
training-time augmentation (lower-casing, entity spans as hashtags, word dropout)."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

import torch

from model_export.corpus import IGNORE, Example
from model_export.distill import DISTILL_TASK, soft_tensors
from model_export.heads import HEAD_BY_NAME
from model_export.recipe import TrainConfig
from stream.textproc import UNK_ID, Vocab


def epoch_batches(
    sets: dict[str, list[Example]], config: TrainConfig, rng: random.Random
) -> list[list[Example]]:
    """Shuffled single-task batches; the big sentiment sets are subsampled per epoch."""
    caps = {"sentiment": config.sentiment_per_epoch, "topic": config.topic_per_epoch,
            DISTILL_TASK: config.unlabeled_per_epoch}
    batches = []
    for task, examples in sets.items():
        chosen = list(examples) * config.oversample.get(task, 1)
        rng.shuffle(chosen)
        chosen = chosen[: caps.get(task, len(chosen))]
        for i in range(0, len(chosen), config.batch_size):
            batches.append(chosen[i : i + config.batch_size])
    rng.shuffle(batches)
    return batches


_HASHTAGGABLE = re.compile(r"^[^\W_]+$")


def hashtag_entities(example: Example, tags: Sequence[str], prob: float,
                     rng: random.Random) -> Example:
    """A copy of an NER example in which each entity span of plain words becomes, with
    probability ``prob``, a single hashtag of the same type (``#BoyleHeights``). The teacher's
    outputs (``soft``) stay only when nothing was rewritten: they no longer fit the tokens."""
    if not example.ner_tags or prob <= 0:
        return example
    names = [tags[t] for t in example.ner_tags]
    tokens: list[str] = []
    ids: list[int] = []
    i = 0
    while i < len(names):
        end = i + 1
        if names[i].startswith("B-"):
            while end < len(names) and names[end] == "I-" + names[i][2:]:
                end += 1
            span = example.tokens[i:end]
            if all(_HASHTAGGABLE.match(t) for t in span) and rng.random() < prob:
                tokens.append("#" + "".join(t[:1].upper() + t[1:] for t in span))
                ids.append(example.ner_tags[i])
                i = end
                continue
        tokens.extend(example.tokens[i:end])
        ids.extend(example.ner_tags[i:end])
        i = end
    if tokens == example.tokens:
        return example
    return Example(example.task, tokens, example.ner_head, ids)


CONTRAST_JOINS = (",", ".", "but", "while", "and", "|")


def target_polarities(example: Example) -> set[int]:
    """The polarities an entity-sentiment example labels."""
    return {p for p in example.entity_sentiment or () if p != IGNORE}


def contrast_pairs(batch: Sequence[Example], prob: float,
                   rng: random.Random) -> list[Example]:
    """A copy of a TMSC batch in which, with probability ``prob``, an example is followed by
    another of the batch whose targets carry a polarity it lacks ("Chelsea were brilliant, but
    Arsenal looked clueless"). The pooled tweet states are then the same for targets of
    opposite polarity, so only the states around each mention can tell them apart: the head
    must stop copying the tweet's sentiment. Teacher outputs are dropped from a joined text."""
    if prob <= 0:
        return list(batch)
    polarities = [target_polarities(e) for e in batch]
    out: list[Example] = []
    for example, own in zip(batch, polarities, strict=True):
        others = [e for e, theirs in zip(batch, polarities, strict=True)
                  if e is not example and theirs - own]
        if not own or not others or rng.random() >= prob:
            out.append(example)
            continue
        other = rng.choice(others)
        first, second = (example, other) if rng.random() < 0.5 else (other, example)
        tokens = [*first.tokens, rng.choice(CONTRAST_JOINS), *second.tokens]
        labels = [*(first.entity_sentiment or []), IGNORE, *(second.entity_sentiment or [])]
        out.append(Example(example.task, tokens, entity_sentiment=labels))
    return out


def tensors(
    batch: Sequence[Example], vocab: Vocab, config: TrainConfig, rng: random.Random, train: bool
) -> dict[str, torch.Tensor]:
    """Model inputs and padded labels for a batch, with lower-casing, hashtag rewriting and
    word dropout when training (Mitchell 2013 is lower-cased; the char-CNN must not depend on
    case alone)."""
    if train and config.contrast_prob > 0 and batch and batch[0].task == "tmsc":
        batch = contrast_pairs(batch, config.contrast_prob, rng)
    if train and config.hashtag_prob > 0:
        batch = [
            hashtag_entities(e, HEAD_BY_NAME[e.ner_head].tags, config.hashtag_prob, rng)
            if e.ner_head in config.hashtag_heads else e
            for e in batch
        ]
    token_lists = [
        [t.lower() for t in e.tokens] if train and rng.random() < config.lowercase_prob
        else e.tokens
        for e in batch
    ]
    feeds = {k: torch.from_numpy(v) for k, v in vocab.encode(token_lists).items()}
    steps = feeds["word_ids"].shape[1]

    def pad(seq: list[int] | None) -> list[int]:
        values = seq or []
        return values + [IGNORE] * (steps - len(values))

    feeds["ner"] = torch.tensor([pad(e.ner_tags) for e in batch])
    # Word ids read as UNK (the dropout draws only when on: the random stream of a recipe
    # without it stays the same).
    hidden = torch.zeros(feeds["word_ids"].shape, dtype=torch.bool)
    if train and config.word_dropout > 0:
        hidden |= torch.rand(hidden.shape) < config.word_dropout
    feeds["word_ids"] = feeds["word_ids"].masked_fill(hidden & (feeds["word_ids"] > UNK_ID),
                                                      UNK_ID)
    feeds["mention"] = torch.tensor(
        [[t.startswith("@") for t in e.tokens] + [False] * (steps - len(e.tokens))
         for e in batch], dtype=torch.bool)
    feeds["entity"] = torch.tensor([pad(e.entity_sentiment) for e in batch])
    feeds["tweet"] = torch.tensor(
        [IGNORE if e.tweet_sentiment is None else e.tweet_sentiment for e in batch]
    )
    if any(e.soft is not None for e in batch):
        feeds.update({f"soft:{name}": value
                      for name, value in soft_tensors(batch, steps).items()})
    return feeds
