"""The check that tells whether this machine's vectors are the committed artifact's."""

from __future__ import annotations

import json

import numpy as np
import pytest

from research.rebuild_check import (
    artifact_word_table,
    compare_tables,
    main,
    stored_word_table,
)
from stream.settings import Settings
from stream.textproc import PAD, UNK, Vocab


@pytest.fixture
def vocab() -> Vocab:
    return Vocab([PAD, UNK, *(f"w{i}" for i in range(48))], [PAD, UNK])


@pytest.fixture
def matrix() -> np.ndarray:
    table = np.random.default_rng(0).normal(0.0, 0.1, size=(50, 100)).astype(np.float32)
    table[0] = 0.0
    return table


def test_the_same_vectors_stored_the_same_way_match_row_for_row(vocab, matrix):
    stored = stored_word_table(matrix, embedding_fp16=True, word_table_int8=True)
    match = compare_tables(vocab, stored, vocab, stored.copy())
    assert match.identical and match.rows_equal == 50 and match.max_abs_diff == 0.0


def test_skipping_the_fp16_rounding_changes_int8_rows(vocab, matrix):
    """Why the check rounds to fp16 first: the artifact's int8 rows were taken from the
    fp16-rounded table, and without that step some rows land on another int8 value."""
    exported = stored_word_table(matrix, embedding_fp16=True, word_table_int8=True)
    match = compare_tables(vocab, stored_word_table(matrix, False, True), vocab, exported)
    assert not match.identical and match.rows_equal < match.rows


def test_one_moved_vector_or_another_vocabulary_is_a_mismatch(vocab, matrix):
    exported = stored_word_table(matrix, True, True)
    moved = matrix.copy()
    moved[7] += 0.01
    match = compare_tables(vocab, stored_word_table(moved, True, True), vocab, exported)
    assert (match.rows_equal, match.identical) == (49, False)
    assert match.max_abs_diff > 0
    other = Vocab([PAD, UNK, *(f"v{i}" for i in range(48))], [PAD, UNK])
    match = compare_tables(other, exported, vocab, exported)
    assert (match.same_vocab, match.rows_equal, match.identical) == (False, 50, False)
    assert not compare_tables(vocab, exported[:40], vocab, exported).identical


def test_the_committed_word_table_reads_back_one_row_per_word():
    model_dir = Settings().model_dir
    card = json.loads((model_dir / "model_card.json").read_text(encoding="utf-8"))
    table = artifact_word_table(model_dir / "model.onnx")
    words = Vocab.load(model_dir / "vocab.json").words
    assert table.shape == (len(words), card["train_config"]["word_dim"])
    assert table.dtype == np.float32 and not table[0].any()  # the padding row
    # Stored again as the card says it was stored, the table keeps its values (int8 rows).
    assert card["train_config"]["word_table_int8"]
    again = stored_word_table(table, embedding_fp16=False, word_table_int8=True)
    assert np.allclose(again, table, rtol=0, atol=1e-6)


def test_a_folder_without_an_artifact_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--model-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().endswith(f"no model_card.json in {tmp_path}")
