"""The unknown-word measurement that sizes --entity-word-dropout."""

from __future__ import annotations

import pytest

from model_export.readers import TaggedSentence
from model_export.vocab_coverage import coverage, coverage_table, main
from stream.settings import Settings
from stream.textproc import PAD, UNK, Vocab


def test_coverage_counts_unknown_entity_tokens_the_way_the_runtime_looks_them_up():
    vocab = Vocab([PAD, UNK, "in", "chicago", "kmart"], [PAD, UNK])
    sentences = [
        TaggedSentence(["Shooting", "in", "Chicago"], ["O", "O", "B-geo-loc"]),
        TaggedSentence(["#Kmart", "Wendy", "'s"], ["B-company", "B-company", "I-company"]),
    ]
    counts = coverage(vocab, sentences)
    # "#Kmart" falls back to "kmart"; "Wendy" and "'s" are unknown, and so is "Shooting".
    assert (counts.sentences, counts.entity_tokens, counts.entity_unknown) == (2, 4, 2)
    assert (counts.tokens, counts.unknown) == (6, 3)
    assert counts.entity_unknown_share == 0.5


def test_the_served_vocabulary_knows_training_names_better_than_new_ones(capsys):
    data_dir, model_dir = Settings().data_dir, Settings().model_dir
    if not (data_dir / "wnut16").is_dir():
        pytest.fail(f"shared data not found at {data_dir} (set TWEETWATCH_DATA_DIR)")
    rows = {(d, s): c for d, s, c in
            coverage_table(Vocab.load(model_dir / "vocab.json"), data_dir)}
    assert {d for d, _ in rows} == {"wnut16", "wnut17", "btc"}
    for dataset in ("wnut16", "wnut17", "btc"):
        train, dev = rows[dataset, "train"], rows[dataset, "dev"]
        assert train.entity_unknown_share < dev.entity_unknown_share
    main(["--model-dir", str(model_dir), "--data-dir", str(data_dir)])
    assert "| wnut16 | train | 2,394 | 2,462 |" in capsys.readouterr().out


def test_a_folder_without_a_vocabulary_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--model-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().endswith(f"no vocab.json in {tmp_path}")
