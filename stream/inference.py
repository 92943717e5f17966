"""The joint NER + sentiment model at serving time: onnxruntime plus numpy decoding.

Evaluation (``tweetwatch eval``) and training-time dev scoring call the same decoding as the
pipeline, so the published figures are the figures of the code that runs in production.
No torch here: the runtime image stays small and starts fast.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort

from stream.matcher import WatchMatch, WatchMatcher
from stream.predictions import SENTIMENTS, Mention, TweetPrediction
from stream.textproc import Token, Vocab, entity_key, nameable, strip_invisible, tokenize

MODEL_FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
MODEL_CARD = "model_card.json"
_FORBIDDEN = -1e4
# Bounds on what one tweet can put in the store: a name longer than this is a tagging accident,
# and a tweet that repeats a name a hundred times is still one tweet's worth of mentions.
MAX_ENTITY_CHARS = 200
MAX_MENTIONS = 32


@dataclass(frozen=True, slots=True)
class TokenAnalysis:
    """Decoded model output for one token list (what evaluation scores)."""

    tags: dict[str, list[str]]  # NER head name -> one BIO tag per token
    entity_sentiment_logits: np.ndarray  # [n_tokens, 3]
    tweet_probs: np.ndarray  # [3] (negative, neutral, positive)


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = logits - logits.max(axis=axis, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=axis, keepdims=True)


def log_softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = logits - logits.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def bio_constraints(tags: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Start scores and transition scores (0 allowed, very negative forbidden) for BIO:
    ``I-X`` may only follow ``B-X`` or ``I-X``, and may not start a sentence."""
    size = len(tags)
    start = np.zeros(size, dtype=np.float32)
    trans = np.zeros((size, size), dtype=np.float32)
    for j, tag in enumerate(tags):
        if not tag.startswith("I-"):
            continue
        start[j] = _FORBIDDEN
        for i, prev in enumerate(tags):
            if prev[2:] != tag[2:] or prev == "O":
                trans[i, j] = _FORBIDDEN
    return start, trans


def viterbi(
    log_probs: np.ndarray, lengths: np.ndarray, start: np.ndarray, trans: np.ndarray
) -> np.ndarray:
    """Best tag ids ``[B, T]`` under the transition constraints, vectorised over the batch."""
    batch, steps, size = log_probs.shape
    score = log_probs[:, 0, :] + start
    back = np.zeros((batch, steps, size), dtype=np.int64)
    identity = np.broadcast_to(np.arange(size), (batch, size))
    for t in range(1, steps):
        cand = score[:, :, None] + trans[None, :, :]
        best_prev = cand.argmax(axis=1)
        new_score = np.take_along_axis(cand, best_prev[:, None, :], axis=1)[:, 0, :]
        new_score = new_score + log_probs[:, t, :]
        active = (t < lengths)[:, None]
        score = np.where(active, new_score, score)
        back[:, t, :] = np.where(active, best_prev, identity)
    best = np.zeros((batch, steps), dtype=np.int64)
    best[:, steps - 1] = score.argmax(axis=1)
    for t in range(steps - 1, 0, -1):
        best[:, t - 1] = np.take_along_axis(back[:, t, :], best[:, t : t + 1], axis=1)[:, 0]
    return best


def best_tags(
    logits: np.ndarray, lengths: np.ndarray, start: np.ndarray, trans: np.ndarray
) -> np.ndarray:
    """Viterbi result ``[B, T]``, computed only where it can differ from the greedy argmax.

    With hard 0 / forbidden transition scores, a greedy path that breaks no constraint is
    already the best path; most tweets are such (mostly ``O``), so Viterbi runs on the rest.
    """
    greedy = logits.argmax(axis=-1)
    if greedy.shape[1] == 0:
        return greedy
    allowed = trans > _FORBIDDEN / 2
    active = np.arange(greedy.shape[1])[None, :] < lengths[:, None]
    bad_start = (start[greedy[:, 0]] <= _FORBIDDEN / 2) & active[:, 0]
    bad_step = ~allowed[greedy[:, :-1], greedy[:, 1:]] & active[:, 1:]
    invalid = bad_start | bad_step.any(axis=1)
    if invalid.any():
        rows = np.flatnonzero(invalid)
        greedy[rows] = viterbi(log_softmax(logits[rows]), lengths[rows], start, trans)
    return greedy


def bio_spans(tags: Sequence[str]) -> list[tuple[int, int, str]]:
    """Spans ``(start, end_exclusive, type)`` of a BIO sequence (a stray ``I-X`` opens one)."""
    spans: list[tuple[int, int, str]] = []
    begin: int | None = None
    kind = ""
    for i, tag in enumerate(tags):
        continues = tag.startswith("I-") and begin is not None and tag[2:] == kind
        if begin is not None and not continues:
            spans.append((begin, i, kind))
            begin = None
        if tag != "O" and not continues:
            begin, kind = i, tag[2:]
    if begin is not None:
        spans.append((begin, len(tags), kind))
    return spans


def id_spans(ids: np.ndarray, tags: Sequence[str]) -> list[tuple[int, int, str]]:
    """``bio_spans`` of one tweet's tag ids (``tags[0]`` is ``O``), visiting only the tagged
    tokens: most tweets hold none or one entity, so serving skips the per-token strings."""
    spans: list[tuple[int, int, str]] = []
    begin: int | None = None
    kind = ""
    previous = -2
    for i in np.flatnonzero(ids).tolist():
        tag = tags[ids[i]]
        continues = (begin is not None and previous == i - 1 and tag[0] == "I"
                     and tag[2:] == kind)
        if begin is not None and not continues:
            spans.append((begin, previous + 1, kind))
            begin = None
        if not continues:
            begin, kind = i, tag[2:]
        previous = i
    if begin is not None:
        spans.append((begin, previous + 1, kind))
    return spans


def span_probs(entity_logits: np.ndarray, start: int, end: int) -> tuple[float, float, float]:
    """Sentiment probabilities toward a mention: softmax of its tokens' mean logits, in plain
    Python (a mention's three numbers cost less so than through numpy's per-call overhead;
    serving makes one per mention)."""
    rows = entity_logits[start:end].tolist()
    count = len(rows)
    means = [sum(row[k] for row in rows) / count for k in range(3)]
    top = max(means)
    exps = [math.exp(x - top) for x in means]
    total = exps[0] + exps[1] + exps[2]
    return exps[0] / total, exps[1] / total, exps[2] / total


def span_sentiment(entity_logits: np.ndarray, start: int, end: int) -> np.ndarray:
    """``span_probs`` as an array (evaluation scores the same numbers serving stores)."""
    return np.asarray(span_probs(entity_logits, start, end))


class LabelSpace:
    """What ``labels.json`` says: the heads, their tags and outputs, and the serving head."""

    def __init__(self, document: dict) -> None:
        self.document = document
        self.ner_heads: dict[str, dict] = document["ner_heads"]
        self.serving_head: str = document["serving_ner_head"]
        self.entity_output: str = document["entity_sentiment_output"]
        self.tweet_output: str = document["tweet_sentiment_output"]
        if tuple(document["sentiments"]) != SENTIMENTS:
            raise ValueError(f"labels.json sentiments {document['sentiments']} != {SENTIMENTS}")
        self._constraints = {
            name: bio_constraints(head["tags"]) for name, head in self.ner_heads.items()
        }

        for name, head in self.ner_heads.items():
            if head["tags"][0] != "O":
                raise ValueError(f"labels.json head {name}: the first tag must be O")

    @classmethod
    def load(cls, path: Path) -> LabelSpace:
        return cls(json.loads(Path(path).read_text(encoding="utf-8")))

    def tag_ids(self, outputs: dict[str, np.ndarray], lengths: np.ndarray,
                head: str) -> np.ndarray:
        """Best tag ids ``[B, T]`` of one NER head under the BIO constraints."""
        start, trans = self._constraints[head]
        return best_tags(outputs[self.ner_heads[head]["output"]], lengths, start, trans)

    def decode(
        self,
        outputs: dict[str, np.ndarray],
        lengths: np.ndarray,
        heads: Sequence[str] | None = None,
    ) -> list[TokenAnalysis]:
        """Turn raw model outputs for a batch into per-example tags and sentiment scores."""
        names = list(self.ner_heads) if heads is None else list(heads)
        decoded = {name: self.tag_ids(outputs, lengths, name) for name in names}
        tweet_probs = softmax(outputs[self.tweet_output])
        entity_logits = outputs[self.entity_output]
        results = []
        for i, length in enumerate(lengths.tolist()):
            tags = {
                name: [self.ner_heads[name]["tags"][k] for k in decoded[name][i, :length]]
                for name in names
            }
            results.append(TokenAnalysis(tags, entity_logits[i, :length], tweet_probs[i]))
        return results


def read_model_card(model_dir: Path) -> dict:
    """The artifact's ``model_card.json`` (training recipe, figures, versions); empty when the
    folder has none. The one reader of the card, for serving, evaluation and benchmarks."""
    path = Path(model_dir) / MODEL_CARD
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (model files and data files are large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Analyzer:
    """Finds entity mentions in tweets and the sentiment toward each and toward the tweet.

    Thread-safe: an onnxruntime session may be run from several threads at once, and the rest
    is pure functions of the inputs.
    """

    def __init__(
        self,
        model_dir: Path,
        variant: Literal["fp32", "int8"] = "fp32",
        intra_op_threads: int = 1,
        batch_size: int = 64,
    ) -> None:
        model_dir = Path(model_dir)
        if variant not in MODEL_FILES:
            raise ValueError(f"variant must be one of {sorted(MODEL_FILES)}, got {variant!r}")
        model_path = model_dir / MODEL_FILES[variant]
        for needed in (model_path, model_dir / "vocab.json", model_dir / "labels.json"):
            if not needed.is_file():
                raise FileNotFoundError(f"model artifact incomplete: {needed} is missing")
        self.model_dir = model_dir
        self.variant = variant
        self.batch_size = batch_size
        self.vocab = Vocab.load(model_dir / "vocab.json")
        self.labels = LabelSpace.load(model_dir / "labels.json")
        card = read_model_card(model_dir)
        base_version = card.get("version") or file_sha256(model_path)[:12]
        self.model_version: str = f"{base_version}-{variant}"
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def run(self, token_lists: Sequence[Sequence[str]]) -> dict[str, np.ndarray]:
        """Raw outputs of the ONNX graph for one batch of token lists (plus ``lengths``)."""
        feeds = self.vocab.encode(token_lists)
        names = [out.name for out in self.session.get_outputs()]
        values = self.session.run(names, feeds)
        outputs = dict(zip(names, values, strict=True))
        outputs["lengths"] = feeds["lengths"]
        return outputs

    def _sorted_batches(self, token_lists: Sequence[Sequence[str]]
                        ) -> Iterator[tuple[list[int], dict[str, np.ndarray]]]:
        """(input indices, raw outputs) per sub-batch of ``batch_size``.

        Texts are sorted by length and run in sub-batches of ``batch_size`` so that each
        carries little padding (64 measured fastest for 256-tweet inputs: about +30% over one
        padded batch).
        """
        order = sorted(range(len(token_lists)), key=lambda i: len(token_lists[i]))
        for begin in range(0, len(order), self.batch_size):
            chunk = order[begin : begin + self.batch_size]
            yield chunk, self.run([token_lists[i] for i in chunk])

    def analyze_tokens(
        self, token_lists: Sequence[Sequence[str]], heads: Sequence[str] | None = None
    ) -> list[TokenAnalysis]:
        """Decoded analyses of pre-tokenised texts, in the input order (what evaluation
        scores). ``heads`` limits which NER heads are decoded (default: all of them)."""
        results: list[TokenAnalysis | None] = [None] * len(token_lists)
        for chunk, outputs in self._sorted_batches(token_lists):
            for i, analysis in zip(
                chunk, self.labels.decode(outputs, outputs["lengths"], heads), strict=True
            ):
                results[i] = analysis
        return [r for r in results if r is not None]

    def analyze(self, texts: Sequence[str],
                matcher: WatchMatcher | None = None) -> list[TweetPrediction]:
        """Tweet sentiment and entity mentions with their own sentiment: the serving NER head's
        spans (discovered entities) and, with a ``matcher``, every watched alias (see
        :func:`merge_mentions`). The same decoding as ``analyze_tokens``, without building
        a tag string per token."""
        tokenised = [tokenize(text) for text in texts]
        labels = self.labels
        serving = labels.serving_head
        tags = labels.ner_heads[serving]["tags"]
        predictions: list[TweetPrediction | None] = [None] * len(texts)
        for chunk, outputs in self._sorted_batches(
                [[tok.text for tok in tokens] for tokens in tokenised]):
            lengths = outputs["lengths"]
            ids = labels.tag_ids(outputs, lengths, serving)
            tweet_probs = softmax(outputs[labels.tweet_output]).tolist()
            entity_logits = outputs[labels.entity_output]
            for row, i in enumerate(chunk):
                length = int(lengths[row])
                tokens = tokenised[i]
                watched = matcher.match_tokens(tokens) if matcher is not None else []
                mentions = merge_mentions(texts[i], tokens, entity_logits[row, :length],
                                          id_spans(ids[row, :length], tags), watched)
                probs = tweet_probs[row]
                predictions[i] = TweetPrediction(
                    sentiment=SENTIMENTS[probs.index(max(probs))],
                    probs=(probs[0], probs[1], probs[2]),
                    mentions=mentions,
                )
        return [p for p in predictions if p is not None]


def _mention(text: str, tokens: Sequence[Token], entity_logits: np.ndarray, first: int,
             last: int, key: str, kind: str, type_source: str,
             watch: str | None) -> Mention:
    probs = span_probs(entity_logits, first, last)
    best = probs.index(max(probs))
    start, end = tokens[first].start, tokens[last - 1].end
    return Mention(entity=strip_invisible(text[start:end]), entity_key=key, type=kind,
                   start=start, end=end, sentiment=SENTIMENTS[best], score=probs[best],
                   probs=probs, watch=watch, type_source=type_source)


def merge_mentions(text: str, tokens: Sequence[Token], entity_logits: np.ndarray,
                   spans: Sequence[tuple[int, int, str]],
                   watched: Sequence[WatchMatch]) -> list[Mention]:
    """One mention per entity occurrence, in text order.

    A watched match and a model span that overlap are one mention: the watched entity names it
    (its key, so every alias folds into one history), the span is the union of both (the
    model often tags ``United Airlines`` where the alias is ``United``), and the type is the
    watchlist's, else the model's. The sentiment toward it pools the entity-sentiment logits
    over the mention's tokens. Model spans that touch no watched match are discovered
    entities, as before.
    """
    mentions: list[Mention] = []
    used: set[int] = set()
    for match in watched:
        first, last = match.first, match.last
        model_type = ""
        for index, (s, e, kind) in enumerate(spans):
            if (s < match.last and match.first < e and index not in used
                    and not any(o is not match and s < o.last and o.first < e
                                for o in watched)):
                used.add(index)
                first, last = min(first, s), max(last, e)
                model_type = model_type or kind
        entity = match.entity
        if entity.type:
            kind, source = entity.type, "watchlist"
        else:
            kind, source = model_type, ("model" if model_type else "")
        mentions.append(_mention(text, tokens, entity_logits, first, last, entity.key, kind,
                                 source,
                                 entity.name))
    taken = [(m.start, m.end) for m in mentions]
    for index, (s, e, kind) in enumerate(spans):
        if index in used:
            continue
        start, end = tokens[s].start, tokens[e - 1].end
        if any(a < end and start < b for a, b in taken):
            continue  # inside a widened watched mention
        surface = strip_invisible(text[start:end])
        key = entity_key(surface)
        if not nameable(key):  # bare symbols, e.g. the lone '#' of '!@#$*'
            continue
        if len(surface) > MAX_ENTITY_CHARS:
            continue  # a run-on span names nothing
        mentions.append(_mention(text, tokens, entity_logits, s, e, key, kind, "model", None))
    # A flood of spans is one tweet's noise: watched mentions first, then the model's.
    mentions = mentions[:MAX_MENTIONS]
    mentions.sort(key=lambda m: m.start)
    return mentions
