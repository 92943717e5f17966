"""Self-training data: the trained model's own confident NER tags on the unlabeled tweets.

The NER heads are limited by how few entities they see (WNUT16: 2,227 mentions in train and
dev): most test entities never occur in training, and telling a band from a person or a
stadium from a city needs the contexts those names are used in. The 139,756 unlabeled tweets
hold such contexts but no labels; ``--pseudo-label-epochs`` tags them with the trained model,
keeps the tags it is sure of, and trains further on them beside the gold data.

A tweet is kept when the head finds at least one entity in it and every token of every
entity it found is tagged with probability ``threshold`` or more; other tokens keep their tag
only where they are that sure too, and are otherwise unlabelled (``IGNORE``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tqdm import tqdm

from model_export.corpus import IGNORE, Example
from model_export.heads import HEAD_BY_NAME, INPUT_NAMES, NER_HEADS, OUTPUT_NAMES
from model_export.model import TweetTagger
from stream.inference import LabelSpace, bio_spans, softmax
from stream.textproc import Vocab

PSEUDO_PREFIX = "pseudo-"


def pseudo_task(head_name: str) -> str:
    """Batch task name of a head's pseudo-labelled examples."""
    return PSEUDO_PREFIX + head_name


def is_pseudo(task: str) -> bool:
    return task.startswith(PSEUDO_PREFIX)


def confident_tags(tags: Sequence[str], probs: np.ndarray, head_tags: Sequence[str],
                   threshold: float) -> list[int] | None:
    """Tag ids with unsure tokens as ``IGNORE``, or None when the tweet is not kept (no
    entity, or an entity token below ``threshold``)."""
    spans = bio_spans(list(tags))
    if not spans:
        return None
    sure = probs >= threshold
    if not all(sure[i] for start, end, _ in spans for i in range(start, end)):
        return None
    index = {tag: i for i, tag in enumerate(head_tags)}
    return [index[tag] if sure[i] else IGNORE for i, tag in enumerate(tags)]


def pseudo_label_examples(model: TweetTagger, vocab: Vocab, labels: LabelSpace,
                          token_lists: Sequence[Sequence[str]], heads: Sequence[str],
                          threshold: float, batch_size: int = 256) -> dict[str, list[Example]]:
    """Confident pseudo-labelled examples per head (task :func:`pseudo_task`)."""
    output_index = {head.name: OUTPUT_NAMES.index(head.output) for head in NER_HEADS}
    found: dict[str, list[Example]] = {pseudo_task(h): [] for h in heads}
    model.eval()
    order = sorted(range(len(token_lists)), key=lambda i: len(token_lists[i]))
    with torch.no_grad():
        for begin in tqdm(range(0, len(order), batch_size), desc="pseudo-labelling",
                          unit="batch"):
            batch = [list(token_lists[i]) for i in order[begin : begin + batch_size]]
            feeds = vocab.encode(batch)
            outputs = model(*(torch.from_numpy(feeds[n]) for n in INPUT_NAMES))
            named = {n: o.numpy() for n, o in zip(OUTPUT_NAMES, outputs, strict=True)}
            decoded = labels.decode(named, feeds["lengths"], heads)
            for head in heads:
                head_tags = HEAD_BY_NAME[head].tags
                probs = softmax(outputs[output_index[head]].numpy())
                for row, (tokens, analysis) in enumerate(zip(batch, decoded, strict=True)):
                    tags = analysis.tags[head]
                    chosen = probs[row, np.arange(len(tokens)),
                                   [head_tags.index(t) for t in tags]]
                    ids = confident_tags(tags, chosen, head_tags, threshold)
                    if ids is not None:
                        found[pseudo_task(head)].append(
                            Example(pseudo_task(head), tokens, head, ids))
    return found
