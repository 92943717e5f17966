"""Partial labels for one NER head from another corpus's annotations.

WNUT16 train holds 2,394 tweets (1,496 mentions); BTC holds 6,338 more tweets whose PER, LOC
and ORG spans say a lot about WNUT16's person, geo-loc and company types, but not exactly
(a BTC ``PER`` may be a WNUT16 ``musicartist``, a BTC ``O`` may be a WNUT16 ``product``).
So a BTC token does not get one WNUT16 tag; it gets the *set* of WNUT16 tags its BTC tag
allows, and the loss is the negative log of the probability mass the head puts on that set
(the marginal likelihood of partial labels). Where the corpora agree the head learns as from
its own data; where they do not, it is left free.

WNUT16 and WNUT17 train are the same tweets (WNUT17 re-annotates WNUT16 train + dev), so they
add no text to each other; only BTC transfers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from model_export.heads import HEAD_BY_NAME

OUTSIDE = "O"

# source head -> target head -> source type (or "O") -> target types allowed ("O" allowed too
# where listed).
TYPE_MAPS: dict[str, dict[str, dict[str, tuple[str, ...]]]] = {
    "btc": {
        "wnut16": {
            "PER": ("person", "musicartist"),
            "LOC": ("geo-loc", "facility"),
            "ORG": ("company", "sportsteam", "musicartist", "other"),
            OUTSIDE: (OUTSIDE, "product", "movie", "tvshow", "other"),
        },
        "wnut17": {
            "PER": ("person",),
            "LOC": ("location",),
            "ORG": ("corporation", "group"),
            OUTSIDE: (OUTSIDE, "product", "creative-work"),
        },
    },
}


def allowed_matrix(source: str, target: str) -> np.ndarray:
    """``[source tags, target tags]`` booleans: which target tags a source tag allows.

    ``B-X`` allows ``B-`` of the types X maps to, ``I-X`` their ``I-``; a source ``O`` allows
    ``O`` and both tags of the types the source scheme does not annotate.
    """
    mapping = TYPE_MAPS[source][target]
    source_tags = HEAD_BY_NAME[source].tags
    target_tags = HEAD_BY_NAME[target].tags
    index = {tag: i for i, tag in enumerate(target_tags)}
    table = np.zeros((len(source_tags), len(target_tags)), dtype=bool)
    for row, tag in enumerate(source_tags):
        if tag == OUTSIDE:
            for kind in mapping[OUTSIDE]:
                if kind == OUTSIDE:
                    table[row, index[OUTSIDE]] = True
                else:
                    table[row, index[f"B-{kind}"]] = table[row, index[f"I-{kind}"]] = True
            continue
        prefix, kind = tag.split("-", 1)
        for mapped in mapping[kind]:
            table[row, index[OUTSIDE] if mapped == OUTSIDE else index[f"{prefix}-{mapped}"]] = True
    return table


def transfer_pairs(sources: Mapping[str, Sequence[str]]) -> list[tuple[str, str]]:
    """(source, target) head pairs, checked against :data:`TYPE_MAPS`."""
    pairs = []
    for source, targets in sources.items():
        for target in targets:
            if target not in TYPE_MAPS.get(source, {}):
                raise ValueError(f"no type map from {source} to {target}")
            pairs.append((source, target))
    return pairs
