"""Masked-word prediction on the unlabeled tweets: a training-only task for the shared encoder.

The NER heads learn from about 10,000 labelled tweets, and most test entities are words no
labelled tweet holds (WNUT17 is built of them). What types a new name is mostly its context
("... tickets for X tonight"), and the 139,756 unlabeled tweets hold far more contexts than the
labelled sets. Here a share of each unlabeled tweet's tokens is hidden from the encoder (word
id and characters both, so nothing of the word itself gets through) and a linear map of the
encoder's state at that position must point towards the hidden word's frozen FastText vector.
That teaches the encoder what words fit a slot, the signal the heads type new names from
(Rei 2017, "Semi-supervised multitask learning for sequence labeling", did this with language
model losses).

The predictor is not part of the exported graph: it trains beside the network and is dropped.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch import nn

from model_export.corpus import Example, unlabeled_token_lists
from model_export.model import TweetTagger
from stream.textproc import UNK_ID

TASK = "context"


@functools.lru_cache(maxsize=2)
def unlabeled_examples(data_dir: Path) -> tuple[Example, ...]:
    """The unlabeled tweets as examples of the context task (tweets of fewer than three
    tokens have no context to learn from)."""
    return tuple(Example(TASK, tokens) for tokens in unlabeled_token_lists(data_dir)
                 if len(tokens) >= 3)


def mask_positions(word_ids: torch.Tensor, lengths: torch.Tensor, rate: float) -> torch.Tensor:
    """[B,T] bool: the tokens to hide, drawn at ``rate`` among the real tokens whose word is
    in the vocabulary (an unknown word has no vector to aim at); at least one per tweet that
    has such a token, so every tweet teaches something."""
    steps = word_ids.shape[1]
    real = torch.arange(steps).unsqueeze(0) < lengths.unsqueeze(1)
    known = real & (word_ids > UNK_ID)
    draw = torch.rand(word_ids.shape)
    chosen = known & (draw < rate)
    # The known token with the smallest draw, for tweets where nothing was drawn.
    fallback = draw.masked_fill(~known, 2.0).argmin(dim=1)
    empty = ~chosen.any(dim=1) & known.any(dim=1)
    chosen[empty, fallback[empty]] = True
    return chosen


class ContextPredictor(nn.Module):
    """A linear map from the encoder's token state to the word-vector space, trained with
    the cosine distance to the hidden word's frozen vector."""

    def __init__(self, hidden: int, word_dim: int) -> None:
        super().__init__()
        self.project = nn.Linear(hidden, word_dim)

    def loss(self, model: TweetTagger, feeds: dict[str, torch.Tensor],
             rate: float) -> torch.Tensor:
        """Mean cosine distance over the hidden tokens of a batch of unlabeled tweets."""
        word_ids, char_ids, lengths = feeds["word_ids"], feeds["char_ids"], feeds["lengths"]
        hidden = mask_positions(word_ids, lengths, rate)
        if not hidden.any():
            return torch.zeros(())
        targets = model.word_embedding(word_ids[hidden]).detach()
        states = model.encode(word_ids.masked_fill(hidden, UNK_ID),
                              char_ids.masked_fill(hidden.unsqueeze(2), 0), lengths)
        predicted = self.project(model.dropout(states.transpose(1, 2)[hidden]))
        return (1 - nn.functional.cosine_similarity(predicted, targets, dim=1)).mean()
