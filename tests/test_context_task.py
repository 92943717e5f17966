"""Masked-word prediction on the unlabeled tweets (model_export.context_task)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model_export.context_task import (
    TASK,
    ContextPredictor,
    mask_positions,
    unlabeled_examples,
)
from model_export.heads import INPUT_NAMES
from model_export.model import ModelConfig, TweetTagger
from model_export.train import TrainConfig, load_training_sets, train
from stream.settings import Settings
from tests.test_model_training import slice_vectors

DATA = Settings().data_dir


def test_mask_hides_known_real_tokens_only_and_at_least_one_per_tweet():
    torch.manual_seed(0)
    word_ids = torch.tensor([[5, 1, 7, 9, 0, 0], [1, 1, 0, 0, 0, 0], [4, 6, 8, 3, 2, 9]])
    lengths = torch.tensor([4, 2, 6])
    for _ in range(50):
        hidden = mask_positions(word_ids, lengths, rate=0.15)
        assert not hidden[word_ids <= 1].any()  # padding and unknown words are never targets
        assert hidden[0].any() and hidden[2].any()
        assert not hidden[1].any()  # nothing known to hide
    share = torch.stack([mask_positions(word_ids, lengths, 0.5)[2] for _ in range(400)])
    assert 0.4 < share.float().mean().item() < 0.6


def test_unlabeled_tweets_become_context_examples():
    if not (DATA / "unlabeled" / "tweets.txt").is_file():
        pytest.fail(f"shared data not found at {DATA} (set TWEETWATCH_DATA_DIR)")
    examples = unlabeled_examples(DATA)
    assert len(examples) > 100_000
    assert all(e.task == TASK and len(e.tokens) >= 3 and e.ner_tags is None
               for e in examples[:1000])


def test_the_hidden_word_cannot_leak_through_its_characters():
    """The encoder state at a hidden position must not depend on the hidden word."""
    torch.manual_seed(0)
    model = TweetTagger(ModelConfig(n_words=50, n_chars=30, word_dim=8, hidden=12,
                                    dilations=(1,), encoder="idcnn")).eval()
    predictor = ContextPredictor(12, 8)
    captured = []
    model.encode = lambda w, c, n, inner=model.encode: captured.append((w, c)) or inner(w, c, n)
    feeds = {"word_ids": torch.tensor([[3, 4, 5]]), "char_ids": torch.randint(2, 30, (1, 3, 4)),
             "lengths": torch.tensor([3])}
    predictor.loss(model, feeds, rate=0.99)
    words, chars = captured[0]
    assert (words == 1).all() and (chars == 0).all()


@pytest.mark.slow
def test_context_loss_falls_and_the_network_exports_unchanged(tmp_path: Path):
    """Training with the context task: its batches join each epoch, the predictor learns,
    and the network keeps the outputs the exporter knows."""
    if not (DATA / "wnut16").is_dir():
        pytest.fail(f"shared data not found at {DATA} (set TWEETWATCH_DATA_DIR)")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = TrainConfig(data_dir=DATA, work_dir=tmp_path, limit=32, epochs=6,
                             evaluate_dev=False, dropout=0.0, word_dropout=0.0,
                             lowercase_prob=0.0, context_per_epoch=32, encoders=("idcnn",))
        sets = load_training_sets(config)
        assert len(sets[TASK]) == 32
        result = train(config, slice_vectors(sets))
    finally:
        torch.set_num_threads(previous)
    # The eight batches an epoch of the short run in test_model_training, and one of context.
    assert len(result.losses) == 6 * 9
    assert result.history[-1]["train_loss"] < 0.6 * result.history[0]["train_loss"]
    # The predictor trained beside the network, not inside it.
    assert set(result.model.state_dict()) == set(TweetTagger(result.model.config).state_dict())
    feeds = result.vocab.encode([["hello", "world"]])
    outputs = result.model(*(torch.from_numpy(feeds[n]) for n in INPUT_NAMES))
    assert np.isfinite(outputs[0].detach().numpy()).all()


def test_context_options_are_checked():
    with pytest.raises(ValueError, match="context-mask"):
        TrainConfig(data_dir=DATA, context_mask=1.0)
    with pytest.raises(ValueError, match="context-per-epoch"):
        TrainConfig(data_dir=DATA, context_per_epoch=-1)
