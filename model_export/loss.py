"""The multi-task loss: each batch contributes the losses its examples have labels for."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from model_export.corpus import IGNORE, Example
from model_export.distill import soft_loss
from model_export.heads import (
    ENTITY_SENTIMENT_OUTPUT,
    NER_HEADS,
    OUTPUT_NAMES,
    TWEET_SENTIMENT_OUTPUT,
)
from model_export.label_transfer import allowed_matrix, transfer_pairs
from model_export.recipe import TrainConfig


def class_weights(labels: Sequence[int], n_classes: int, power: float = 0.5) -> torch.Tensor:
    """Inverse-frequency weights to the given power (mean 1): rare classes count more; the
    default square root avoids the instability of full inverse-frequency weights."""
    counts = Counter(label for label in labels if label != IGNORE)
    raw = np.array([max(1, counts.get(c, 0)) ** -power for c in range(n_classes)])
    return torch.tensor(raw / raw.mean(), dtype=torch.float32)


class MultiTaskLoss:
    """Weighted sum of the losses a batch has labels for."""

    def __init__(self, sets: dict[str, list[Example]], config: TrainConfig) -> None:
        self.config = config
        entity_labels = [x for ex in sets["mitchell2013"] + sets["topic"] + sets.get("tmsc", [])
                         for x in (ex.entity_sentiment or [])]
        tweet_labels = [e.tweet_sentiment for e in sets["sentiment"]]
        self.entity = nn.CrossEntropyLoss(weight=class_weights(entity_labels, 3),
                                          ignore_index=IGNORE)
        self.tweet = nn.CrossEntropyLoss(
            weight=class_weights(tweet_labels, 3, config.tweet_class_power), ignore_index=IGNORE)
        self.ner = {
            head.name: nn.CrossEntropyLoss(
                weight=torch.tensor([config.ner_o_weight] + [1.0] * (len(head.tags) - 1)),
                ignore_index=IGNORE)
            for head in NER_HEADS
        }
        self.head_index = {head.name: i for i, head in enumerate(NER_HEADS)}
        self.transfer: dict[str, list[tuple[str, torch.Tensor]]] = {}
        if config.transfer_weight > 0:
            for source, target in transfer_pairs(config.transfer):
                self.transfer.setdefault(source, []).append(
                    (target, torch.from_numpy(allowed_matrix(source, target))))

    def partial_label_loss(self, logits: torch.Tensor, allowed: torch.Tensor,
                           feeds: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean -log P(tag in allowed set) over labelled tokens; @mentions are skipped (BTC
        tags handles as PER, WNUT does not), sets holding ``O`` weigh ``ner_o_weight``."""
        labels = feeds["ner"]
        valid = (labels != IGNORE) & ~feeds["mention"]
        sets = allowed[labels.clamp(min=0)]  # [B,T,K]
        nll = (torch.logsumexp(logits, -1)
               - torch.logsumexp(logits.masked_fill(~sets, float("-inf")), -1))
        weight = torch.where(sets[..., 0], self.config.ner_o_weight, 1.0) * valid
        nll = torch.where(valid, nll, torch.zeros_like(nll))
        return (nll * weight).sum() / weight.sum().clamp(min=1e-6)

    def __call__(self, outputs: tuple[torch.Tensor, ...], batch: Sequence[Example],
                 feeds: dict[str, torch.Tensor]) -> torch.Tensor:
        weights = self.config.task_weights
        named = dict(zip(OUTPUT_NAMES, outputs, strict=True))
        total = torch.zeros(())
        head = batch[0].ner_head
        if head is not None:
            logits = outputs[self.head_index[head]]
            total = total + weights["ner"] * self.ner[head](
                logits.reshape(-1, logits.shape[-1]), feeds["ner"].reshape(-1))
            for target, allowed in self.transfer.get(head, []):
                total = total + weights["ner"] * self.config.transfer_weight * (
                    self.partial_label_loss(outputs[self.head_index[target]], allowed, feeds))
        if batch[0].entity_sentiment is not None:
            logits = named[ENTITY_SENTIMENT_OUTPUT]
            total = total + weights["entity"] * self.entity(
                logits.reshape(-1, 3), feeds["entity"].reshape(-1))
        if batch[0].tweet_sentiment is not None:
            total = total + weights["tweet"] * self.tweet(
                named[TWEET_SENTIMENT_OUTPUT], feeds["tweet"])
        if "soft:rows" in feeds:
            total = total + self.distillation(named, feeds)
        return total

    def distillation(self, named: dict[str, torch.Tensor],
                     feeds: dict[str, torch.Tensor]) -> torch.Tensor:
        """Every head against the teacher's outputs (model_export.distill), over real tokens."""
        weights, temperature = self.config.head_weights, self.config.temperature
        steps = feeds["word_ids"].shape[1]
        rows = feeds["soft:rows"]
        mask = (torch.arange(steps).unsqueeze(0) < feeds["lengths"].unsqueeze(1)).to(
            torch.float32) * rows.unsqueeze(1)
        total = torch.zeros(())
        for head in NER_HEADS:
            total = total + weights["ner"] * soft_loss(
                named[head.output], feeds[f"soft:{head.output}"], temperature, mask)
        total = total + weights["entity"] * soft_loss(
            named[ENTITY_SENTIMENT_OUTPUT], feeds[f"soft:{ENTITY_SENTIMENT_OUTPUT}"],
            temperature, mask)
        return total + weights["tweet"] * soft_loss(
            named[TWEET_SENTIMENT_OUTPUT], feeds[f"soft:{TWEET_SENTIMENT_OUTPUT}"], temperature,
            rows)
