"""BTC annotations as partial labels for the WNUT heads: which tags a BTC tag allows, and the
marginal-likelihood loss on real BTC batches."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from model_export.batches import tensors
from model_export.corpus import ner_examples
from model_export.embeddings import build_vocab
from model_export.heads import HEAD_BY_NAME
from model_export.label_transfer import allowed_matrix, transfer_pairs
from model_export.loss import MultiTaskLoss
from model_export.recipe import recipe_config
from model_export.training_sets import load_training_sets
from stream.settings import Settings

DATA = Settings().data_dir
BTC = HEAD_BY_NAME["btc"].tags
WNUT16 = HEAD_BY_NAME["wnut16"].tags


def allowed(source_tag: str, table) -> set[str]:
    return {WNUT16[i] for i in table[BTC.index(source_tag)].nonzero()[0]}


def test_btc_tags_allow_the_wnut16_tags_they_can_mean():
    table = allowed_matrix("btc", "wnut16")
    assert allowed("B-PER", table) == {"B-person", "B-musicartist"}
    assert allowed("I-LOC", table) == {"I-geo-loc", "I-facility"}
    assert "B-company" in allowed("B-ORG", table) and "B-person" not in allowed("B-ORG", table)
    # BTC does not annotate products or films: a BTC O may be one of them, never a person.
    outside = allowed("O", table)
    assert {"O", "B-product", "I-movie"} <= outside
    assert "B-person" not in outside and "B-geo-loc" not in outside


def test_unknown_transfer_pair_is_refused():
    with pytest.raises(ValueError, match="no type map from wnut17 to btc"):
        transfer_pairs({"wnut17": ("btc",)})


@pytest.fixture(scope="module")
def btc_batch():
    if not (DATA / "btc").is_dir():
        pytest.fail(f"shared data not found at {DATA} (set TWEETWATCH_DATA_DIR)")
    examples = [e for e in ner_examples(DATA, "btc", "train")[:400]
                if any(t.startswith("@") for t in e.tokens) and any(e.ner_tags)][:16]
    config = recipe_config(DATA, teacher="", limit=50)
    vocab = build_vocab([e.tokens for e in examples], 1000)
    feeds = tensors(examples, vocab, config, random.Random(0), train=False)
    loss = MultiTaskLoss(load_training_sets(config), config)
    return examples, feeds, loss


def test_singleton_sets_give_the_weighted_cross_entropy(btc_batch):
    """Mapping every BTC tag to one WNUT16 tag turns the loss into plain cross-entropy."""
    _, feeds, loss = btc_batch
    logits = torch.randn(*feeds["ner"].shape, len(WNUT16),
                         generator=torch.Generator().manual_seed(0))
    target = {"O": "O", "B-PER": "B-person", "I-PER": "I-person", "B-LOC": "B-geo-loc",
              "I-LOC": "I-geo-loc", "B-ORG": "B-company", "I-ORG": "I-company"}
    table = torch.zeros(len(BTC), len(WNUT16), dtype=torch.bool)
    for source, tag in target.items():
        table[BTC.index(source), WNUT16.index(tag)] = True
    labels = feeds["ner"].masked_fill(feeds["mention"], -100)
    mapped = torch.tensor([WNUT16.index(target[BTC[i]]) for i in range(len(BTC))])
    wnut_labels = torch.where(labels >= 0, mapped[labels.clamp(min=0)], labels)
    expected = nn.CrossEntropyLoss(
        weight=torch.tensor([0.5] + [1.0] * (len(WNUT16) - 1)), ignore_index=-100)(
        logits.reshape(-1, len(WNUT16)), wnut_labels.reshape(-1))
    got = loss.partial_label_loss(logits, table, feeds)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_mentions_are_skipped_and_a_free_choice_costs_nothing(btc_batch):
    examples, feeds, loss = btc_batch
    assert feeds["mention"].any()
    logits = torch.randn(*feeds["ner"].shape, len(WNUT16), requires_grad=True)
    loss.partial_label_loss(logits, torch.from_numpy(allowed_matrix("btc", "wnut16")),
                            feeds).backward()
    assert logits.grad[feeds["mention"]].abs().max() == 0
    assert logits.grad[~feeds["mention"] & (feeds["ner"] >= 0)].abs().max() > 0
    free = torch.ones(len(BTC), len(WNUT16), dtype=torch.bool)
    assert loss.partial_label_loss(logits, free, feeds).item() == pytest.approx(0.0, abs=1e-6)


def test_btc_batches_train_the_wnut_heads_only_when_transfer_is_on(btc_batch):
    examples, feeds, _ = btc_batch
    outputs = tuple(torch.zeros(*feeds["ner"].shape, n, requires_grad=True)
                    for n in (len(WNUT16), len(HEAD_BY_NAME["wnut17"].tags), len(BTC),
                              len(HEAD_BY_NAME["targets"].tags), 3))
    outputs = (*outputs, torch.zeros(len(examples), 3, requires_grad=True))
    for weight, expect_grad in ((0.5, True), (0.0, False)):
        config = recipe_config(DATA, teacher="", limit=50, transfer_weight=weight)
        loss = MultiTaskLoss(load_training_sets(config), config)
        for out in outputs:
            out.grad = None
        loss(outputs, examples, feeds).backward()
        assert (outputs[0].grad is not None and outputs[0].grad.abs().sum() > 0) == expect_grad
        assert (outputs[1].grad is not None and outputs[1].grad.abs().sum() > 0) == expect_grad
        assert outputs[2].grad.abs().sum() > 0
