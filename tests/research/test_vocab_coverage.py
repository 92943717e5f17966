"""The unknown-word measurement that sizes --entity-word-dropout."""

from __future__ import annotations

import pytest

from model_export.corpus import held_out_topics
from model_export.readers import TaggedSentence
from research.vocab_coverage import (
    bag_coverage,
    bag_rows_read,
    coverage,
    coverage_table,
    holds_unread,
    main,
    sentiment_by_unread,
)
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
    main(["--model-dir", str(model_dir), "--data-dir", str(data_dir)], standalone_mode=False)
    assert "| wnut16 | train | 2,394 | 2,462 |" in capsys.readouterr().out


def test_a_folder_without_a_vocabulary_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--model-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().endswith(f"no vocab.json in {tmp_path}")


def test_bag_rows_count_as_read_only_where_a_4a_training_tweet_holds_their_word(tmp_path):
    vocab = Vocab([PAD, UNK, "@user", "good", "game", "awful", "referee"], [PAD, UNK])
    (tmp_path / "sentiment").mkdir()
    (tmp_path / "sentiment" / "train.tsv").write_text(
        "positive\t@somebody Good game\n", encoding="utf-8")
    read = bag_rows_read(vocab, tmp_path)
    # The handle is read as @user (as training writes it), "Good" also lower-cased.
    assert read == {2, 3, 4}
    tweets = [["awful", "game"], ["good", "game", "Kmart"], ["referee"]]
    counts = bag_coverage(vocab, tweets, read)
    assert (counts.tweets, counts.tweets_with_unread) == (3, 2)
    assert (counts.tokens, counts.unread, counts.unknown) == (6, 2, 1)
    assert holds_unread(vocab, ["awful"], read) and not holds_unread(vocab, ["Kmart"], read)


def test_held_out_topics_tweets_train_no_bag_row_and_print_as_a_split(tmp_path, capsys):
    """With ``--sentiment-dev-topics`` a held-out topic's tweets leave the training tweets,
    as they do in such a run, so their words count as untrained."""
    vocab = Vocab([PAD, UNK, "good", "game", "awful", "referee"], [PAD, UNK])
    (tmp_path / "sentiment").mkdir()
    (tmp_path / "sentiment" / "train.tsv").write_text(
        "positive\tGood game\nnegative\tawful referee\n", encoding="utf-8")
    topic = tmp_path / "targeted_sentiment" / "semeval2017_topic"
    topic.mkdir(parents=True)
    (topic / "train.tsv").write_text("negative\treferee\tawful referee\n", encoding="utf-8")
    assert held_out_topics(tmp_path, 0.99) == {"referee"}
    assert bag_rows_read(vocab, tmp_path, 0.99) == {2, 3}
    assert bag_rows_read(vocab, tmp_path) == {2, 3, 4, 5}
    for split in ("val", "test"):
        (tmp_path / "sentiment" / f"{split}.tsv").write_text("neutral\tgame\n",
                                                              encoding="utf-8")
    (tmp_path / "wnut16").symlink_to(Settings().data_dir / "wnut16")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    vocab.save(model_dir / "vocab.json")
    main(["--model-dir", str(model_dir), "--data-dir", str(tmp_path),
          "--sentiment-dev-topics", "0.99"], standalone_mode=False)
    assert "| held-out topics (0.99) | 1 | 100.0% | 0.0% | 100.0% |" in capsys.readouterr().out


def test_scores_split_by_untrained_bag_rows_cover_every_test_tweet(tmp_path, capsys):
    data_dir, model_dir = Settings().data_dir, Settings().model_dir
    if not (data_dir / "sentiment").is_dir():
        pytest.fail(f"shared data not found at {data_dir} (set TWEETWATCH_DATA_DIR)")
    small = tmp_path / "data"
    (small / "sentiment").mkdir(parents=True)
    for split, count in (("train", 2000), ("val", 40), ("test", 60)):
        lines = (data_dir / "sentiment" / f"{split}.tsv").read_text(
            encoding="utf-8").splitlines()[:count]
        (small / "sentiment" / f"{split}.tsv").write_text("\n".join(lines) + "\n",
                                                          encoding="utf-8")
    for corpus in ("wnut16", "wnut17", "btc"):
        (small / corpus).symlink_to(data_dir / corpus)
    vocab = Vocab.load(model_dir / "vocab.json")
    read = bag_rows_read(vocab, small)
    scores = sentiment_by_unread(model_dir, small, "test", read)
    assert scores["with"]["tweets"] > 0 and scores["without"]["tweets"] > 0
    assert scores["with"]["tweets"] + scores["without"]["tweets"] == 60
    assert all(0.0 <= row["macro_recall"] <= 1.0 for row in scores.values())
    main(["--model-dir", str(model_dir), "--data-dir", str(small), "--score"],
         standalone_mode=False)
    out = capsys.readouterr().out
    assert "| val | 40 |" in out and "| test | 60 |" in out
    assert f"| with an untrained bag row | {scores['with']['tweets']:,} |" in out


def test_without_4a_data_only_the_ner_table_prints_and_score_is_a_one_line_error(tmp_path,
                                                                                  capsys):
    data_dir, model_dir = Settings().data_dir, Settings().model_dir
    (tmp_path / "wnut16").symlink_to(data_dir / "wnut16")
    main(["--model-dir", str(model_dir), "--data-dir", str(tmp_path)], standalone_mode=False)
    out = capsys.readouterr().out
    assert "| wnut16 | train |" in out and "4A split" not in out
    with pytest.raises(SystemExit) as exit_info:
        main(["--model-dir", str(model_dir), "--data-dir", str(tmp_path), "--score"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().endswith(f"no sentiment/train.tsv under {tmp_path}")
