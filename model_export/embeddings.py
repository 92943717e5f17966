"""Word vectors trained with gensim on unlabeled tweets plus the training texts (no test text).

The vectors initialise the model's word embeddings, so tweet slang, hashtags and handles start
close to their neighbours instead of at random. Trained vectors are cached on disk (keyed by
the corpus and parameters) because the training run is otherwise dominated by them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from stream.textproc import MAX_CHARS_PER_TOKEN, PAD, UNK, Vocab, normalize

log = logging.getLogger(__name__)


def normalised_corpus(texts: Sequence[Sequence[str]]) -> list[list[str]]:
    """Sentences in vocabulary form (what the embedding table is indexed by)."""
    return [[normalize(tok) for tok in tokens] for tokens in texts]


def build_vocab(
    texts: Sequence[Sequence[str]],
    max_words: int,
    min_count: int = 2,
    min_char_count: int = 5,
) -> Vocab:
    """The most frequent ``max_words`` normalised words and the raw characters seen often."""
    words: Counter[str] = Counter()
    chars: Counter[str] = Counter()
    for tokens in texts:
        for tok in tokens:
            words[normalize(tok)] += 1
            chars.update(tok[:MAX_CHARS_PER_TOKEN])
    kept = [w for w, n in sorted(words.items(), key=lambda x: (-x[1], x[0])) if n >= min_count]
    kept_chars = [c for c, n in sorted(chars.items(), key=lambda x: (-x[1], x[0]))
                  if n >= min_char_count]
    return Vocab([PAD, UNK, *kept[:max_words]], [PAD, UNK, *kept_chars])


def train_vectors(
    sentences: list[list[str]],
    cache_dir: Path,
    dim: int,
    epochs: int,
    seed: int,
    workers: int = 1,
):
    """FastText (skip-gram, subword) vectors for the sentences, cached under ``cache_dir``.

    One worker thread by default: gensim's training is then the same bytes on every run of a
    seed (with two, thread scheduling changes the vectors, and a retrained model moved by
    up to 0.012 in SemEval-4A macro recall), at about twice the time.
    """
    from gensim.models import FastText
    from gensim.models.keyedvectors import KeyedVectors

    digest = hashlib.sha256()
    digest.update(json.dumps({"dim": dim, "epochs": epochs, "seed": seed,
                              "workers": workers}).encode())
    for sentence in sentences:
        digest.update(" ".join(sentence).encode("utf-8"))
        digest.update(b"\n")
    path = cache_dir / f"fasttext-{digest.hexdigest()[:16]}.kv"
    if path.is_file():
        log.info("using cached word vectors %s", path)
        return KeyedVectors.load(str(path))
    log.info("training FastText vectors on %d sentences (%d epochs)", len(sentences), epochs)
    model = FastText(
        vector_size=dim, window=5, min_count=2, sg=1, epochs=epochs, seed=seed,
        workers=workers, bucket=200_000,
    )
    model.build_vocab(corpus_iterable=sentences)
    model.train(corpus_iterable=sentences, total_examples=len(sentences), epochs=epochs)
    cache_dir.mkdir(parents=True, exist_ok=True)
    model.wv.save(str(path))
    return model.wv


def embedding_matrix(vocab: Vocab, vectors, dim: int, seed: int) -> tuple[np.ndarray, float]:
    """Rows for each vocabulary word (padding zero); returns the matrix and the coverage."""
    rng = np.random.default_rng(seed)
    matrix = rng.normal(0.0, 0.1, size=(len(vocab.words), dim)).astype(np.float32)
    matrix[0] = 0.0
    found = 0
    for i, word in enumerate(vocab.words[2:], start=2):
        # FastText builds words it did not keep from their character n-grams.
        matrix[i] = vectors[word]
        found += word in vectors.key_to_index
    return matrix, found / max(1, len(vocab.words) - 2)
