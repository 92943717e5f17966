"""Data readers on the real shared files and on malformed input."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_export.corpus import locate_target, mitchell_examples, topic_examples
from model_export.readers import (
    DataFormatError,
    bieos_spans,
    read_conll,
    read_sentiment_tsv,
)
from stream.settings import Settings

DATA = Settings().data_dir


@pytest.fixture(scope="module")
def data_dir() -> Path:
    if not (DATA / "wnut16").is_dir():
        pytest.fail(f"shared data not found at {DATA} (set TWEETWATCH_DATA_DIR)")
    return DATA


@pytest.mark.parametrize(
    ("name", "count"),
    [("wnut16/train", 2394), ("wnut16/test", 3850), ("wnut17/train", 3394),
     ("wnut17/test", 1287), ("btc/train", 6338)],
)
def test_conll_sentence_counts_match_the_data_readme(data_dir: Path, name: str, count: int):
    parsed = read_conll(data_dir / f"{name}.conll")
    assert len(parsed.sentences) == count
    assert all(len(s.tokens) == len(s.tags) > 0 for s in parsed.sentences)
    assert parsed.skipped == []


def test_btc_test_broken_url_is_skipped_and_reported(data_dir: Path):
    parsed = read_conll(data_dir / "btc" / "test.conll")
    assert any(":13045: whitespace-only line" in s for s in parsed.skipped)
    assert any(":13046: empty token" in s for s in parsed.skipped)
    # The sentence goes on after the skipped lines instead of being split or dropped.
    sentence = next(s for s in parsed.sentences if "tps://t.co/PSleTSIEmD" in s.tokens)
    assert sentence.tokens[sentence.tokens.index("tps://t.co/PSleTSIEmD") - 1] != ""
    assert all(tok.strip() for s in parsed.sentences for tok in s.tokens)


def test_skipped_line_is_logged_once_per_process(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    # Training rereads the dev files every epoch: the warning once, the record every time.
    path = tmp_path / "quirk.conll"
    path.write_text("Paris\tB-LOC\n\tO\nrocks\tO\n", encoding="utf-8")
    with caplog.at_level("WARNING", logger="model_export.readers"):
        first, second = read_conll(path), read_conll(path)
    assert first.skipped == second.skipped == [f"{path}:2: empty token (tag 'O') skipped"]
    assert [r.getMessage() for r in caplog.records] == first.skipped
    assert first.sentences[0].tokens == ["Paris", "rocks"]


def test_mitchell_bieos_spans_carry_polarity(data_dir: Path):
    parsed = read_conll(data_dir / "targeted_sentiment/mitchell2013/fold1/train.conll", "BIEOS")
    assert parsed.sentences[0].tokens[0] == "@habibaalshanti"
    assert bieos_spans(parsed.sentences[0].tags) == [(0, 1, "positive")]
    assert bieos_spans(parsed.sentences[1].tags)[0] == (0, 2, "neutral")
    examples = mitchell_examples(data_dir, 1, "train")
    assert len(examples) == len(parsed.sentences)
    labelled = [x for e in examples for x in e.entity_sentiment or [] if x != -100]
    assert set(labelled) == {0, 1, 2}


def test_sentiment_and_topic_tsv(data_dir: Path):
    rows = read_sentiment_tsv(data_dir / "sentiment" / "val.tsv")
    assert len(rows) == 2000
    assert {r.label for r in rows} == {"negative", "neutral", "positive"}
    topic = read_sentiment_tsv(data_dir / "targeted_sentiment/semeval2017_topic/test.tsv", True)
    assert len(topic) == 6185 and topic[0].target == "#ArianaGrande"
    located = topic_examples(data_dir, "train")
    assert len(located) > 10_000  # most topic targets are found in their tweet


def test_locate_target_matches_hashtags_and_multiword_names():
    tokens = ["Ariana", "Grande", "live", "#ArianaGrande", "ariana", "grande's"]
    assert locate_target(tokens, "#ArianaGrande") == [(0, 2), (3, 4), (4, 6)]
    assert locate_target(tokens, "kendrick") == []


def test_conll_line_without_tag_names_file_and_line(tmp_path: Path):
    bad = tmp_path / "bad.conll"
    bad.write_text("hello\tO\nworld\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"bad\.conll:2: expected 'token<TAB>tag'"):
        read_conll(bad)


def test_conll_unknown_tag_is_an_error(tmp_path: Path):
    bad = tmp_path / "tags.conll"
    bad.write_text("a\tO\nb\tX-person\n\nc\tB-\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"tags\.conll:2: unknown tag 'X-person'"):
        read_conll(bad)


def test_tab_only_line_separates_sentences(tmp_path: Path):
    path = tmp_path / "tabs.conll"
    path.write_text("a\tO\n\t\nb\tB-x\n", encoding="utf-8")
    parsed = read_conll(path)
    assert [s.tokens for s in parsed.sentences] == [["a"], ["b"]]


@pytest.mark.parametrize(
    ("content", "reason"),
    [("neutral\n", "expected 2 tab-separated fields"),
     ("happy\tgreat day\n", "unknown label 'happy'"),
     ("positive\t   \n", "expected 2 tab-separated fields")],
)
def test_tsv_errors_name_file_and_line(tmp_path: Path, content: str, reason: str):
    path = tmp_path / "s.tsv"
    path.write_text("negative\tfine line\n" + content, encoding="utf-8")
    with pytest.raises(DataFormatError, match=rf"s\.tsv:2: {reason}"):
        read_sentiment_tsv(path)
