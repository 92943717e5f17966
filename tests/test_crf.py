"""The CRF loss against brute-force enumeration of every tag path, and a --crf training run
whose learnt transition scores reach labels.json and the runtime decoding."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from model_export.crf import crf_nll, log_partition
from model_export.embeddings import build_vocab
from model_export.heads import HEAD_BY_NAME, labels_document
from model_export.train import TrainConfig, load_training_sets, model_labels, train
from stream.inference import LabelSpace, head_transitions, viterbi
from stream.settings import Settings

DATA = Settings().data_dir


def path_score(emissions: torch.Tensor, path: tuple[int, ...], start: torch.Tensor,
               trans: torch.Tensor) -> torch.Tensor:
    score = start[path[0]] + emissions[0, path[0]]
    for t in range(1, len(path)):
        score = score + trans[path[t - 1], path[t]] + emissions[t, path[t]]
    return score


@pytest.fixture
def chain() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return (torch.randn(2, 4, 3, generator=gen), torch.randn(3, generator=gen),
            torch.randn(3, 3, generator=gen))


def test_log_partition_sums_every_path_up_to_each_length(chain):
    emissions, start, trans = chain
    lengths = torch.tensor([4, 2])
    got = log_partition(emissions, lengths, start, trans)
    for row, length in enumerate(lengths.tolist()):
        scores = [path_score(emissions[row], p, start, trans)
                  for p in itertools.product(range(3), repeat=length)]
        assert torch.allclose(got[row], torch.logsumexp(torch.stack(scores), 0), atol=1e-5)


def test_nll_of_gold_and_partial_labels(chain):
    emissions, start, trans = chain
    lengths = torch.tensor([4, 4])
    gold = (0, 2, 2, 1)
    allowed = torch.zeros(2, 4, 3, dtype=torch.bool)
    allowed[0, torch.arange(4), torch.tensor(gold)] = True  # row 0: one gold path
    allowed[1] = True
    allowed[1, 1, 0] = False  # row 1: position 1 may be tag 1 or 2, the rest anything
    nll = crf_nll(emissions, allowed, lengths, start, trans)
    paths = list(itertools.product(range(3), repeat=4))
    for row in range(2):
        scores = torch.stack([path_score(emissions[row], p, start, trans) for p in paths])
        log_z = torch.logsumexp(scores, 0)
        if row == 0:
            expected = log_z - path_score(emissions[0], gold, start, trans)
        else:
            kept = torch.stack([s for s, p in zip(scores, paths, strict=True) if p[1] != 0])
            expected = log_z - torch.logsumexp(kept, 0)
        assert torch.allclose(nll[row], expected, atol=1e-4)


def test_a_label_sequence_the_constraints_forbid_costs_nothing():
    tags = HEAD_BY_NAME["btc"].tags  # O, B-LOC, I-LOC, ...
    start, trans = (torch.from_numpy(a) for a in head_transitions({"tags": tags})[:2])
    allowed = torch.zeros(1, 2, len(tags), dtype=torch.bool)
    allowed[0, 0, tags.index("O")] = True
    allowed[0, 1, tags.index("I-LOC")] = True  # I- after O: no legal path
    nll = crf_nll(torch.zeros(1, 2, len(tags)), allowed, torch.tensor([2]), start, trans)
    assert float(nll[0]) == 0.0


def test_learnt_scores_reach_labels_json_and_change_decoding():
    tags = HEAD_BY_NAME["btc"].tags
    size = len(tags)
    learnt = np.zeros((size, size), dtype=np.float32)
    learnt[tags.index("B-PER"), tags.index("I-PER")] = 5.0
    document = labels_document({"btc": {"start_scores": [0.0] * size,
                                        "transition_scores": learnt.tolist()}})
    space = LabelSpace(document)
    # Token 1 prefers O a little; the learnt B-PER -> I-PER score carries the span on.
    logits = np.zeros((1, 2, size), dtype=np.float32)
    logits[0, 0, tags.index("B-PER")] = 3.0
    logits[0, 1, tags.index("O")] = 1.0
    outputs = {"ner_btc_logits": logits, "tweet_sentiment_logits": np.zeros((1, 3)),
               "entity_sentiment_logits": np.zeros((1, 2, 3))}
    decoded = space.decode(outputs, np.array([2]), ["btc"])
    assert decoded[0].tags["btc"] == ["B-PER", "I-PER"]
    plain = LabelSpace(labels_document()).decode(outputs, np.array([2]), ["btc"])
    assert plain[0].tags["btc"] == ["B-PER", "O"]
    start, trans, is_learnt = head_transitions(document["ner_heads"]["btc"])
    assert is_learnt
    path = viterbi(logits, np.array([2]), start, trans).tolist()
    assert path == [[tags.index("B-PER"), tags.index("I-PER")]]
    with pytest.raises(ValueError, match="CRF scores of shape"):
        head_transitions({"tags": tags, "start_scores": [0.0],
                          "transition_scores": learnt.tolist()})


@pytest.mark.slow
def test_crf_training_learns_transitions(tmp_path: Path):
    if not (DATA / "wnut16").is_dir():
        pytest.fail(f"shared data not found at {DATA} (set TWEETWATCH_DATA_DIR)")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = TrainConfig(data_dir=DATA, work_dir=tmp_path, limit=32, epochs=4,
                             evaluate_dev=False, crf=True)
        sets = load_training_sets(config)
        vocab = build_vocab([e.tokens for examples in sets.values() for e in examples], 5000)
        matrix = np.random.default_rng(0).normal(0, 0.1, (len(vocab.words), 100)).astype(
            np.float32)
        result = train(config, (vocab, matrix, 0.0))
    finally:
        torch.set_num_threads(previous)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0]
    scores = result.model.transition_scores()
    assert set(scores) == {"wnut16", "wnut17", "btc", "targets"}
    tags = HEAD_BY_NAME["wnut16"].tags
    trans = np.array(scores["wnut16"]["transition_scores"])
    assert trans.shape == (len(tags), len(tags)) and np.abs(trans).max() > 0
    space = model_labels(result.model)
    assert space.document["ner_heads"]["wnut16"]["transition_scores"] == trans.tolist()
