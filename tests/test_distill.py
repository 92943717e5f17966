"""Distillation: the teacher's outputs as soft targets, the loss that matches them, and the
TMSC pairs that teach the entity-sentiment head per mention."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model_export.corpus import IGNORE, join_marks, tmsc_examples
from model_export.distill import (
    TOKEN_OUTPUTS,
    check_teacher,
    distill_examples,
    soft_loss,
    soft_tensors,
)
from model_export.heads import TWEET_SENTIMENT_OUTPUT
from stream.inference import Analyzer
from stream.settings import Settings
from stream.textproc import tokenize

DATA = Settings().data_dir
MODEL_DIR = Settings().model_dir


def test_soft_loss_is_zero_on_the_teacher_and_grows_away_from_it():
    teacher = torch.randn(2, 5, 7)
    assert float(soft_loss(teacher, teacher, 2.0)) == pytest.approx(0.0, abs=1e-6)
    moved = teacher + torch.randn(2, 5, 7)
    assert float(soft_loss(moved, teacher, 2.0)) > 0.01
    # Masked positions do not count: a wrong padding position changes nothing.
    mask = torch.ones(2, 5)
    mask[1, 3:] = 0
    wrong_padding = teacher.clone()
    wrong_padding[1, 3:] += 10
    assert float(soft_loss(wrong_padding, teacher, 2.0, mask)) == pytest.approx(0.0, abs=1e-6)


def test_soft_loss_gradient_moves_the_student_toward_the_teacher():
    teacher = torch.tensor([[3.0, 0.0, -3.0]])
    student = torch.zeros(1, 3, requires_grad=True)
    optimiser = torch.optim.SGD([student], lr=0.5)
    before = float(soft_loss(student, teacher, 1.0).detach())
    for _ in range(50):
        optimiser.zero_grad()
        soft_loss(student, teacher, 1.0).backward()
        optimiser.step()
    assert float(soft_loss(student, teacher, 1.0).detach()) < 0.05 * before
    assert int(student.argmax()) == 0


def test_teacher_outputs_are_the_artifact_s_outputs_and_are_cached(tmp_path: Path):
    texts = ["@Delta lost my bag again, worst airline ever",
             "Loving the new iPhone from Apple !",
             "",
             "Chelsea were brilliant , Arsenal looked clueless"]
    token_lists = [[t.text for t in tokenize(text)] for text in texts]
    examples = distill_examples(MODEL_DIR, token_lists, tmp_path)
    assert len(examples) == 3  # the empty text teaches nothing
    assert list(tmp_path.glob("teacher-*.npz"))
    outputs = Analyzer(MODEL_DIR).run([e.tokens for e in examples])
    for row, example in enumerate(examples):
        n = len(example.tokens)
        for name in TOKEN_OUTPUTS:
            assert example.soft[name].shape[0] == n
            np.testing.assert_allclose(example.soft[name], outputs[name][row, :n], atol=0.02,
                                       rtol=0.01)
        np.testing.assert_allclose(example.soft[TWEET_SENTIMENT_OUTPUT],
                                   outputs[TWEET_SENTIMENT_OUTPUT][row], atol=0.02, rtol=0.01)
    again = distill_examples(MODEL_DIR, token_lists, tmp_path)
    for first, second in zip(examples, again, strict=True):
        assert np.array_equal(first.soft[TWEET_SENTIMENT_OUTPUT],
                              second.soft[TWEET_SENTIMENT_OUTPUT])
    feeds = soft_tensors(examples, steps=12)
    assert feeds[TOKEN_OUTPUTS[0]].shape[:2] == (3, 12)
    assert float(feeds[TOKEN_OUTPUTS[0]][1, len(examples[1].tokens):].abs().sum()) == 0.0


def test_a_missing_teacher_says_how_to_make_one(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="train the teacher first"):
        check_teacher(tmp_path / "nowhere")


def test_tmsc_handles_and_hashtags_join_as_the_runtime_tokenises_them():
    joined, position = join_marks(["RT", "@", "user", ":", "#", "NBA", "finals", "#", "!"])
    assert joined == ["RT", "@user", ":", "#NBA", "finals", "#", "!"]
    assert position == [0, 1, 1, 2, 3, 3, 4, 5, 6]


def test_tmsc_tweets_carry_each_target_s_own_polarity():
    examples = tmsc_examples(DATA, "train")
    assert len(examples) > 3000
    mixed = 0
    for example in examples:
        labels = [x for x in example.entity_sentiment if x != IGNORE]
        assert labels and len(example.entity_sentiment) == len(example.tokens)
        assert not any(t in ("@", "#") and i + 1 < len(example.tokens)
                       and example.tokens[i + 1][:1].isalnum()
                       for i, t in enumerate(example.tokens))
        mixed += len(set(labels)) > 1
    # Several targets with different polarities in one tweet: what a tweet label cannot say.
    assert mixed > 300


def test_labelled_examples_get_the_teacher_s_outputs_unless_augmentation_rewrote_them(
        tmp_path: Path):
    import random

    from model_export.batches import hashtag_entities
    from model_export.corpus import Example
    from model_export.distill import with_teacher
    from model_export.heads import HEAD_BY_NAME

    tags = HEAD_BY_NAME["wnut16"].tags
    person = [tags.index("B-person"), tags.index("I-person")]
    sets = {"wnut16": [Example("wnut16", ["Kobe", "Bryant", "scored"], "wnut16",
                               [*person, 0])],
            "sentiment": [Example("sentiment", ["so", "sad"], tweet_sentiment=0),
                          Example("sentiment", [], tweet_sentiment=1)]}
    taught = with_teacher(sets, MODEL_DIR, tmp_path)
    assert taught["wnut16"][0].soft is not None and taught["sentiment"][0].soft is not None
    assert taught["sentiment"][1].soft is None  # an empty text has nothing to teach
    assert taught["wnut16"][0].ner_tags == sets["wnut16"][0].ner_tags
    example = taught["wnut16"][0]
    assert hashtag_entities(example, tags, 0.0, random.Random(0)) is example
    kept = hashtag_entities(example, tags, 1e-9, random.Random(0))
    assert kept is example  # nothing rewritten: the outputs still fit
    rewritten = hashtag_entities(example, tags, 1.0, random.Random(0))
    assert rewritten.tokens == ["#KobeBryant", "scored"] and rewritten.soft is None
    feeds = soft_tensors([example, rewritten], steps=3)
    assert feeds["rows"].tolist() == [1.0, 0.0]
    assert float(feeds[TOKEN_OUTPUTS[0]][1].abs().sum()) == 0.0
