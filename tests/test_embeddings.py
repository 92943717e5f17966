"""FastText vectors: the same seed gives the same bytes, and the cache is keyed by what
decides them."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import numpy as np
import pytest

from model_export.embeddings import normalised_corpus, train_vectors
from model_export.readers import read_lines
from stream.settings import Settings
from stream.textproc import tokenize

DATA = Settings().data_dir


@pytest.fixture(scope="module")
def sentences() -> list[list[str]]:
    path = DATA / "unlabeled" / "tweets.txt"
    if not path.is_file():
        pytest.fail(f"shared data not found at {DATA} (set TWEETWATCH_DATA_DIR)")
    lines = list(islice(read_lines(path), 3000))
    return normalised_corpus([[t.text for t in tokenize(line)] for line in lines])


def test_one_worker_vectors_are_reproducible_and_cached(sentences, tmp_path: Path):
    first = train_vectors(sentences, tmp_path / "a", dim=16, epochs=1, seed=3)
    again = train_vectors(sentences, tmp_path / "b", dim=16, epochs=1, seed=3)
    assert np.array_equal(first.vectors, again.vectors)
    assert np.array_equal(first.vectors_ngrams, again.vectors_ngrams)
    cached = list((tmp_path / "a").glob("fasttext-*.kv"))
    assert len(cached) == 1
    assert np.array_equal(train_vectors(sentences, tmp_path / "a", dim=16, epochs=1,
                                        seed=3).vectors, first.vectors)
    other = train_vectors(sentences, tmp_path / "a", dim=16, epochs=1, seed=4)
    assert len(list((tmp_path / "a").glob("fasttext-*.kv"))) == 2  # a new seed, a new file
    assert not np.array_equal(other.vectors, first.vectors)
