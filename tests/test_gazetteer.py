"""Gazetteer flags: what a listed name marks, the lexicon's filters, and a model that reads
them, exported and served with the same flags."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from model_export.embeddings import build_vocab
from model_export.export import export_onnx, parity
from model_export.heads import labels_document
from model_export.lexicon import COMMON_WORDS, GROUPS, load_gazetteer
from model_export.model import ModelConfig, TweetTagger
from model_export.readers import read_conll
from stream.gazetteer import GAZETTEER_FILE, Gazetteer
from stream.inference import Analyzer
from stream.settings import Settings
from stream.textproc import tokenize

DATA = Settings().data_dir


def _marks(gazetteer: Gazetteer, text: str) -> set[tuple[str, str]]:
    """(token, column name) pairs; a one-word name's column is the group name with ``:1``."""
    tokens = [t.text for t in tokenize(text)]
    groups = gazetteer.groups
    return {(tokens[i], groups[c % len(groups)] + (":1" if c >= len(groups) else ""))
            for i, c in gazetteer.flags(tokens)}


@pytest.fixture
def small() -> Gazetteer:
    return Gazetteer.from_names({
        "tvshow": ["The Walking Dead", "Friends"],
        "company": ["Apple", "Bank of America"],
    })


def test_multi_word_names_mark_every_token_case_insensitively(small: Gazetteer):
    assert _marks(small, "binge watching the WALKING dead tonight") == {
        ("the", "tvshow"), ("WALKING", "tvshow"), ("dead", "tvshow")}
    assert _marks(small, "The Walking Deadline") == set()  # token boundaries


def test_hashtags_handles_and_possessives_match(small: Gazetteer):
    assert _marks(small, "#TheWalkingDead is back") == {("#TheWalkingDead", "tvshow")}
    assert _marks(small, "@BankofAmerica fees again") == {("@BankofAmerica", "company")}
    assert _marks(small, "Apple's new phone") == {("Apple's", "company:1")}


def test_a_hashtag_marks_every_name_it_spells_in_any_order():
    """``#LadyKiller`` spells the film "Lady Killer" and the brand "Ladykiller": both columns,
    whichever the lists name first (the artifact's file is sorted, the lexicon is not)."""
    names = {"movie": ["Lady Killer"], "company": ["Ladykiller"]}
    forward = Gazetteer.from_names(names)
    backward = Gazetteer.from_names(dict(reversed(names.items())))
    assert _marks(forward, "#LadyKiller again") == {("#LadyKiller", "movie"),
                                                   ("#LadyKiller", "company:1")}
    assert _marks(backward, "#LadyKiller again") == {("#LadyKiller", "movie"),
                                                    ("#LadyKiller", "company:1")}


def test_one_word_names_have_their_own_columns(small: Gazetteer):
    assert small.width == 4
    assert _marks(small, "Friends at Bank of America") == {
        ("Friends", "tvshow:1"), ("Bank", "company"), ("of", "company"),
        ("America", "company")}


def test_encode_pads_and_save_load_round_trips(small: Gazetteer, tmp_path: Path):
    batch = [["I", "love", "Friends"], ["Bank", "of", "America", "sucks", "lol"]]
    flags = small.encode(batch, 6)
    assert flags.shape == (2, 6, 4) and flags.dtype == np.float32
    assert flags[0, 2].tolist() == [0, 0, 1, 0] and flags[1, :3, 1].tolist() == [1, 1, 1]
    assert flags[:, 5].sum() == 0
    small.save(tmp_path / GAZETTEER_FILE)
    first = (tmp_path / GAZETTEER_FILE).read_bytes()
    loaded = Gazetteer.load(tmp_path / GAZETTEER_FILE)
    assert loaded.groups == small.groups and loaded.names == small.names
    np.testing.assert_array_equal(loaded.encode(batch, 6), flags)
    loaded.save(tmp_path / "again.tsv.gz")
    assert (tmp_path / "again.tsv.gz").read_bytes() == first  # same lists, same bytes


def test_lexicon_drops_common_words_and_long_names(tmp_path: Path):
    for files in (*GROUPS.values(), COMMON_WORDS):
        for name in files:
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_text("", encoding="utf-8")
    (tmp_path / COMMON_WORDS[0]).write_text("home\ngoing\n", encoding="utf-8")
    (tmp_path / GROUPS["movie"][0]).write_text(
        "Home\nGoing Home\nHarold and Maude\nA Very Long Film Title With Eight Words\n",
        encoding="utf-8")
    gazetteer = load_gazetteer(tmp_path)
    assert gazetteer.names == {"harold and maude": 1 << list(GROUPS).index("movie")}
    (tmp_path / GROUPS["movie"][0]).unlink()
    with pytest.raises(FileNotFoundError, match="film.film"):
        load_gazetteer(tmp_path)


def test_a_model_reading_flags_exports_and_serves_them(small: Gazetteer, tmp_path: Path):
    if not (DATA / "wnut16").is_dir():
        pytest.fail(f"shared data not found at {DATA} (set TWEETWATCH_DATA_DIR)")
    sentences = [s.tokens for s in read_conll(DATA / "wnut16" / "dev.conll").sentences]
    sentences.append(["watching", "#TheWalkingDead", "at", "Bank", "of", "America"])
    torch.manual_seed(0)
    vocab = build_vocab(sentences[:300], max_words=2000)
    vocab.features = small
    model = TweetTagger(ModelConfig(n_words=len(vocab.words), n_chars=len(vocab.chars),
                                    gazetteer_width=small.width))
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    model.eval()
    export_onnx(model, vocab, tmp_path / "model.onnx", sentences[:8])
    assert parity(model, vocab, tmp_path / "model.onnx",
                  [sentences[:1], sentences[1:40], sentences[-3:]]) <= 1e-4
    # The flags move the outputs: zeroing them changes the tagger's logits.
    feeds = vocab.encode([sentences[-1]])
    with torch.no_grad():
        args = [torch.from_numpy(feeds[n]) for n in ("word_ids", "char_ids", "lengths")]
        flagged = model(*args, torch.from_numpy(feeds["gazetteer"]))[0]
        blank = model(*args, torch.zeros_like(torch.from_numpy(feeds["gazetteer"])))[0]
    assert not torch.allclose(flagged, blank)
    # Served from an artifact folder, the lists travel with it; without them it refuses.
    vocab.save(tmp_path / "vocab.json")
    (tmp_path / "labels.json").write_text(json.dumps(labels_document(True)), encoding="utf-8")
    small.save(tmp_path / GAZETTEER_FILE)
    analyzer = Analyzer(tmp_path)
    got = analyzer.run([sentences[-1]])
    with torch.no_grad():
        want = model(*args, torch.from_numpy(feeds["gazetteer"]))
    np.testing.assert_allclose(got["ner_logits"], want[0].numpy(), atol=1e-4)
    (tmp_path / GAZETTEER_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="gazetteer"):
        Analyzer(tmp_path)
