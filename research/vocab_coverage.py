"""How often entity tokens are unknown words, in training splits and in held-out ones.

The vocabulary is built from the training texts plus the unlabeled tweets, so every name in
training that occurs twice made it in, while new names in dev and test text did not. An
unknown word reaches the encoder as the ``UNK`` row, and only the char-CNN and the context can
type it. This measures that gap, the way the runtime looks words up (``Vocab.word_id``, with
its ``@Name``/``#Name`` fallback); ``--entity-word-dropout`` in training is sized from it.

The second table does the same for the tweet head's own bag-of-words table: a row of it is
trained only if a SemEval-4A training tweet holds its word, so a word met first in val or test
reaches the tweet head as an untrained row (``--bow-from-vectors`` is aimed at that). With
``--score`` the artifact also scores 4A on the tweets that hold such a word and on the rest.
With ``--sentiment-dev-topics SHARE`` the held-out topics' tweets leave the training tweets,
as in such a run, and join the table as a 4A split of their own.

    python -m research.vocab_coverage [--model-dir DIR] [--data-dir DIR] [--score]
        [--sentiment-dev-topics SHARE]
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import click

from model_export.corpus import (
    anonymise_handles,
    held_out_topic_texts,
    sentiment_dev_examples,
    sentiment_examples,
    text_key,
)
from model_export.heads import NER_HEADS
from model_export.readers import TaggedSentence, read_conll
from stream.settings import get_settings
from stream.textproc import Vocab

SPLITS = ("train", "dev", "test")
SENTIMENT_SPLITS = ("val", "test")


@dataclass(frozen=True, slots=True)
class Coverage:
    """Counts of one split: entity tokens and all tokens, and how many of each are unknown."""

    sentences: int
    entity_tokens: int
    entity_unknown: int
    tokens: int
    unknown: int

    @property
    def entity_unknown_share(self) -> float:
        return self.entity_unknown / max(self.entity_tokens, 1)

    @property
    def unknown_share(self) -> float:
        return self.unknown / max(self.tokens, 1)


def coverage(vocab: Vocab, sentences: Sequence[TaggedSentence]) -> Coverage:
    """Unknown-word counts over the tokens of ``sentences`` (entity = any tag but ``O``)."""
    entity = entity_unknown = tokens = unknown = 0
    for sentence in sentences:
        for token, tag in zip(sentence.tokens, sentence.tags, strict=True):
            missing = vocab.word_id(token) == 1
            tokens += 1
            unknown += missing
            if tag != "O":
                entity += 1
                entity_unknown += missing
    return Coverage(len(sentences), entity, entity_unknown, tokens, unknown)


def coverage_table(vocab: Vocab, data_dir: Path) -> list[tuple[str, str, Coverage]]:
    """Coverage of every split of the BIO-tagged NER corpora found under ``data_dir`` (the
    targets head's Mitchell folds live under ``targeted_sentiment/``, so it has none)."""
    rows = []
    for head in NER_HEADS:
        for split in SPLITS:
            path = data_dir / head.dataset / f"{split}.conll"
            if path.is_file():
                rows.append((head.dataset, split, coverage(vocab, read_conll(path).sentences)))
    return rows


@dataclass(frozen=True, slots=True)
class BagCoverage:
    """Counts of one 4A split: tokens whose bag-of-words row no training tweet trains
    (``unread``: in the vocabulary, never in a 4A training tweet) or that are unknown."""

    tweets: int
    tweets_with_unread: int
    tokens: int
    unread: int
    unknown: int


def bag_rows_read(vocab: Vocab, data_dir: Path, topic_share: float = 0.0) -> set[int]:
    """Word ids that the 4A training tweets hold, as training reads them: handles written
    ``@user``, and each token also lower-cased (training lower-cases a fifth of its tweets);
    without the held-out topics' tweets when ``topic_share`` > 0."""
    held = held_out_topic_texts(data_dir, topic_share)
    read: set[int] = set()
    for example in sentiment_examples(data_dir, "train"):
        if text_key(example.tokens) in held:
            continue
        for token in anonymise_handles(example).tokens:
            read.update((vocab.word_id(token), vocab.word_id(token.lower())))
    return read


def is_unread(word_id: int, read: set[int]) -> bool:
    """A known word (not PAD or UNK) whose bag row no 4A training tweet trains."""
    return word_id > 1 and word_id not in read


def holds_unread(vocab: Vocab, tokens: Sequence[str], read: set[int]) -> bool:
    return any(is_unread(i, read) for i in map(vocab.word_id, tokens))


def bag_coverage(vocab: Vocab, tweets: Sequence[Sequence[str]], read: set[int]) -> BagCoverage:
    """How many tokens (and tweets) of ``tweets`` meet an untrained bag row or ``UNK``."""
    tokens = unread = unknown = with_unread = 0
    for tweet in tweets:
        ids = [vocab.word_id(token) for token in tweet]
        missing = sum(1 for i in ids if is_unread(i, read))
        tokens += len(ids)
        unread += missing
        unknown += sum(1 for i in ids if i == 1)
        with_unread += missing > 0
    return BagCoverage(len(tweets), with_unread, tokens, unread, unknown)


def sentiment_by_unread(model_dir: Path, data_dir: Path, split: str,
                        read: set[int]) -> dict[str, dict]:
    """4A scores of the fp32 artifact on the tweets of ``split`` that hold an untrained bag
    row and on the others (the runtime's decoding, as ``tweetwatch eval``)."""
    from model_export.evaluate import classification_scores
    from stream.inference import Analyzer
    from stream.predictions import SENTIMENTS

    analyzer = Analyzer(model_dir, variant="fp32")
    examples = sentiment_examples(data_dir, split)
    analyses = analyzer.analyze_tokens([e.tokens for e in examples], [])
    groups: dict[str, tuple[list[int], list[int]]] = {"with": ([], []), "without": ([], [])}
    for example, analysis in zip(examples, analyses, strict=True):
        gold, pred = groups["with" if holds_unread(analyzer.vocab, example.tokens, read)
                            else "without"]
        gold.append(int(example.tweet_sentiment))  # type: ignore[arg-type]
        pred.append(int(analysis.tweet_probs.argmax()))
    return {name: {"tweets": len(gold), **classification_scores(gold, pred,
                                                                range(len(SENTIMENTS)))}
            for name, (gold, pred) in groups.items()}


_FOLDER = click.Path(file_okay=False, path_type=Path)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model-dir", type=_FOLDER, default=None,
              help="Artifact whose vocab.json to measure [default: the served model].")
@click.option("--data-dir", type=_FOLDER, default=None,
              help="Shared data folder [default: setting TWEETWATCH_DATA_DIR].")
@click.option("--score", is_flag=True,
              help="Also score 4A test with the artifact, split by whether a tweet holds a word "
                   "with an untrained bag-of-words row.")
@click.option("--sentiment-dev-topics", type=click.FloatRange(0, 1, max_open=True), default=0.0,
              show_default=True, metavar="SHARE",
              help="Leave this share of the SemEval-2016 topics out of the 4A training tweets "
                   "and measure their tweets as a split (as the recipe's "
                   "data.sentiment_dev_topics does).")
def main(model_dir: Path | None, data_dir: Path | None, score: bool,
         sentiment_dev_topics: float) -> None:
    """Vocabulary coverage of the NER corpora and of the 4A splits by an artifact's
    vocabulary (and, with --score, 4A test split by untrained bag-of-words rows)."""
    settings = get_settings()
    model_dir = model_dir or settings.model_dir
    data_dir = data_dir or settings.data_dir
    logging.basicConfig(level=logging.ERROR)  # the readers' notes on skipped lines
    vocab_path = model_dir / "vocab.json"
    if not vocab_path.is_file():
        raise click.UsageError(f"no vocab.json in {model_dir}")
    vocab = Vocab.load(vocab_path)
    rows = coverage_table(vocab, data_dir)
    if not rows:
        raise click.UsageError(f"no NER corpora under {data_dir}")
    print("| corpus | split | tweets | entity tokens | entity tokens unknown | "
          "all tokens unknown |")
    print("|---|---|---|---|---|---|")
    for dataset, split, c in rows:
        print(f"| {dataset} | {split} | {c.sentences:,} | {c.entity_tokens:,} | "
              f"{100 * c.entity_unknown_share:.1f}% | {100 * c.unknown_share:.1f}% |")
    if not (data_dir / "sentiment" / "train.tsv").is_file():
        if score:
            raise click.UsageError(f"no sentiment/train.tsv under {data_dir}")
        return  # no 4A data: the NER table is all there is to measure
    read = bag_rows_read(vocab, data_dir, sentiment_dev_topics)
    splits = {split: sentiment_examples(data_dir, split) for split in SENTIMENT_SPLITS}
    if sentiment_dev_topics > 0:
        splits[f"held-out topics ({sentiment_dev_topics:g})"] = sentiment_dev_examples(
            data_dir, sentiment_dev_topics)
    print("\n| 4A split | tweets | tokens with an untrained bag row | unknown tokens | "
          "tweets holding an untrained bag row |")
    print("|---|---|---|---|---|")
    for split, examples in splits.items():
        b = bag_coverage(vocab, [e.tokens for e in examples], read)
        print(f"| {split} | {b.tweets:,} | {100 * b.unread / max(b.tokens, 1):.1f}% | "
              f"{100 * b.unknown / max(b.tokens, 1):.1f}% | "
              f"{100 * b.tweets_with_unread / max(b.tweets, 1):.1f}% |")
    if score:
        scores = sentiment_by_unread(model_dir, data_dir, "test", read)
        print("\n| 4A test tweets | tweets | macro recall | recall neg / neu / pos |")
        print("|---|---|---|---|")
        for name, row in scores.items():
            recall = " / ".join(f"{r:.3f}" for r in row["recall_per_class"].values())
            print(f"| {name} an untrained bag row | {row['tweets']:,} | "
                  f"{row['macro_recall']:.4f} | {recall} |")


if __name__ == "__main__":
    main()
