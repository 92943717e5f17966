"""What the training run sees: dev texts kept out of training, hashtag rewriting, calibration."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from model_export.batches import CONTRAST_JOINS, contrast_pairs, hashtag_entities
from model_export.calibrate import (
    OFFSETS,
    PRIOR_BETAS,
    best_offset,
    calibrate_heads,
    dev_sentences,
    tweet_prior_correction,
)
from model_export.corpus import (
    Example,
    dev_shares,
    held_out_dev,
    held_out_topic_texts,
    held_out_topics,
    ner_examples,
    sentiment_dev_examples,
    sentiment_examples,
    text_key,
)
from model_export.embeddings import build_vocab
from model_export.evaluate import (
    classification_scores,
    dev_objective,
    ner_scores,
    score_mitchell,
    score_sentiment,
)
from model_export.heads import HEAD_BY_NAME, NER_HEADS, labels_document
from model_export.model import ModelConfig, TweetTagger
from model_export.predictor import torch_predictor
from model_export.recipe import recipe_config
from model_export.training_sets import held_out_texts, load_training_sets
from stream.inference import LabelSpace
from stream.settings import Settings

DATA = Settings().data_dir
WNUT16_TAGS = HEAD_BY_NAME["wnut16"].tags


@pytest.fixture(scope="module")
def data_dir() -> Path:
    if not (DATA / "wnut16").is_dir():
        pytest.fail(f"shared data not found at {DATA} (set TWEETWATCH_DATA_DIR)")
    return DATA


def tagged(pairs: list[tuple[str, str]]) -> Example:
    return Example("wnut16", [t for t, _ in pairs], "wnut16",
                   [WNUT16_TAGS.index(tag) for _, tag in pairs])


def test_held_out_dev_texts_never_reach_training(data_dir: Path):
    """WNUT17 train re-annotates 996 WNUT16 dev tweets: while WNUT16 dev scores early
    stopping they must go; once WNUT16 dev is training data they may stay."""
    dev16 = {tuple(e.tokens) for e in ner_examples(data_dir, "wnut16", "dev")}
    clean = load_training_sets(recipe_config(data_dir, teacher="", train_with_dev=()))
    assert len(clean["wnut16"]) == 2394
    assert not any(tuple(e.tokens) in dev16 for e in clean["wnut17"])
    assert 2300 < len(clean["wnut17"]) < 3394
    with_dev = load_training_sets(recipe_config(data_dir, teacher="", train_with_dev=("wnut16",),
                                              dev_repeat=1))
    assert len(with_dev["wnut16"]) == 2394 + 1000
    assert len(with_dev["wnut17"]) == 3394
    wnut17_dev = {tuple(e.tokens) for e in ner_examples(data_dir, "wnut17", "dev")}
    assert not any(tuple(e.tokens) in wnut17_dev for e in with_dev["wnut17"])


def test_a_dev_share_trains_part_of_a_split_and_scores_the_rest(data_dir: Path):
    """``wnut17:0.5``: about half of WNUT17 dev trains, the other half is what early stopping
    and calibration see, and no tweet is on both sides; the split is the same every time."""
    dev17 = [tuple(e.tokens) for e in ner_examples(data_dir, "wnut17", "dev")]
    config = recipe_config(data_dir, teacher="", train_with_dev=("wnut16", "wnut17:0.5"),
                         dev_repeat=1)
    assert config.dev_trained == ("wnut16",)
    sets = load_training_sets(config)
    trained = [e for e in sets["wnut17"] if tuple(e.tokens) in set(dev17)]
    assert len(sets["wnut17"]) == 3394 + len(trained)
    assert 0.4 * len(dev17) < len(trained) < 0.6 * len(dev17)
    tokens, gold = dev_sentences(data_dir, "wnut17", (1,), config.dev_shares)
    assert len(tokens) == len(gold) == len(dev17) - len(trained)
    assert not {tuple(t) for t in tokens} & {tuple(e.tokens) for e in trained}
    assert held_out_texts(config) >= {tuple(t) for t in tokens}
    assert [held_out_dev([t], "wnut17", config.dev_shares)[0] for t in dev17] == held_out_dev(
        dev17, "wnut17", {"wnut17": 0.5})


def test_dev_repeat_repeats_only_the_dev_tweets_that_train(data_dir: Path):
    """``--dev-repeat 3`` (the default) with half of WNUT16 dev training: that half three
    times, the training split once, the held-out half never; 1 is the earlier recipes' set."""
    train16 = [tuple(e.tokens) for e in ner_examples(data_dir, "wnut16", "train")]
    once = load_training_sets(
        recipe_config(data_dir, teacher="", train_with_dev=("wnut16:0.5",), dev_repeat=1))
    config = recipe_config(data_dir, teacher="", train_with_dev=("wnut16:0.5",))
    assert config.dev_repeat == 3
    thrice = load_training_sets(config)
    half = once["wnut16"][len(train16):]
    assert [tuple(e.tokens) for e in once["wnut16"][: len(train16)]] == train16
    assert 400 < len(half) < 600
    assert thrice["wnut16"] == once["wnut16"] + half + half
    held = {tuple(t) for t in held_out_texts(config)}
    assert not held & {tuple(e.tokens) for e in thrice["wnut16"]}
    assert thrice["wnut17"] == once["wnut17"] and thrice["btc"] == once["btc"]
    with pytest.raises(ValueError, match="data.dev_repeat=0"):
        recipe_config(data_dir, teacher="", dev_repeat=0)


def test_anonymised_training_tweets_hold_at_user_like_the_test_tweets(data_dir: Path):
    """``--anonymise-handles`` writes the 4A training handles as the test set's ``@user``;
    every other token, the label and the other tasks' texts stay as they were."""
    plain = load_training_sets(
        recipe_config(data_dir, teacher="", limit=2000, anonymise_handles=False))
    anonymised = load_training_sets(
        recipe_config(data_dir, teacher="", limit=2000, anonymise_handles=True))
    changed = 0
    for before, after in zip(plain["sentiment"], anonymised["sentiment"], strict=True):
        assert after.tweet_sentiment == before.tweet_sentiment
        assert len(after.tokens) == len(before.tokens)
        for old, new in zip(before.tokens, after.tokens, strict=True):
            if old.startswith("@") and len(old) > 1 and old[1:].replace("_", "").isalnum():
                assert new == "@user"
                changed += old != new
            else:
                assert new == old
    assert changed > 100
    assert not any("@user" in e.tokens for e in plain["sentiment"])
    assert anonymised["wnut16"] == plain["wnut16"] and anonymised["topic"] == plain["topic"]


@pytest.mark.parametrize("entry", ["wnut17:0", "wnut17:1.5", "wnut17:x", "mitchell", "btc:"])
def test_a_malformed_dev_share_is_a_one_line_error(entry: str, data_dir: Path):
    with pytest.raises(ValueError, match="a dev split to train on"):
        recipe_config(data_dir, teacher="", train_with_dev=(entry,))
    with pytest.raises(ValueError, match="once"):
        dev_shares(("wnut17:0.5", "wnut17"))


def test_dev_objective_leaves_out_corpora_trained_on_their_dev_split():
    dev = {"wnut16": {"f1": 90.0}, "wnut17": {"f1": 30.0}, "btc": {"f1": 60.0},
           "semeval2017_4a": {"macro_recall": 0.6}, "mitchell2013": {"f1": 50.0}}
    assert dev_objective(dev) == pytest.approx(58.0)
    assert dev_objective(dev, exclude=("wnut16",)) == pytest.approx(50.0)


def test_classification_scores_give_the_recall_of_each_class():
    gold = [0, 0, 0, 0, 1, 1, 2, 2]
    pred = [0, 1, 1, 1, 1, 1, 2, 0]
    scores = classification_scores(gold, pred, range(3))
    assert scores["recall_per_class"] == {"negative": 0.25, "neutral": 1.0, "positive": 0.5}
    # negative predicted twice, right once; neutral 5 times, right twice; positive once, right
    assert scores["precision_per_class"] == {"negative": 0.5, "neutral": 0.4, "positive": 1.0}
    assert scores["macro_recall"] == pytest.approx((0.25 + 1.0 + 0.5) / 3, abs=1e-4)
    assert scores["accuracy"] == 0.5
    topic = classification_scores([0, 2, 2], [0, 0, 2], [0, 2])  # topic test: two classes
    assert topic["recall_per_class"] == {"negative": 1.0, "positive": 0.5}


def test_ner_scores_separate_finding_a_span_from_typing_it():
    gold = [["B-company", "I-company", "O", "B-person"], ["B-geo-loc", "O"]]
    pred = [["B-other", "I-other", "O", "B-person"], ["O", "B-person"]]
    scores = ner_scores(gold, pred)
    assert (scores["precision"], scores["recall"]) == (33.3, 33.3)  # 1 of 3 either way
    assert scores["f1"] == 33.3
    assert scores["span_f1"] == 66.7  # the company span is found, only its type is wrong
    assert scores["per_type"]["person"] == 66.7
    assert scores["type_confusions"] == {"company -> other": 1}  # geo-loc/person differ in span


def test_entity_spans_become_hashtags_of_the_same_type():
    example = tagged([("shooting", "O"), ("South", "B-geo-loc"), ("Side", "I-geo-loc"),
                      ("-", "O"), ("AT&T", "B-company"), ("Chicago", "B-company"),
                      ("Tribune", "I-company")])
    rewritten = hashtag_entities(example, WNUT16_TAGS, 1.0, random.Random(0))
    assert rewritten.tokens == ["shooting", "#SouthSide", "-", "AT&T", "#ChicagoTribune"]
    assert [WNUT16_TAGS[t] for t in rewritten.ner_tags or []] == [
        "O", "B-geo-loc", "O", "B-company", "B-company"]
    assert example.tokens[1] == "South"  # the original example is left alone
    assert hashtag_entities(example, WNUT16_TAGS, 0.0, random.Random(0)) is example


def test_contrast_pairs_join_targets_of_other_polarities():
    """Each joined text keeps both tweets' target labels on their own tokens, one tweet's
    targets of a polarity the other lacks; one-polarity batches are left alone."""
    neg, pos = 0, 2
    chelsea = Example("tmsc", ["Chelsea", "were", "brilliant"], entity_sentiment=[pos, -100, -100])
    arsenal = Example("tmsc", ["Arsenal", "looked", "clueless"], entity_sentiment=[neg, -100, -100])
    city = Example("tmsc", ["City", "lost"], entity_sentiment=[neg, -100])
    joined = contrast_pairs([chelsea, arsenal, city], 1.0, random.Random(3))
    assert len(joined) == 3
    for example in joined:
        join = next(i for i, t in enumerate(example.tokens) if t in CONTRAST_JOINS)
        labels = example.entity_sentiment or []
        assert labels[join] == -100 and len(labels) == len(example.tokens)
        left = {x for x in labels[:join] if x != -100}
        right = {x for x in labels[join + 1:] if x != -100}
        assert left and right and left != right  # opposite polarities in one text
        assert example.soft is None
    same = [arsenal, city]
    assert contrast_pairs(same, 1.0, random.Random(0)) == same
    assert contrast_pairs([chelsea, arsenal], 0.0, random.Random(0)) == [chelsea, arsenal]


@pytest.fixture(scope="module")
def untrained(data_dir: Path):
    torch.manual_seed(0)
    sentences = [e.tokens for e in ner_examples(data_dir, "wnut16", "train")[:400]]
    vocab = build_vocab(sentences, max_words=2000)
    model = TweetTagger(ModelConfig(n_words=len(vocab.words), n_chars=len(vocab.chars),
                                    hidden=16, char_filters=8, char_dim=4, tweet_bow=True))
    model.eval()
    return model, vocab


def test_calibration_folds_the_best_offset_into_the_o_bias(untrained, data_dir: Path):
    model, vocab = untrained
    labels = LabelSpace(labels_document())
    index = [h.name for h in NER_HEADS].index("targets")
    with torch.no_grad():  # a head far too shy of leaving O, as trained heads tend to be
        model.ner_heads[index].bias[0] += 2.0
    sweep = best_offset(model, vocab, labels, "targets", data_dir, (1,))
    assert set(sweep["sweep"]) == {float(o) for o in OFFSETS}
    assert sweep["dev_f1_after"] == max(sweep["sweep"].values())
    assert sweep["offset"] > 0 and sweep["dev_f1_after"] > sweep["dev_f1_before"]
    before = model.ner_heads[index].bias.detach().clone()
    others = {h.name: model.ner_heads[i].bias.detach().clone() for i, h in enumerate(NER_HEADS)}
    report = calibrate_heads(model, vocab, labels, data_dir, (1,),
                             {"wnut16": 1.0, "wnut17": 1.0, "btc": 1.0})
    assert list(report) == ["targets"]
    after = model.ner_heads[index].bias.detach()
    assert after[0].item() == pytest.approx(before[0].item() - report["targets"]["offset"])
    assert torch.equal(after[1:], before[1:])
    for i, head in enumerate(NER_HEADS):
        if head.name != "targets":
            assert torch.equal(model.ner_heads[i].bias.detach(), others[head.name])
    # The folded model scores what the sweep promised, through the runtime decoding.
    predict = torch_predictor(model, vocab, labels)
    assert score_mitchell(predict, data_dir, 1, "dev")["span_f1"] == pytest.approx(
        report["targets"]["dev_f1_after"])


def test_tweet_prior_correction_folds_the_best_beta_into_the_bias(untrained, data_dir: Path):
    """The chosen beta scores the best 4A val macro recall of the sweep, and the folded bias
    makes the model's own argmax score exactly that."""
    model, vocab = untrained
    before = model.tweet_out.bias.detach().clone()
    report = tweet_prior_correction(model, vocab, data_dir)
    assert set(report["sweep"]) == {float(b) for b in PRIOR_BETAS}
    assert report["dev_macro_recall_after"] == max(report["sweep"].values())
    prior = torch.tensor(report["train_prior"])
    assert prior.argmin() == 0  # negatives are SemEval-4A train's smallest class
    torch.testing.assert_close(model.tweet_out.bias.detach(),
                               before - report["beta"] * prior.log(), atol=1e-3, rtol=0)
    predict = torch_predictor(model, vocab, LabelSpace(labels_document()))
    assert score_sentiment(predict, data_dir, "val")["macro_recall"] == pytest.approx(
        report["dev_macro_recall_after"])


def test_held_out_topics_leave_training_and_become_the_4a_dev_split(data_dir: Path):
    """``--sentiment-dev-topics``: the chosen topics' 4A tweets (and their 4B rows) never
    train; they come back, in TweetEval's test form, as the 4A dev split."""
    topics = held_out_topics(data_dir, 0.2)
    assert topics == held_out_topics(data_dir, 0.2)  # a hash, not a draw
    assert topics < held_out_topics(data_dir, 0.4) and 40 < len(topics) < 120
    held = held_out_topic_texts(data_dir, 0.2)
    dev = sentiment_dev_examples(data_dir, 0.2)
    assert len(dev) > 3000 and {e.tweet_sentiment for e in dev} == {0, 1, 2}
    assert not any(t.startswith(("http://", "https://")) for e in dev for t in e.tokens)
    assert any("@user" in e.tokens for e in dev)
    sets = load_training_sets(recipe_config(data_dir, teacher="", sentiment_dev_topics=0.2))
    plain = load_training_sets(recipe_config(data_dir, teacher="", sentiment_dev_topics=0.0))
    for task in ("sentiment", "topic"):
        assert not any(text_key(e.tokens) in held for e in sets[task])
    assert len(plain["sentiment"]) - len(sets["sentiment"]) == len(dev)
    assert len(plain["topic"]) > len(sets["topic"])
    assert sets["wnut16"] == plain["wnut16"]
    assert sentiment_dev_examples(data_dir, 0.0) == sentiment_examples(data_dir, "val")


@pytest.mark.parametrize("share", [-0.1, 1.0])
def test_a_topic_share_outside_zero_to_one_is_a_one_line_error(share: float, data_dir: Path):
    with pytest.raises(ValueError, match="a share of the topics"):
        recipe_config(data_dir, teacher="", sentiment_dev_topics=share)


def test_held_out_topics_score_the_4a_dev_term_and_its_prior_correction(untrained,
                                                                       data_dir: Path):
    """With held-out topics the dev objective's 4A term and the prior correction's beta are
    scored on their tweets; val is still reported beside them."""
    model, vocab = untrained
    predict = torch_predictor(model, vocab, LabelSpace(labels_document()))
    topics = score_sentiment(predict, data_dir, "dev", 0.2)
    val = score_sentiment(predict, data_dir, "val")
    assert score_sentiment(predict, data_dir, "dev") == val
    assert topics != val
    before = model.tweet_out.bias.detach().clone()
    try:
        report = tweet_prior_correction(model, vocab, data_dir, 0.2)
        assert report["dev_split"] == "held-out topics (0.2)"
        assert score_sentiment(predict, data_dir, "dev", 0.2)["macro_recall"] == pytest.approx(
            report["dev_macro_recall_after"])
    finally:
        with torch.no_grad():
            model.tweet_out.bias.copy_(before)


def test_tmsc_mixed_subset_is_where_the_tweet_sentiment_cannot_be_right(data_dir: Path):
    """An oracle that knows each target's polarity scores 100 on the mixed tweets, while its
    tweet-level sentiment (one label per tweet) must miss at least one target of each."""
    from model_export.tmsc import read_tmsc, score_tmsc
    from stream.inference import TokenAnalysis

    gold: dict[tuple[str, ...], dict[int, int]] = {}
    for e in read_tmsc(data_dir, "test"):
        gold.setdefault(e.tokens, {}).update({i: e.label for i in range(e.start, e.end)})

    def oracle(token_lists, heads):
        out = []
        for tokens in token_lists:
            labels = gold[tuple(tokens)]
            logits = np.zeros((len(tokens), 3), dtype=np.float32)
            for i, label in labels.items():
                logits[i, label] = 5.0
            first = next(iter(labels.values()))
            out.append(TokenAnalysis({}, logits, np.eye(3, dtype=np.float32)[first]))
        return out

    scores = score_tmsc(oracle, data_dir, "test")
    mixed = scores["mixed"]
    assert 0 < mixed["examples"] < scores["examples"]
    assert mixed["entity"]["accuracy"] == 100.0 and scores["entity"]["accuracy"] == 100.0
    assert mixed["tweet_baseline"]["accuracy"] < 60.0
