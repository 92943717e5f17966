"""The model's heads: which dataset trains which output, and the tag set of each.

One shared encoder, separate NER heads per corpus (their type inventories disagree: WNUT16's ten
fine types, WNUT17's six emerging-entity types, BTC's PER/LOC/ORG), a target-span head learnt
from Mitchell 2013, token-level entity sentiment and tweet-level sentiment. The WNUT16 head
serves: its types (company, product, sportsteam, person, ...) are the ones reputation alerts
are about. ``labels.json`` written from here tells the runtime the same.
"""

from __future__ import annotations

from dataclasses import dataclass

from stream.predictions import SENTIMENTS


@dataclass(frozen=True, slots=True)
class NerHead:
    """An NER head: its ONNX output name, the corpus that trains it and its entity types."""

    name: str
    output: str
    dataset: str
    types: tuple[str, ...]

    @property
    def tags(self) -> list[str]:
        """BIO tags, ``O`` first."""
        return ["O"] + [f"{p}-{t}" for t in self.types for p in ("B", "I")]


NER_HEADS: tuple[NerHead, ...] = (
    NerHead(
        "wnut16",
        "ner_logits",
        "wnut16",
        ("company", "facility", "geo-loc", "movie", "musicartist", "other", "person",
         "product", "sportsteam", "tvshow"),
    ),
    NerHead(
        "wnut17",
        "ner_wnut17_logits",
        "wnut17",
        ("corporation", "creative-work", "group", "location", "person", "product"),
    ),
    NerHead("btc", "ner_btc_logits", "btc", ("LOC", "ORG", "PER")),
    NerHead("targets", "target_logits", "mitchell2013", ("TARGET",)),
)
SERVING_HEAD = "wnut16"
HEAD_BY_NAME = {head.name: head for head in NER_HEADS}
ENTITY_SENTIMENT_OUTPUT = "entity_sentiment_logits"
TWEET_SENTIMENT_OUTPUT = "tweet_sentiment_logits"
OUTPUT_NAMES: tuple[str, ...] = (
    *(head.output for head in NER_HEADS),
    ENTITY_SENTIMENT_OUTPUT,
    TWEET_SENTIMENT_OUTPUT,
)
INPUT_NAMES: tuple[str, ...] = ("word_ids", "char_ids", "lengths")


def labels_document() -> dict:
    """The content of ``labels.json``: heads, tags, outputs and which NER head serves."""
    return {
        "inputs": list(INPUT_NAMES),
        "ner_heads": {
            head.name: {"output": head.output, "dataset": head.dataset, "tags": head.tags}
            for head in NER_HEADS
        },
        "serving_ner_head": SERVING_HEAD,
        "entity_sentiment_output": ENTITY_SENTIMENT_OUTPUT,
        "tweet_sentiment_output": TWEET_SENTIMENT_OUTPUT,
        "sentiments": list(SENTIMENTS),
    }
