"""ONNX export: onnxruntime must reproduce torch on real batches of any shape."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from model_export.embeddings import build_vocab
from model_export.export import (
    OPSET,
    export_onnx,
    parity,
    quantize_int8,
    round_embedding_to_fp16,
    round_word_table_to_int8,
    store_embedding_fp16,
    store_word_table_int8,
)
from model_export.heads import INPUT_NAMES, OUTPUT_NAMES
from model_export.model import ENCODERS, ModelConfig, TweetEnsemble, TweetTagger
from model_export.readers import read_conll
from stream.settings import Settings

DATA = Settings().data_dir


@pytest.fixture(scope="module")
def sentences() -> list[list[str]]:
    if not (DATA / "wnut16").is_dir():
        pytest.fail(f"shared data not found at {DATA} (set TWEETWATCH_DATA_DIR)")
    return [s.tokens for s in read_conll(DATA / "wnut16" / "dev.conll").sentences]


@pytest.fixture(scope="module", params=ENCODERS)
def exported(sentences: list[list[str]], tmp_path_factory: pytest.TempPathFactory,
             request: pytest.FixtureRequest):
    """Each encoder, exported with non-trivial weights (the tests below run on every one)."""
    torch.manual_seed(0)
    vocab = build_vocab(sentences[:500], max_words=3000)
    model = TweetTagger(ModelConfig(n_words=len(vocab.words), n_chars=len(vocab.chars),
                                    tweet_bow=True, encoder=request.param))
    with torch.no_grad():  # non-trivial weights everywhere, as after training
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    model.eval()
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    export_onnx(model, vocab, path, sentences[:8])
    return model, vocab, path


def test_onnx_matches_torch_on_real_batches(exported, sentences: list[list[str]]):
    model, vocab, path = exported
    batches = [sentences[:1], sentences[1:33], sentences[33:289], sentences[500:564]]
    assert parity(model, vocab, path, batches) <= 1e-4


def test_graph_has_dynamic_axes_and_opset(exported):
    _, _, path = exported
    graph = onnx.load(str(path))
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= OPSET
    inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
              for i in graph.graph.input}
    assert inputs == {"word_ids": ["batch", "tokens"], "char_ids": ["batch", "tokens", "chars"],
                      "lengths": ["batch"]}
    assert [o.name for o in graph.graph.output] == list(OUTPUT_NAMES)


def test_padding_does_not_change_a_sentence(exported, sentences: list[list[str]]):
    _, vocab, path = exported
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    short = sentences[3][:5]
    long_one = max(sentences[:200], key=len) + ["Supercalifragilisticexpialidocious"]
    alone = session.run(None, vocab.encode([short]))
    padded = session.run(None, vocab.encode([short, long_one]))
    for a, p in zip(alone, padded, strict=True):
        np.testing.assert_allclose(a[0], p[0][tuple(slice(0, n) for n in a[0].shape)],
                                   atol=1e-5)


def test_int8_model_runs_and_stays_close(exported, sentences: list[list[str]], tmp_path: Path):
    model, vocab, path = exported
    target = tmp_path / "model.int8.onnx"
    quantize_int8(path, target)
    assert target.stat().st_size < 0.8 * path.stat().st_size
    feeds = vocab.encode(sentences[:32])
    got = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"]).run(None, feeds)
    with torch.no_grad():
        want = model(*(torch.from_numpy(feeds[n]) for n in INPUT_NAMES))
    tweet = OUTPUT_NAMES.index("tweet_sentiment_logits")
    assert np.abs(got[tweet] - want[tweet].numpy()).max() < 0.5


def test_fp16_tables_halve_them_and_keep_parity(sentences: list[list[str]], tmp_path: Path):
    torch.manual_seed(1)
    vocab = build_vocab(sentences, max_words=3000)
    model = TweetTagger(ModelConfig(n_words=len(vocab.words), n_chars=len(vocab.chars),
                                    tweet_bow=True, bow_dim=16))
    model.eval()
    bow_elements = model.bow_embedding.weight.numel()
    round_embedding_to_fp16(model, min_elements=bow_elements)
    path = tmp_path / "model.onnx"
    export_onnx(model, vocab, path, sentences[:8])
    before = path.stat().st_size
    table_bytes = (model.word_embedding.weight.numel() + bow_elements) * 4
    # The word and bag-of-words tables are converted; the small character table is not.
    assert store_embedding_fp16(path, min_elements=bow_elements) == 2
    assert before - path.stat().st_size == pytest.approx(table_bytes / 2, rel=0.01)
    tables = {i.name: i.data_type for i in onnx.load(str(path)).graph.initializer}
    assert tables["word_embedding.weight"] == onnx.TensorProto.FLOAT16
    assert tables["bow_embedding.weight"] == onnx.TensorProto.FLOAT16
    assert tables["char_embedding.weight"] == onnx.TensorProto.FLOAT
    batches = [sentences[:1], sentences[1:65], sentences[65:321]]
    assert parity(model, vocab, path, batches) <= 1e-5


def test_ensemble_stores_one_int8_word_table_and_keeps_parity(sentences: list[list[str]],
                                                             tmp_path: Path):
    """Members with one word table (as trained on the same vectors): the ensemble graph
    stores it once, as int8 rows, and onnxruntime still reproduces the members' mean."""
    vocab = build_vocab(sentences, max_words=3000)
    members = []
    for seed, encoder in enumerate(ENCODERS):
        torch.manual_seed(seed)
        member = TweetTagger(ModelConfig(n_words=len(vocab.words), n_chars=len(vocab.chars),
                                         hidden=32, tweet_bow=True, bow_dim=16,
                                         encoder=encoder))
        if members:
            member.word_embedding.load_state_dict(members[0].word_embedding.state_dict())
        members.append(member.eval())
    feeds = {k: torch.from_numpy(v) for k, v in vocab.encode(sentences[:16]).items()}
    args = tuple(feeds[n] for n in INPUT_NAMES)
    with torch.no_grad():
        alone = [m(*args) for m in members]
        ensemble = TweetEnsemble(members).eval()
        mean = ensemble(*args)
    for index, output in enumerate(mean):
        expected = torch.stack([outputs[index] for outputs in alone]).mean(dim=0)
        torch.testing.assert_close(output, expected)
    bow_elements = members[0].bow_embedding.weight.numel()
    round_embedding_to_fp16(ensemble, min_elements=bow_elements)
    round_word_table_to_int8(ensemble)
    path = tmp_path / "model.onnx"
    export_onnx(ensemble, vocab, path, sentences[:8])
    store_word_table_int8(path)
    assert store_embedding_fp16(path, min_elements=bow_elements) == len(ENCODERS)
    tables = {i.name: i.data_type for i in onnx.load(str(path)).graph.initializer}
    word_tables = [name for name in tables if name.endswith("word_embedding.weight")]
    assert word_tables == ["members.0.word_embedding.weight"]
    assert tables[word_tables[0]] == onnx.TensorProto.INT8
    batches = [sentences[:1], sentences[1:65], sentences[65:321]]
    assert parity(ensemble, vocab, path, batches) <= 1e-4


def test_entity_head_reading_the_tweet_head_exports_and_ignores_padding(
        sentences: list[list[str]], tmp_path: Path):
    """The entity-sentiment head fed by the tweet head's hidden layer (entity_tweet) must
    export with parity and still score a tweet the same alone or beside a longer one."""
    torch.manual_seed(2)
    vocab = build_vocab(sentences[:500], max_words=3000)
    model = TweetTagger(ModelConfig(n_words=len(vocab.words), n_chars=len(vocab.chars),
                                    tweet_bow=True, bow_dim=16, entity_tweet=True))
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    model.eval()
    path = tmp_path / "model.onnx"
    export_onnx(model, vocab, path, sentences[:8])
    assert parity(model, vocab, path, [sentences[:1], sentences[1:65]]) <= 1e-4
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    short, long_one = sentences[3][:5], max(sentences[:200], key=len)
    output = OUTPUT_NAMES.index("entity_sentiment_logits")
    alone = session.run(None, vocab.encode([short]))[output]
    padded = session.run(None, vocab.encode([short, long_one]))[output]
    np.testing.assert_allclose(alone[0], padded[0][: len(short)], atol=1e-5)
    # The tweet head's hidden layer feeds the entity logits, but its gradient does not flow
    # back into the tweet head from the entity losses.
    feeds = {k: torch.from_numpy(v) for k, v in vocab.encode([long_one]).items()}
    entity = model(*(feeds[n] for n in INPUT_NAMES))[output]
    entity.sum().backward()
    assert model.entity_tweet.weight.grad.abs().sum() > 0
    assert model.tweet_hidden.weight.grad is None or not model.tweet_hidden.weight.grad.any()
    with torch.no_grad():
        model.entity_tweet.weight.zero_()
        after = model(*(feeds[n] for n in INPUT_NAMES))[output]
    assert (entity - after).abs().max() > 1e-4


def test_entity_head_with_detached_pooled_states_trains_the_encoder_only_through_tokens(
        sentences: list[list[str]]):
    """entity_detach_pooled: the entity logits still read the pooled tweet states, but the
    entity losses reach the encoder only through the mention's own token states."""
    vocab = build_vocab(sentences[:500], max_words=3000)
    feeds = {k: torch.from_numpy(v) for k, v in vocab.encode([sentences[5]]).items()}
    output = OUTPUT_NAMES.index("entity_sentiment_logits")
    grads = {}
    for detach in (False, True):
        torch.manual_seed(3)
        model = TweetTagger(ModelConfig(n_words=len(vocab.words), n_chars=len(vocab.chars),
                                        entity_detach_pooled=detach))
        model.eval()
        with torch.no_grad():
            model.entity_token.weight.zero_()  # leave only the pooled path into the encoder
        model(*(feeds[n] for n in INPUT_NAMES))[output].sum().backward()
        assert model.entity_context.weight.grad.abs().sum() > 0
        grads[detach] = model.blocks[0].weight.grad
    assert grads[False] is not None and grads[False].abs().sum() > 0
    assert grads[True] is None or not grads[True].any()
