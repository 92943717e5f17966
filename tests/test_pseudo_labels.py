"""Self-training data: which of the model's own tags on unlabeled tweets are kept."""

from __future__ import annotations

import numpy as np
import torch

from model_export.corpus import IGNORE
from model_export.embeddings import build_vocab
from model_export.heads import HEAD_BY_NAME, NER_HEADS
from model_export.model import ModelConfig, TweetTagger
from model_export.pseudo_labels import confident_tags, is_pseudo, pseudo_label_examples
from model_export.train import model_labels

TAGS = HEAD_BY_NAME["wnut16"].tags


def test_unsure_tokens_are_unlabelled_and_unsure_entities_drop_the_tweet():
    tags = ["O", "B-person", "I-person", "O"]
    ids = confident_tags(tags, np.array([0.95, 0.99, 0.92, 0.5]), TAGS, 0.9)
    assert ids == [0, TAGS.index("B-person"), TAGS.index("I-person"), IGNORE]
    assert confident_tags(tags, np.array([0.95, 0.99, 0.8, 0.99]), TAGS, 0.9) is None
    assert confident_tags(["O", "O"], np.array([0.99, 0.99]), TAGS, 0.9) is None


def test_pseudo_labels_follow_the_heads_decisions():
    tweets = [["Adele", "sings", "tonight"], ["lol"]]
    vocab = build_vocab(tweets, 100, min_count=1, min_char_count=1)
    torch.manual_seed(0)
    model = TweetTagger(ModelConfig(n_words=len(vocab.words), n_chars=len(vocab.chars),
                                    word_dim=8, hidden=8, char_filters=4, char_dim=4))
    index = {head.name: i for i, head in enumerate(NER_HEADS)}
    with torch.no_grad():
        for head in model.ner_heads:
            head.weight.zero_()
            head.bias.zero_()
            head.bias[0] = 20.0  # every head says O...
        wnut16 = model.ner_heads[index["wnut16"]]
        wnut16.bias[0] = 0.0
        wnut16.bias[TAGS.index("B-person")] = 20.0  # ...but WNUT16's says B-person
    found = pseudo_label_examples(model, vocab, model_labels(model), tweets,
                                  ("wnut16", "wnut17"), threshold=0.9)
    assert set(found) == {"pseudo-wnut16", "pseudo-wnut17"}
    assert found["pseudo-wnut17"] == []  # no entity found: nothing to learn from
    kept = found["pseudo-wnut16"]
    assert sorted(len(e.tokens) for e in kept) == [1, 3]
    for example in kept:
        assert is_pseudo(example.task) and example.ner_head == "wnut16"
        assert example.ner_tags == [TAGS.index("B-person")] * len(example.tokens)
