"""Readers for the shared data files (CoNLL BIO/BIEOS, sentiment TSVs, raw tweets).

Research data is messy; a reader either copes with a documented quirk (and says what it skipped)
or stops with an error that names the file and the line, so a broken copy is found in seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from stream.predictions import SENTIMENTS

log = logging.getLogger(__name__)

BIO_PREFIXES = ("B-", "I-")
BIEOS_PREFIXES = ("B-", "I-", "E-", "S-")
POLARITIES = {"NEG": "negative", "NEU": "neutral", "POS": "positive"}


class DataFormatError(ValueError):
    """A data file line that cannot be read; the message names the file and line."""

    def __init__(self, path: Path, line_no: int, reason: str) -> None:
        super().__init__(f"{path}:{line_no}: {reason}")
        self.path = path
        self.line_no = line_no
        self.reason = reason


@dataclass(slots=True)
class TaggedSentence:
    """A pre-tokenised sentence with one tag per token."""

    tokens: list[str]
    tags: list[str]


# Skipped lines already logged by this process: training rereads the dev files every epoch,
# and the same four BTC quirks once an epoch drown the progress lines; ``skipped`` keeps them all.
_REPORTED: set[str] = set()


@dataclass(slots=True)
class ConllFile:
    """Sentences of one CoNLL file plus the lines the reader skipped (and why)."""

    sentences: list[TaggedSentence]
    skipped: list[str] = field(default_factory=list)


@dataclass(slots=True)
class LabelledText:
    """A raw tweet with a sentiment label and, for target-based data, the target."""

    label: str
    text: str
    target: str | None = None


def _check_tag(path: Path, line_no: int, tag: str, prefixes: tuple[str, ...]) -> None:
    if tag == "O":
        return
    if not tag.startswith(prefixes) or len(tag) <= 2:
        raise DataFormatError(path, line_no, f"unknown tag {tag!r}")


def read_conll(path: Path, scheme: str = "BIO") -> ConllFile:
    """Read ``token<TAB>tag`` (or ``token tag``) lines, blank line between sentences.

    A line holding only a tab separates sentences too (``wnut17/train.conll`` uses it). A line
    of spaces, or a line with an empty token (both inside a broken URL in ``btc/test.conll``),
    is skipped and reported in ``skipped``; anything else malformed raises
    :class:`DataFormatError`.
    """
    prefixes = BIO_PREFIXES if scheme == "BIO" else BIEOS_PREFIXES
    sentences: list[TaggedSentence] = []
    skipped: list[str] = []
    tokens: list[str] = []
    tags: list[str] = []
    with open(path, encoding="utf-8") as handle:
        for line_no, raw in enumerate(handle, start=1):
            line = raw.rstrip("\r\n")
            if line == "":
                if tokens:
                    sentences.append(TaggedSentence(tokens, tags))
                    tokens, tags = [], []
                continue
            if line.strip() == "" and "\t" in line:
                # An empty token with an empty tag: the sentence separator some files use.
                if tokens:
                    sentences.append(TaggedSentence(tokens, tags))
                    tokens, tags = [], []
                continue
            if line.strip() == "":
                skipped.append(f"{path}:{line_no}: whitespace-only line skipped")
                continue
            sep = "\t" if "\t" in line else " "
            if sep not in line:
                raise DataFormatError(path, line_no, f"expected 'token<TAB>tag', got {line!r}")
            token, _, tag = line.rpartition(sep)
            if token.strip() == "":
                skipped.append(f"{path}:{line_no}: empty token (tag {tag!r}) skipped")
                continue
            _check_tag(path, line_no, tag, prefixes)
            tokens.append(token)
            tags.append(tag)
    if tokens:
        sentences.append(TaggedSentence(tokens, tags))
    for message in skipped:
        if message not in _REPORTED:
            _REPORTED.add(message)
            log.warning(message)
    return ConllFile(sentences, skipped)


def read_sentiment_tsv(path: Path, with_target: bool = False) -> list[LabelledText]:
    """Read ``label<TAB>text`` (or ``label<TAB>target<TAB>text``) lines."""
    fields = 3 if with_target else 2
    rows: list[LabelledText] = []
    with open(path, encoding="utf-8") as handle:
        for line_no, raw in enumerate(handle, start=1):
            line = raw.rstrip("\r\n")
            parts = line.split("\t", fields - 1)
            if len(parts) != fields or not parts[-1].strip():
                raise DataFormatError(
                    path, line_no, f"expected {fields} tab-separated fields, got {line[:80]!r}"
                )
            if parts[0] not in SENTIMENTS:
                raise DataFormatError(path, line_no, f"unknown label {parts[0]!r}")
            target = parts[1] if with_target else None
            rows.append(LabelledText(parts[0], parts[-1], target))
    return rows


def read_lines(path: Path) -> Iterator[str]:
    """Non-empty lines of a raw text file (one tweet a line)."""
    with open(path, encoding="utf-8") as handle:
        for raw in handle:
            line = raw.strip()
            if line:
                yield line


def bieos_spans(tags: list[str]) -> list[tuple[int, int, str]]:
    """Spans ``(start, end_exclusive, polarity)`` of a unified BIEOS polarity tag sequence.

    Lenient like conlleval: a span starts at B/S (or at an I/E that does not continue the
    open span) and ends at E/S or before anything that does not continue it.
    """
    spans: list[tuple[int, int, str]] = []
    start: int | None = None
    label = ""
    for i, tag in enumerate(tags):
        prefix, _, lab = tag.partition("-")
        if start is not None and (prefix in ("B", "S", "O") or lab != label):
            spans.append((start, i, POLARITIES.get(label, label)))
            start = None
        if prefix == "O":
            continue
        if start is None:
            start, label = i, lab
        if prefix in ("E", "S"):
            spans.append((start, i + 1, POLARITIES.get(label, label)))
            start = None
    if start is not None:
        spans.append((start, len(tags), POLARITIES.get(label, label)))
    return spans
