"""A short multi-task training run on a slice of the real data: the loss must fall."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from model_export.embeddings import build_vocab
from model_export.heads import INPUT_NAMES, OUTPUT_NAMES
from model_export.model import TweetEnsemble, TweetTagger
from model_export.recipe import DEFAULT_RECIPE, recipe_config
from model_export.train import train, train_ensemble
from model_export.training_sets import load_training_sets
from stream.settings import Settings
from stream.textproc import Vocab

DATA = Settings().data_dir
MODEL_DIR = Settings().model_dir
DISTILLED = DEFAULT_RECIPE.with_name("distilled.toml")


@pytest.fixture
def one_torch_thread():
    """One intra-op thread, as ``tweetwatch train`` uses: extra OpenMP threads thrash when
    other tests or processes share the two cores."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def slice_vectors(sets: dict) -> tuple[Vocab, np.ndarray, float]:
    """A vocabulary of the training slice with random word vectors: what prepare_vocab gives
    train(), without the minutes of FastText."""
    vocab = build_vocab([e.tokens for examples in sets.values() for e in examples], 5000)
    matrix = np.random.default_rng(0).normal(0, 0.1, (len(vocab.words), 100)).astype(np.float32)
    return vocab, matrix, 0.0


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_short_training_run_lowers_the_loss(tmp_path: Path):
    if not (DATA / "wnut16").is_dir():
        pytest.fail(f"shared data not found at {DATA} (set TWEETWATCH_DATA_DIR)")
    # The distillation recipe, with the shipped artifact as the teacher (any artifact with
    # these heads can teach).
    config = recipe_config(DATA, recipe=DISTILLED, teacher=str(MODEL_DIR), work_dir=tmp_path,
                           limit=32,
                           epochs=10, evaluate_dev=False, dropout=0.0, word_dropout=0.0,
                           lowercase_prob=0.0)
    sets = load_training_sets(config)
    prepared = slice_vectors(sets)
    vocab = prepared[0]
    result = train(config, prepared)
    # limit=32 = one batch per task (WNUT16/17 oversampled twice): the same 10 batches an
    # epoch.
    assert sorted(sets) == ["btc", "distill", "mitchell2013", "sentiment", "tmsc", "topic",
                            "wnut16", "wnut17"]
    assert all(len(examples) == 32 for examples in sets.values())
    losses = [h["train_loss"] for h in result.history]
    assert len(losses) == 10 and len(result.losses) == 100
    assert losses[-1] < 0.5 * losses[0]
    feeds = vocab.encode([["hello", "world"]])
    outputs = result.model(*(torch.from_numpy(feeds[n]) for n in INPUT_NAMES))
    assert len(outputs) == len(OUTPUT_NAMES)


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_frozen_word_vectors_with_own_bag_of_words_table(tmp_path: Path):
    """embedding_lr_scale=0 keeps the FastText rows exactly; with --bow-own-table the tweet
    head's own table (bow_dim) is what learns word polarities."""
    config = recipe_config(DATA, teacher="", work_dir=tmp_path, limit=32, epochs=2,
                         evaluate_dev=False, embedding_lr_scale=0.0, bow_dim=8,
                         bow_from_vectors=False)
    sets = load_training_sets(config)
    prepared = slice_vectors(sets)
    vocab, matrix, _ = prepared
    result = train(config, prepared)
    model = result.model
    assert np.array_equal(model.word_embedding.weight.detach().numpy(), matrix)
    assert model.bow_embedding is not None and model.bow_embedding.weight.shape[1] == 8
    assert model.tweet_hidden.in_features == 2 * config.hidden + 8
    rows = sorted({i for e in sets["sentiment"] for i in vocab.encode([e.tokens])["word_ids"][0]}
                  - {0, 1})
    weights = model.bow_embedding.weight.detach()
    torch.manual_seed(config.seed)  # train() builds its model right after seeding
    initial = TweetTagger(model.config).bow_embedding.weight.detach()
    unused = sorted(set(range(2, len(vocab.words))) - set(rows))[:50]
    assert torch.equal(initial[unused], weights[unused])  # the same starting table...
    assert not torch.allclose(initial[rows], weights[rows])  # ...moved where tweets were read
    assert float(weights[0].abs().sum()) == 0.0  # padding row stays zero
    assert model.word_embedding.weight.grad is None  # frozen: never part of the optimiser


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_bag_of_words_from_the_word_vectors_folds_into_one_table(tmp_path: Path,
                                                                 monkeypatch):
    """bow_from_vectors: words the sentiment tweets never hold keep a zero residual, so their
    bag row is their projected FastText vector; after training the projection is folded
    into the table and the network computes what it computed before the fold."""
    config = recipe_config(DATA, teacher="", work_dir=tmp_path, limit=32, epochs=2,
                         evaluate_dev=False, bow_dim=8, bow_from_vectors=True)
    sets = load_training_sets(config)
    prepared = slice_vectors(sets)
    vocab, matrix, _ = prepared
    seen = {i for e in sets["sentiment"] for i in vocab.encode([e.tokens])["word_ids"][0]}
    unused = sorted(set(range(2, len(vocab.words))) - seen)[:50]

    captured: dict[str, torch.Tensor] = {}
    original_fold = TweetTagger.fold_bow_projection

    def spy(model: TweetTagger) -> None:
        assert model.bow_project is not None
        captured["residual"] = model.bow_embedding.weight.detach().clone()
        captured["projection"] = model.bow_project.weight.detach().clone()
        feeds = vocab.encode([e.tokens for e in sets["sentiment"][:8]])
        model.eval()
        captured["before"] = model(*(torch.from_numpy(feeds[n]) for n in INPUT_NAMES))[-1]
        original_fold(model)
        captured["after"] = model(*(torch.from_numpy(feeds[n]) for n in INPUT_NAMES))[-1]

    monkeypatch.setattr(TweetTagger, "fold_bow_projection", spy)
    model = train(config, prepared).model
    assert float(captured["residual"][unused].abs().sum()) == 0.0  # never read: still zero
    assert float(captured["residual"][sorted(seen - {0, 1})].abs().sum()) > 0.0
    assert torch.allclose(captured["before"], captured["after"], atol=1e-5)
    # The served table: each unseen word's row is its vector through the learnt projection.
    expected = torch.from_numpy(matrix[unused]) @ captured["projection"].T
    assert torch.allclose(model.bow_embedding.weight.detach()[unused], expected, atol=1e-6)
    assert model.bow_project is None and not model.config.bow_from_vectors
    # What the card stores rebuilds the folded network: no projection, same parameter names.
    rebuilt = TweetTagger(model.config)
    assert set(rebuilt.state_dict()) == set(model.state_dict())


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_ensemble_trains_one_network_per_encoder_on_one_word_table(tmp_path: Path):
    config = recipe_config(DATA, teacher="", work_dir=tmp_path, limit=32, epochs=1,
                         evaluate_dev=False, encoders=("idcnn", "bilstm"))
    sets = load_training_sets(config)
    prepared = slice_vectors(sets)
    matrix = prepared[1]
    result = train_ensemble(config, prepared)
    assert isinstance(result.model, TweetEnsemble)
    assert [m.encoder for m in result.members] == ["idcnn", "bilstm"]
    first, second = (m.model for m in result.members)
    assert first.lstm_forward is None and second.lstm_forward is not None
    assert second.word_embedding is first.word_embedding
    assert np.array_equal(first.word_embedding.weight.detach().numpy(), matrix)
    assert result.dev == {} and result.dev_objective is None
    # Members trained in two worker processes come out the same, weight for weight.
    parallel = train_ensemble(config, prepared, jobs=2)
    for alone, beside in zip(result.members, parallel.members, strict=True):
        for (name, value), (_, other) in zip(alone.model.state_dict().items(),
                                             beside.model.state_dict().items(), strict=True):
            assert torch.equal(value, other), name


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_a_member_with_its_own_seed_is_that_seed_s_network(tmp_path: Path):
    config = recipe_config(DATA, teacher="", work_dir=tmp_path, limit=32, epochs=1, seed=13,
                         evaluate_dev=False, encoders=("idcnn", "idcnn:14"))
    sets = load_training_sets(config)
    prepared = slice_vectors(sets)
    result = train_ensemble(config, prepared)
    assert [(m.encoder, m.seed) for m in result.members] == [("idcnn", 13), ("idcnn", 14)]
    alone = train(replace(config, seed=14, encoders=("idcnn",)), prepared)
    same, other = result.members[1].model.state_dict(), result.members[0].model.state_dict()
    for name, value in alone.model.state_dict().items():
        assert torch.equal(value, same[name]), name
    assert not torch.equal(same["project.weight"], other["project.weight"])
