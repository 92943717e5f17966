"""Runtime decoding (numpy) and the committed ONNX artifact on real tweets."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.inference import (
    Analyzer,
    LabelSpace,
    best_tags,
    bio_constraints,
    bio_spans,
    id_spans,
    log_softmax,
    softmax,
    span_sentiment,
    viterbi,
)
from stream.predictions import SENTIMENTS
from stream.settings import DEFAULT_MODEL_DIR
from stream.textproc import entity_key, nameable, tokenize

TAGS = ["O", "B-person", "I-person", "B-company", "I-company"]


def test_viterbi_never_opens_a_span_with_inside_tag():
    start, trans = bio_constraints(TAGS)
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(64, 12, len(TAGS))).astype(np.float32)
    logits[:, :, 2] += 2.0  # the greedy choice would be a stray I-person almost everywhere
    lengths = rng.integers(1, 13, size=64)
    best = viterbi(log_softmax(logits), lengths, start, trans)
    for row, length in zip(best, lengths, strict=True):
        tags = [TAGS[k] for k in row[:length]]
        for prev, tag in zip(["O", *tags], tags, strict=False):
            if tag.startswith("I-"):
                assert prev[2:] == tag[2:] and prev != "O"


def test_viterbi_equals_greedy_when_greedy_is_valid():
    start, trans = bio_constraints(TAGS)
    logits = np.full((1, 4, len(TAGS)), -5.0, dtype=np.float32)
    for t, k in enumerate([1, 2, 0, 3]):
        logits[0, t, k] = 5.0
    best = viterbi(log_softmax(logits), np.array([4]), start, trans)
    assert best[0].tolist() == [1, 2, 0, 3]


def test_bio_spans_and_span_sentiment():
    assert bio_spans(["B-person", "I-person", "O", "I-company", "B-company"]) == [
        (0, 2, "person"), (3, 4, "company"), (4, 5, "company")]
    logits = np.array([[3.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 9.0]])
    probs = span_sentiment(logits, 0, 2)
    assert probs.argmax() == 0 and abs(probs.sum() - 1) < 1e-6


@given(st.lists(st.integers(0, len(TAGS) - 1), max_size=30))
def test_spans_from_tag_ids_are_the_spans_of_the_tags(ids):
    """Serving reads spans off the tag ids; evaluation off the tag strings: the same spans,
    stray inside tags and adjacent spans included."""
    assert id_spans(np.array(ids, dtype=np.int64), TAGS) == bio_spans([TAGS[i] for i in ids])


@given(st.lists(st.lists(st.floats(-30, 30), min_size=3, max_size=3), min_size=1, max_size=6))
def test_span_sentiment_is_the_softmax_of_the_mean_logits(rows):
    logits = np.array(rows, dtype=np.float32)
    expected = softmax(logits.astype(np.float64).mean(axis=0))
    np.testing.assert_allclose(span_sentiment(logits, 0, len(rows)), expected, atol=1e-9)


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    if not (DEFAULT_MODEL_DIR / "model.onnx").is_file():
        pytest.fail(f"the committed artifact is missing from {DEFAULT_MODEL_DIR}")
    return Analyzer(DEFAULT_MODEL_DIR)


def test_runtime_imports_no_torch(analyzer: Analyzer):
    # stream.inference is imported above; training libraries must not come with it.
    import subprocess

    code = ("import sys, stream.inference, stream.textproc, stream.predictions; "
            "print([m for m in ('torch', 'gensim') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_artifact_files_describe_each_other(analyzer: Analyzer):
    labels = json.loads((DEFAULT_MODEL_DIR / "labels.json").read_text())
    outputs = {o.name: o.shape for o in analyzer.session.get_outputs()}
    for head in labels["ner_heads"].values():
        assert outputs[head["output"]][-1] == len(head["tags"])
    assert labels["serving_ner_head"] in labels["ner_heads"]
    assert [i.name for i in analyzer.session.get_inputs()] == ["word_ids", "char_ids", "lengths"]
    card = json.loads((DEFAULT_MODEL_DIR / "model_card.json").read_text())
    assert analyzer.model_version == f"{card['version']}-fp32"
    assert sum(p.stat().st_size for p in DEFAULT_MODEL_DIR.iterdir()) < 25 * 2**20


REAL_TWEETS = [
    "Just landed in New York , the Empire State Building looks amazing tonight",
    "@united lost my bag again . Worst airline ever #fail",
    "Watching the Lakers beat the Celtics with Kobe Bryant on ESPN",
    "Apple and Samsung both announced new phones today",
    "",
    "   ",
    "😡😡😡",
]


def test_analyze_real_tweets_gives_consistent_mentions(analyzer: Analyzer):
    predictions = analyzer.analyze(REAL_TWEETS)
    serving_tags = analyzer.labels.ner_heads[analyzer.labels.serving_head]["tags"]
    assert len(predictions) == len(REAL_TWEETS)
    found = 0
    for text, prediction in zip(REAL_TWEETS, predictions, strict=True):
        assert prediction.sentiment in SENTIMENTS
        assert abs(sum(prediction.probs) - 1) < 1e-4
        for mention in prediction.mentions:
            found += 1
            assert text[mention.start : mention.end] == mention.entity
            assert mention.entity_key == entity_key(mention.entity)
            assert f"B-{mention.type}" in serving_tags
            assert mention.sentiment == SENTIMENTS[int(np.argmax(mention.probs))]
            assert mention.score == max(mention.probs)
    assert found >= 3  # New York, Lakers/Celtics/Kobe Bryant, Apple/Samsung...
    assert predictions[4].mentions == [] and predictions[5].mentions == []


def test_spans_on_bare_symbols_are_not_mentions(analyzer: Analyzer):
    """SemEval tweets on which a shipped head tagged the lone ``@`` / ``#`` of ``!@#$*`` and
    ``!@@@`` as musicartists: their entity key is empty, and the alert agent refused it."""
    texts = ["@hughhewitt @realDonaldTrump (D)s have absolutely lost their !@#$* Hacks "
             "@elizabethforma & @RepCummings calling for Trump to be investigated",
             "@jpus_br @ricky_martin oh my godddd!@@@"]
    tokens = [[t.text for t in tokenize(text)] for text in texts]
    serving = analyzer.labels.serving_head
    spans = [[" ".join(toks[b:e]) for b, e, _ in bio_spans(a.tags[serving])]
             for toks, a in zip(tokens, analyzer.analyze_tokens(tokens, [serving]), strict=True)]
    predictions = analyzer.analyze(texts)
    for found, prediction in zip(spans, predictions, strict=True):
        kept = [s for s in found if nameable(entity_key(s))]
        assert [m.entity_key for m in prediction.mentions] == [entity_key(s) for s in kept]
        assert all(m.entity_key and nameable(m.entity_key) for m in prediction.mentions)
    assert not nameable("") and not nameable("!!!") and nameable("trump") and nameable("7")


def test_serving_decodes_what_evaluation_decodes(analyzer: Analyzer):
    """``analyze`` (spans off tag ids, probabilities in plain Python) finds the spans and
    sentiments that ``analyze_tokens`` (what ``tweetwatch eval`` scores) decodes, on 600
    real tweets."""
    from stream.settings import Settings

    rows = (Settings().data_dir / "sentiment" / "test.tsv").read_text(encoding="utf-8")
    texts = [line.split("\t", 1)[1] for line in rows.splitlines()[:600]]
    serving = analyzer.labels.serving_head
    tokens = [tokenize(text) for text in texts]
    analyses = analyzer.analyze_tokens([[t.text for t in toks] for toks in tokens], [serving])
    compared = 0
    for text, toks, analysis, prediction in zip(texts, tokens, analyses,
                                                analyzer.analyze(texts), strict=True):
        expected = [(toks[b].start, toks[e - 1].end, kind,
                     SENTIMENTS[int(span_sentiment(analysis.entity_sentiment_logits, b,
                                                   e).argmax())])
                    for b, e, kind in bio_spans(analysis.tags[serving])
                    if nameable(entity_key(text[toks[b].start:toks[e - 1].end]))]
        assert [(m.start, m.end, m.type, m.sentiment) for m in prediction.mentions] == expected
        assert prediction.sentiment == SENTIMENTS[int(analysis.tweet_probs.argmax())]
        compared += len(expected)
    assert compared > 100


def test_a_tweet_scores_the_same_alone_and_in_a_batch(analyzer: Analyzer):
    batch = analyzer.analyze(REAL_TWEETS)
    for text, together in zip(REAL_TWEETS, batch, strict=True):
        alone = analyzer.analyze([text])[0]
        assert [(m.start, m.end, m.type, m.sentiment) for m in alone.mentions] == [
            (m.start, m.end, m.type, m.sentiment) for m in together.mentions]
        for one, other in zip(alone.mentions, together.mentions, strict=True):
            np.testing.assert_allclose(one.probs, other.probs, atol=1e-5)
        np.testing.assert_allclose(alone.probs, together.probs, atol=1e-5)


def test_analyze_tokens_decodes_every_head(analyzer: Analyzer):
    analyses = analyzer.analyze_tokens([["Obama", "visits", "London"], ["hi"]])
    labels = LabelSpace.load(DEFAULT_MODEL_DIR / "labels.json")
    assert set(analyses[0].tags) == set(labels.ner_heads)
    assert all(len(tags) == 3 for tags in analyses[0].tags.values())
    assert analyses[0].entity_sentiment_logits.shape == (3, 3)


def test_int8_model_agrees_with_fp32_on_tweet_sentiment():
    fp32 = Analyzer(DEFAULT_MODEL_DIR, "fp32").analyze(REAL_TWEETS)
    int8 = Analyzer(DEFAULT_MODEL_DIR, "int8").analyze(REAL_TWEETS)
    diff = max(abs(a - b) for x, y in zip(fp32, int8, strict=True)
               for a, b in zip(x.probs, y.probs, strict=True))
    assert diff < 0.15


def test_unknown_variant_and_missing_folder_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="variant"):
        Analyzer(DEFAULT_MODEL_DIR, "fp16")  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="model.onnx is missing"):
        Analyzer(tmp_path)


def test_best_tags_equals_full_viterbi():
    start, trans = bio_constraints(TAGS)
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(200, 9, len(TAGS))).astype(np.float32)
    logits[:100, :, 0] += 4.0  # mostly-O rows: greedy is valid there
    lengths = rng.integers(0, 10, size=200)
    full = viterbi(log_softmax(logits), lengths, start, trans)
    fast = best_tags(logits, lengths, start, trans)
    for row_fast, row_full, length in zip(fast, full, lengths, strict=True):
        assert row_fast[:length].tolist() == row_full[:length].tolist()
