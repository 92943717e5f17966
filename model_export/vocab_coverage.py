"""How often entity tokens are unknown words, in training splits and in held-out ones.

The vocabulary is built from the training texts plus the unlabeled tweets, so every name in
training that occurs twice made it in, while new names in dev and test text did not. An
unknown word reaches the encoder as the ``UNK`` row, and only the char-CNN and the context can
type it. This measures that gap, the way the runtime looks words up (``Vocab.word_id``, with
its ``@Name``/``#Name`` fallback); ``--entity-word-dropout`` in training is sized from it.

    python -m model_export.vocab_coverage [--model-dir DIR] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from model_export.heads import NER_HEADS
from model_export.readers import TaggedSentence, read_conll
from stream.settings import get_settings
from stream.textproc import Vocab

SPLITS = ("train", "dev", "test")


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


def main(argv: Sequence[str] | None = None) -> None:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="python -m model_export.vocab_coverage",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=settings.model_dir,
                        help="artifact whose vocab.json to measure (default: the served model)")
    parser.add_argument("--data-dir", type=Path, default=settings.data_dir,
                        help="shared data folder (default: setting TWEETWATCH_DATA_DIR)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # the readers' notes on skipped lines
    vocab_path = args.model_dir / "vocab.json"
    if not vocab_path.is_file():
        parser.exit(2, f"{parser.prog}: error: no vocab.json in {args.model_dir}\n")
    rows = coverage_table(Vocab.load(vocab_path), args.data_dir)
    if not rows:
        parser.exit(2, f"{parser.prog}: error: no NER corpora under {args.data_dir}\n")
    print("| corpus | split | tweets | entity tokens | entity tokens unknown | "
          "all tokens unknown |")
    print("|---|---|---|---|---|---|")
    for dataset, split, c in rows:
        print(f"| {dataset} | {split} | {c.sentences:,} | {c.entity_tokens:,} | "
              f"{100 * c.entity_unknown_share:.1f}% | {100 * c.unknown_share:.1f}% |")


if __name__ == "__main__":
    main(sys.argv[1:])
