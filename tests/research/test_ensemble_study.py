"""The member study's cached means must score exactly what the exported ensemble would."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model_export.embeddings import build_vocab
from model_export.heads import (
    INPUT_NAMES,
    OUTPUT_NAMES,
    TWEET_SENTIMENT_OUTPUT,
    labels_document,
)
from model_export.model import ModelConfig, TweetEnsemble, TweetTagger
from model_export.predictor import torch_predictor
from model_export.readers import read_conll
from research.ensemble_study import MemberOutputs, card_topic_share, expand_subsets
from stream.inference import LabelSpace
from stream.settings import Settings

DATA = Settings().data_dir


def test_subsets_expand_and_bad_ones_say_why() -> None:
    assert expand_subsets(["0,2", "all"], 3) == [[0, 2], [0, 1, 2]]
    assert expand_subsets(["k=2"], 3) == [[0, 1], [0, 2], [1, 2]]
    with pytest.raises(ValueError, match="indices run from 0 to 2"):
        expand_subsets(["0,3"], 3)
    with pytest.raises(ValueError, match="expected member indices"):
        expand_subsets(["first"], 3)


def test_the_4a_dev_split_is_read_from_the_card(tmp_path: Path) -> None:
    """Rescoring an artifact scores 4A dev on the split it was trained against: the shipped
    card's held-out topics, val for a card from before the option (or no card)."""
    assert card_topic_share(Settings().model_dir) == 0.2
    (tmp_path / "model_card.json").write_text('{"train_config": {"seed": 15}}',
                                              encoding="utf-8")
    assert card_topic_share(tmp_path) == 0.0
    assert card_topic_share(tmp_path / "missing") == 0.0


def test_cached_mean_decodes_like_the_ensemble_and_shifts_like_a_bias() -> None:
    sentences = [s.tokens for s in read_conll(DATA / "wnut16" / "dev.conll").sentences][:200]
    vocab = build_vocab(sentences, max_words=3000)
    torch.manual_seed(0)
    members = [TweetTagger(ModelConfig(n_words=len(vocab.words), n_chars=len(vocab.chars),
                                       tweet_bow=True, encoder=e)) for e in ("idcnn", "bilstm")]
    with torch.no_grad():
        for member in members:
            for param in member.parameters():
                param.add_(torch.randn_like(param) * 0.1)
        members[1].word_embedding.weight.copy_(members[0].word_embedding.weight)
    labels = LabelSpace(labels_document())
    study = MemberOutputs(members, vocab, labels, batch_size=64)
    heads = list(labels.ner_heads)

    ensemble = TweetEnsemble(members).eval()
    expected = torch_predictor(ensemble, vocab, labels)(sentences, heads)
    got = study.predictor([0, 1])(sentences, heads)
    assert [a.tags for a in got] == [a.tags for a in expected]
    np.testing.assert_allclose(np.stack([a.tweet_probs for a in got]),
                               np.stack([a.tweet_probs for a in expected]), atol=1e-6)

    shift = np.array([0.7, -0.2, 0.1], dtype=np.float32)
    with torch.no_grad():
        for member in members:  # the same shift folded into every member's bias
            member.tweet_out.bias += torch.from_numpy(shift)
    shifted = torch_predictor(ensemble, vocab, labels)(sentences, heads)
    got = study.predictor([0, 1], {TWEET_SENTIMENT_OUTPUT: shift})(sentences, heads)
    np.testing.assert_allclose(np.stack([a.tweet_probs for a in got]),
                               np.stack([a.tweet_probs for a in shifted]), atol=1e-6)
    assert not np.allclose(np.stack([a.tweet_probs for a in got]),
                           np.stack([a.tweet_probs for a in expected]), atol=1e-3)


ARTIFACT = Settings().model_dir


@pytest.mark.slow
def test_export_of_two_members_serves_their_mean(tmp_path: Path) -> None:
    """A subset exported from the committed ensemble answers what its two networks' mean
    answers, is smaller, and carries a card with its own dev and test figures."""
    import onnxruntime as ort

    from research.ensemble_study import export_subset, load_members
    from stream.textproc import Vocab

    card = export_subset(ARTIFACT, [0, 2], tmp_path / "pair", DATA)
    assert [m["encoder"] for m in card["members"]] == ["idcnn", "idcnn-bilstm"]
    assert card["derived_from"]["members"] == [0, 2]
    assert card["export"]["parity_max_abs_diff"] <= 1e-4
    assert 50 < card["dev"]["objective"] < 70
    assert set(card["metrics"]) == {"fp32", "int8"}
    source_size = sum(p.stat().st_size for p in ARTIFACT.glob("model*.onnx"))
    assert sum(card["sizes_bytes"][n] for n in ("model.onnx", "model.int8.onnx")) < source_size

    members, _ = load_members([ARTIFACT])
    vocab = Vocab.load(ARTIFACT / "vocab.json")
    sentences = [s.tokens for s in read_conll(DATA / "wnut17" / "dev.conll").sentences][:64]
    feeds = vocab.encode(sentences)
    session = ort.InferenceSession(str(tmp_path / "pair" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(names, feeds), strict=True))
    with torch.no_grad():
        outputs = [members[k](*(torch.from_numpy(feeds[n]) for n in INPUT_NAMES))
                   for k in (0, 2)]
    for name, pair in zip(OUTPUT_NAMES, zip(*outputs, strict=True), strict=True):
        np.testing.assert_allclose(got[name], (pair[0] + pair[1]).numpy() / 2, atol=1e-4)


def test_study_arguments_fail_in_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    def study(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "research.ensemble_study", *args],
                              capture_output=True, text=True, check=False)

    for args, message in [
        (("export", str(ARTIFACT), "--subset", "0,9", "--out", str(tmp_path)),
         "member indices run from 0 to 2"),
        (("export", str(ARTIFACT), "--subset", "k=2", "--out", str(tmp_path)),
         "export takes one subset"),
        (("members", str(tmp_path)), "no model.onnx there"),
        (("members", str(ARTIFACT), "--subset", "0", "--dev-split", "wnut17:1.5"),
         "a dev split to train on is wnut16, wnut17 or btc"),
    ]:
        done = study(*args)
        assert done.returncode == 2, done.stderr
        assert message in done.stderr and "Traceback" not in done.stderr
