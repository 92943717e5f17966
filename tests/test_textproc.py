"""The shared tokenizer / normaliser / vocabulary: what training and serving both rely on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model_export.readers import read_lines, read_sentiment_tsv
from stream.settings import Settings
from stream.textproc import (
    MAX_CHARS_PER_TOKEN,
    PAD,
    UNK,
    Token,
    Vocab,
    entity_key,
    normalize,
    tokenize,
)

DATA = Settings().data_dir


@pytest.fixture(scope="module")
def real_tweets() -> list[str]:
    if not (DATA / "sentiment").is_dir():
        pytest.fail(f"shared data not found at {DATA} (set TWEETWATCH_DATA_DIR)")
    tweets = [r.text for r in read_sentiment_tsv(DATA / "sentiment" / "test.tsv")[:3000]]
    lines = read_lines(DATA / "unlabeled" / "tweets.txt")
    tweets += [next(lines) for _ in range(3000)]
    return tweets


def test_tokens_round_trip_to_their_character_spans(real_tweets: list[str]):
    for text in real_tweets:
        previous_end = 0
        for token in tokenize(text):
            assert text[token.start : token.end] == token.text
            assert token.start >= previous_end and token.end > token.start
            assert text[previous_end : token.start].strip() == ""  # only spaces are dropped
            previous_end = token.end
        assert text[previous_end:].strip() == ""


def test_fast_and_invisible_aware_paths_agree(real_tweets: list[str]):
    """A tweet with no invisible character takes the fast path; with one added between two
    tokens it takes the careful path, which must give the same tokens (the invisible run is
    no token) shifted by one character."""
    for text in real_tweets[:2000]:
        tokens = tokenize(text)
        assert all(type(t) is Token for t in tokens)
        if not tokens:
            continue
        cut = tokens[0].end
        marked = text[:cut] + " \u200b" + text[cut:]
        shifted = [tokens[0]] + [Token(t.text, t.start + 2, t.end + 2) for t in tokens[1:]]
        assert tokenize(marked) == shifted


def test_tweet_tokens_stay_whole():
    text = "@Delta lost my bag!!! #fail 😡😡 https://t.co/x1 :( soooo bad"
    tokens = [t.text for t in tokenize(text)]
    assert tokens == ["@Delta", "lost", "my", "bag", "!", "!", "!", "#fail", "😡", "😡",
                      "https://t.co/x1", ":(", "soooo", "bad"]


def test_normalize_and_entity_key():
    assert normalize("Sooooo") == normalize("sooooooo") == "soo"
    assert normalize("https://t.co/abc") == "<url>"
    assert normalize("2019") == "0000"
    assert entity_key("@Microsoft") == entity_key("Microsoft's") == "microsoft"
    assert entity_key("Bank of America") == entity_key("#BankOfAmerica") == "bankofamerica"


def _reference_encode(vocab: Vocab, batch: list[list[str]]) -> dict[str, np.ndarray]:
    """The straightforward per-token loop that the vectorised encode must equal."""
    longest = max((len(toks) for toks in batch), default=0) or 1
    chars = max((min(len(t), MAX_CHARS_PER_TOKEN) for ts in batch for t in ts), default=1) or 1
    words = np.zeros((len(batch), longest), np.int64)
    char_ids = np.zeros((len(batch), longest, chars), np.int64)
    lengths = np.array([len(toks) for toks in batch], np.int64)
    for i, tokens in enumerate(batch):
        for j, tok in enumerate(tokens):
            words[i, j] = vocab.word_id(tok)
            ids = vocab.char_ids(tok)
            char_ids[i, j, : len(ids)] = ids
    return {"word_ids": words, "char_ids": char_ids, "lengths": lengths}


def test_encode_matches_per_token_lookup(real_tweets: list[str], tmp_path: Path):
    token_lists = [[t.text for t in tokenize(text)] for text in real_tweets]
    vocab = Vocab.build(token_lists[:2000])
    batches = [token_lists[:64], token_lists[2500:2501], [[], ["x" * 40, "@Delta"]], [[]]]
    for batch in batches:
        got, want = vocab.encode(batch), _reference_encode(vocab, batch)
        for name, value in want.items():
            assert got[name].dtype == np.int64
            np.testing.assert_array_equal(got[name], value, err_msg=name)
    vocab.save(tmp_path / "vocab.json")
    loaded = Vocab.load(tmp_path / "vocab.json")
    assert loaded.words[:2] == [PAD, UNK] and loaded.words == vocab.words
    np.testing.assert_array_equal(loaded.encode(batches[0])["char_ids"],
                                  vocab.encode(batches[0])["char_ids"])


def test_handles_fall_back_to_the_bare_word():
    vocab = Vocab([PAD, UNK, "delta"], [PAD, UNK, "d"])
    assert vocab.word_id("@Delta") == vocab.word_id("#delta") == vocab.word_id("DELTA") == 2
    assert vocab.word_id("united") == 1
