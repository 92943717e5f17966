"""Training and evaluation examples built from the shared data folder.

Every example carries the labels it has (NER tags for one head, token-level entity sentiment,
tweet sentiment); a batch contributes only the losses its examples have labels for.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from model_export.heads import HEAD_BY_NAME, NER_HEADS
from model_export.readers import (
    LabelledText,
    TaggedSentence,
    bieos_spans,
    read_conll,
    read_lines,
    read_sentiment_tsv,
)
from model_export.tmsc import read_tmsc
from stream.predictions import SENTIMENTS
from stream.textproc import URL_TOKEN, entity_key, normalize, tokenize

IGNORE = -100
SENTIMENT_INDEX = {name: i for i, name in enumerate(SENTIMENTS)}
ANONYMOUS_HANDLE = "@user"
_HANDLE = re.compile(r"@\w+")


@dataclasses.dataclass(slots=True)
class Example:
    """One tokenised text with the labels it has; ``task`` groups examples into batches."""

    task: str
    tokens: list[str]
    ner_head: str | None = None
    ner_tags: list[int] | None = None
    entity_sentiment: list[int] | None = None
    tweet_sentiment: int | None = None
    # The teacher's outputs by ONNX output name (distillation examples only).
    soft: dict[str, np.ndarray] | None = None


def dev_shares(entries: Sequence[str]) -> dict[str, float]:
    """``("wnut16", "wnut17:0.5")`` -> ``{"wnut16": 1.0, "wnut17": 0.5}``: which NER dev
    splits join the training data, and how much of each (the rest stays held out)."""
    shares: dict[str, float] = {}
    for entry in entries:
        name, colon, share = entry.partition(":")
        try:
            value = float(share) if colon else 1.0
        except ValueError:
            value = -1.0
        if name not in ("wnut16", "wnut17", "btc") or not 0 < value <= 1 or name in shares:
            raise ValueError(f"{entry!r}: a dev split to train on is wnut16, wnut17 or btc, "
                             "once, optionally with :SHARE in (0, 1] (e.g. wnut17:0.5)")
        shares[name] = value
    return shares


def dev_tweet_trains(tokens: Sequence[str], share: float) -> bool:
    """Whether a dev tweet falls in the trained part of a split shared ``share`` : rest.

    Decided by a hash of the text, not by position: the same tweets on every machine and in
    every process, and identical texts always on the same side.
    """
    return in_hashed_share("\x1f".join(tokens), share)


def in_hashed_share(key: str, share: float) -> bool:
    """Whether ``key`` falls in the first ``share`` of a hash order: a split that is the same
    on every machine and in every process, and never a draw."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") < share * 2**64


def held_out_dev(token_lists: Sequence[Sequence[str]], head_name: str,
                 shares: Mapping[str, float]) -> list[bool]:
    """For each dev tweet of a head, whether it is scored: the part of a split that did not
    train. A split that trained whole is still scored whole (the dev objective leaves it
    out, and its score shows how well training fitted it)."""
    share = shares.get(head_name, 0.0)
    if share >= 1:
        return [True] * len(token_lists)
    return [not dev_tweet_trains(tokens, share) for tokens in token_lists]


def fully_trained(shares: Mapping[str, float]) -> tuple[str, ...]:
    """Corpora whose whole dev split trains: the dev objective leaves them out and
    calibration leaves their heads alone."""
    return tuple(name for name, share in shares.items() if share >= 1)


def held_out_dev_sentences(data_dir: Path, head_name: str,
                           shares: Mapping[str, float]) -> list[TaggedSentence]:
    """A head's dev sentences that are scored (see ``held_out_dev``)."""
    sentences = read_conll(data_dir / HEAD_BY_NAME[head_name].dataset / "dev.conll").sentences
    held = held_out_dev([s.tokens for s in sentences], head_name, shares)
    return [s for s, keep in zip(sentences, held, strict=True) if keep]


def ner_examples(data_dir: Path, head_name: str, split: str) -> list[Example]:
    """CoNLL BIO examples for one NER head (``wnut16``, ``wnut17``, ``btc``)."""
    head = HEAD_BY_NAME[head_name]
    index = {tag: i for i, tag in enumerate(head.tags)}
    path = data_dir / head.dataset / f"{split}.conll"
    examples = []
    for sentence in read_conll(path).sentences:
        examples.append(
            Example(head.dataset, sentence.tokens, head.name, [index[t] for t in sentence.tags])
        )
    return examples


def mitchell_examples(data_dir: Path, fold: int, split: str) -> list[Example]:
    """Mitchell 2013 examples: target spans for the ``targets`` head plus the polarity toward
    each target on its tokens (entity sentiment); other tokens carry no sentiment label."""
    head = HEAD_BY_NAME["targets"]
    path = data_dir / "targeted_sentiment" / "mitchell2013" / f"fold{fold}" / f"{split}.conll"
    examples = []
    for sentence in read_conll(path, scheme="BIEOS").sentences:
        tags = [0] * len(sentence.tokens)
        polarity = [IGNORE] * len(sentence.tokens)
        for start, end, label in bieos_spans(sentence.tags):
            tags[start] = head.tags.index("B-TARGET")
            for i in range(start + 1, end):
                tags[i] = head.tags.index("I-TARGET")
            for i in range(start, end):
                polarity[i] = SENTIMENT_INDEX[label]
        examples.append(Example("mitchell2013", sentence.tokens, head.name, tags, polarity))
    return examples


def sentiment_examples(data_dir: Path, split: str, limit: int | None = None) -> list[Example]:
    """SemEval-2017 4A tweets with tweet-level sentiment (the first ``limit`` if given)."""
    rows = read_sentiment_tsv(data_dir / "sentiment" / f"{split}.tsv")[:limit]
    return [
        Example("sentiment", [t.text for t in tokenize(r.text)],
                tweet_sentiment=SENTIMENT_INDEX[r.label])
        for r in rows
    ]


def anonymise_handles(example: Example) -> Example:
    """The example with every @handle written ``@user``, the form TweetEval gave the 4A val
    and test tweets: the training tweets keep real handles, so without this the tweet head
    never sees the ``@user`` that 39% of the test tweets hold."""
    tokens = [ANONYMOUS_HANDLE if _HANDLE.fullmatch(tok) else tok for tok in example.tokens]
    return dataclasses.replace(example, tokens=tokens)


def strip_urls(example: Example) -> Example:
    """The example without its URLs, as TweetEval gave the 4A val and test tweets: 29% of the
    training tweets hold one (54% of those are neutral), 0.2% of val and 3% of test do, so a
    tweet head trained with them leans on the URL for `neutral` and finds it missing on test."""
    tokens = [tok for tok in example.tokens if normalize(tok) != URL_TOKEN]
    return dataclasses.replace(example, tokens=tokens)


def locate_target(tokens: Sequence[str], target: str) -> list[tuple[int, int]]:
    """Token spans whose joined entity keys equal the target's key.

    ``#ArianaGrande``, ``Ariana Grande`` and ``ariana grande's`` all locate the target
    ``ariana grande``; used to turn topic-level labels into token-level supervision and to
    score topic polarity through the entity-sentiment head.
    """
    wanted = entity_key(target)
    keys = [entity_key(tok) for tok in tokens]
    spans = []
    for i in range(len(tokens)):
        joined = ""
        for j in range(i, len(tokens)):
            joined += keys[j]
            if joined == wanted:
                spans.append((i, j + 1))
                break
            if not wanted.startswith(joined) or not joined:
                break
    return spans


def topic_rows(data_dir: Path, split: str) -> list[LabelledText]:
    """SemEval-2017 4B (topic) rows: label, target, text."""
    return read_sentiment_tsv(
        data_dir / "targeted_sentiment" / "semeval2017_topic" / f"{split}.tsv", with_target=True
    )


def held_out_topics(data_dir: Path, share: float) -> set[str]:
    """The SemEval-2016 topics (lower-cased 4B targets) whose tweets form the 4A dev split of
    ``--sentiment-dev-topics``: ``share`` of the topics, chosen by a hash of the name, so the
    same topics on every machine.

    TweetEval's val tweets are drawn from the same pool as the training tweets, and it moved
    against 2017 test where a change met new words; whole unseen topics bring their own
    words, as test's 2017 topics do.
    """
    topics = {(row.target or "").lower() for row in topic_rows(data_dir, "train")}
    return {topic for topic in topics if in_hashed_share(topic, share)}


def text_key(tokens: Sequence[str]) -> tuple[str, ...]:
    """Case-blind identity of a tokenised text, to find a 4B row's tweet among the 4A ones."""
    return tuple(token.lower() for token in tokens)


@functools.lru_cache(maxsize=4)
def held_out_topic_texts(data_dir: Path, share: float) -> frozenset[tuple[str, ...]]:
    """``text_key`` of every 4B training tweet about a held-out topic (empty for share 0)."""
    if share <= 0:
        return frozenset()
    topics = held_out_topics(data_dir, share)
    return frozenset(text_key(t.text for t in tokenize(row.text))
                     for row in topic_rows(data_dir, "train")
                     if (row.target or "").lower() in topics)


def sentiment_dev_examples(data_dir: Path, topic_share: float = 0.0) -> list[Example]:
    """The 4A tweets that the dev objective and the prior correction score: TweetEval val, or,
    with ``topic_share`` > 0, the 4A training tweets of the held-out topics, with handles
    and URLs removed as TweetEval gave its val and test tweets."""
    if topic_share <= 0:
        return sentiment_examples(data_dir, "val")
    return list(_held_out_topic_tweets(data_dir, topic_share))


@functools.lru_cache(maxsize=4)
def _held_out_topic_tweets(data_dir: Path, share: float) -> tuple[Example, ...]:
    """Cached: every epoch scores them, and finding them tokenises all 48k training tweets
    (2 s, against 0.06 s for val)."""
    held = held_out_topic_texts(data_dir, share)
    return tuple(strip_urls(anonymise_handles(e)) for e in sentiment_examples(data_dir, "train")
                 if text_key(e.tokens) in held)


def topic_examples(data_dir: Path, split: str, limit: int | None = None) -> list[Example]:
    """Topic rows whose target is found in the text, as token-level entity sentiment."""
    examples: list[Example] = []
    for row in topic_rows(data_dir, split):
        if limit is not None and len(examples) >= limit:
            break
        tokens = [t.text for t in tokenize(row.text)]
        spans = locate_target(tokens, row.target or "")
        if not spans:
            continue
        polarity = [IGNORE] * len(tokens)
        for start, end in spans:
            for i in range(start, end):
                polarity[i] = SENTIMENT_INDEX[row.label]
        examples.append(Example("topic", tokens, entity_sentiment=polarity))
    return examples


def join_marks(tokens: Sequence[str]) -> tuple[list[str], list[int]]:
    """TMSC's tokens (``@ user``, ``# tag``) as the runtime tokeniser gives them (``@user``,
    ``#tag``), and for each original token the index of the token it became part of."""
    joined: list[str] = []
    position: list[int] = []
    for i, token in enumerate(tokens):
        previous = tokens[i - 1] if i else ""
        if previous in ("@", "#") and joined and joined[-1] == previous and (
                token[:1].isalnum() or token[:1] == "_"):
            joined[-1] += token
        else:
            joined.append(token)
        position.append(len(joined) - 1)
    return joined, position


def tmsc_examples(data_dir: Path, split: str) -> list[Example]:
    """TMSC pairs as token-level entity sentiment, one example per tweet holding the polarity
    toward each of its targets on the target's tokens: several targets per tweet, often with
    different polarities, teach the head that sentiment belongs to a mention, not the tweet."""
    by_text: dict[tuple[str, ...], list[int]] = {}
    joined_of: dict[tuple[str, ...], tuple[list[str], list[int]]] = {}
    for example in read_tmsc(data_dir, split):
        if example.tokens not in joined_of:
            joined_of[example.tokens] = join_marks(example.tokens)
        joined, position = joined_of[example.tokens]
        polarity = by_text.setdefault(example.tokens, [IGNORE] * len(joined))
        for i in range(position[example.start], position[example.end - 1] + 1):
            polarity[i] = example.label
    return [Example("tmsc", joined_of[text][0], entity_sentiment=polarity)
            for text, polarity in by_text.items()]


def unlabeled_token_lists(data_dir: Path,
                          files: Sequence[str] = ("tweets.txt",)) -> list[list[str]]:
    """Token lists of the unlabeled tweet files (``unlabeled/NAME``, one tweet a line), for
    the word vectors and the distillation set; with a progress bar (320k tweets in all)."""
    lists: list[list[str]] = []
    for name in files:
        lines = read_lines(data_dir / "unlabeled" / name)
        lists.extend([t.text for t in tokenize(line)]
                     for line in tqdm(lines, desc=f"tokenising {name}", unit="tweet"))
    return lists


def training_texts(data_dir: Path, mitchell_folds: Sequence[int]) -> list[list[str]]:
    """Token lists of every training split (never dev/test), for embeddings and vocabulary."""
    texts: list[list[str]] = []
    for head in NER_HEADS:
        if head.name != "targets":
            texts.extend(e.tokens for e in ner_examples(data_dir, head.name, "train"))
    for fold in mitchell_folds:
        texts.extend(e.tokens for e in mitchell_examples(data_dir, fold, "train"))
    texts.extend(e.tokens for e in sentiment_examples(data_dir, "train"))
    texts.extend([t.text for t in tokenize(r.text)] for r in topic_rows(data_dir, "train"))
    return texts
