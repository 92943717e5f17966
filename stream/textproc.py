"""Tweet text processing shared by training (model_export) and serving (stream).

Training and serving must see tokens the same way, or the model silently degrades in
production; so tokenisation, normalisation, vocabulary lookup and id tensors live here, once.
numpy only: the runtime imports no torch.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from itertools import chain
from pathlib import Path
from typing import NamedTuple

import numpy as np

PAD = "<pad>"
UNK = "<unk>"
UNK_ID = 1  # Vocab's id of UNK, for unknown words and characters (0 pads)
URL_TOKEN = "<url>"
MAX_CHARS_PER_TOKEN = 20
_ENCODE_CACHE_SIZE = 200_000

_URL = r"(?:https?://|www\.)\S+"
_MENTION = r"@\w+"
_HASHTAG = r"#\w+"
_EMAIL = r"[\w.+-]+@[\w-]+\.[\w.-]+"
# Emoji and pictographs: one token each (sequences joined by ZWJ / variation selectors stay whole).
_EMOJI = (
    r"(?:[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF\u2300-\u23FF]"
    r"[\uFE0F\U0001F3FB-\U0001F3FF]*(?:\u200D[\U0001F000-\U0001FAFF\u2600-\u27BF][\uFE0F]*)*)"
)
_NUMBER = r"\d+(?:[.,:/]\d+)*(?:st|nd|rd|th|s|am|pm|k|m)?"
# Zero-width and bidi control characters (format characters a reader never sees): inside a word
# they must not split it (``Micro\u2060soft`` is one word), and alone they are no token at all.
_INVISIBLE_CLASS = "[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]"
_WORD = (r"[^\W\d_](?:[^\W_]|" + _INVISIBLE_CLASS
         + r"+(?=[^\W_])|['’.&-](?=[^\W_]))*|_+")
_EMOTICON = r"[:;=8][\-o*']?[)\](\[dDpP/:}{@|\\]|<3"
_PUNCT = r"[^\s\w]+?"
_TOKEN_RE = re.compile(
    "|".join([_URL, _EMAIL, _MENTION, _HASHTAG, _EMOJI, _EMOTICON, _NUMBER, _WORD,
              _INVISIBLE_CLASS + "+", _PUNCT]),
    re.UNICODE,
)
INVISIBLE = re.compile(_INVISIBLE_CLASS + "+")
_ELONGATION = re.compile(r"(.)\1{2,}")
_DIGIT = re.compile(r"\d")
_URL_FULL = re.compile(_URL + r"$")
_ENTITY_KEY_DROP = re.compile(r"[\W_]+", re.UNICODE)
_POSSESSIVE = re.compile(r"['’]s$", re.IGNORECASE)


class Token(NamedTuple):
    """A token with its character offsets in the original text (for entity spans); a named
    tuple, as every tweet makes a score of them (a third of the tokeniser's time as a
    dataclass)."""

    text: str
    start: int
    end: int


_INVISIBLE_CHARS = frozenset("\u00ad\u180e\ufeff" + "".join(
    chr(c) for lo, hi in ((0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x2069))
    for c in range(lo, hi + 1)))


_new_token = tuple.__new__  # Token(...) through its generated __new__ costs a Python call


def tokenize(text: str) -> list[Token]:
    """Split a tweet into tokens: URLs, @mentions, #hashtags, emoji and emoticons stay whole."""
    if _INVISIBLE_CHARS.isdisjoint(text):  # almost every tweet: no token to drop
        return [_new_token(Token, (m[0], m.start(), m.end())) for m in _TOKEN_RE.finditer(text)]
    tokens = []
    for match in _TOKEN_RE.finditer(text):
        value = match.group()
        if value[0] in _INVISIBLE_CHARS and INVISIBLE.fullmatch(value):
            continue
        start, end = match.span()
        tokens.append(Token(value, start, end))
    return tokens


def strip_invisible(text: str) -> str:
    """``text`` without zero-width and bidi control characters: ``Trump\u200b`` and ``Trump``
    are one name to a reader, so they must be one name in the store."""
    return INVISIBLE.sub("", text)


def normalize(token: str) -> str:
    """The vocabulary form of a token: lower case, URLs and digits folded, elongations squeezed.

    ``soooo`` and ``sooooooo`` meet at ``soo``; ``2019`` and ``1984`` at ``0000``.
    """
    if _URL_FULL.match(token):
        return URL_TOKEN
    token = unicodedata.normalize("NFKC", strip_invisible(token)).lower()
    token = _ELONGATION.sub(r"\1\1", token)
    return _DIGIT.sub("0", token)


def entity_key(surface: str) -> str:
    """The key under which mentions of one entity meet: ``@Microsoft``, ``#microsoft``,
    ``Microsoft's`` and ``MICROSOFT`` all give ``microsoft``; ``Bank of America`` and
    ``#BankOfAmerica`` both give ``bankofamerica``."""
    text = unicodedata.normalize("NFKC", strip_invisible(surface)).strip().casefold()
    text = _POSSESSIVE.sub("", text.lstrip("@#"))
    key = _ENTITY_KEY_DROP.sub("", text)
    return key or text


def nameable(key: str) -> bool:
    """Whether an entity key names something (has a letter or digit): a span tagged on bare
    symbols, or a history query for one, names nothing, and its key may even be empty."""
    return any(ch.isalnum() for ch in key)


class Vocab:
    """Word and character vocabularies (index 0 = padding, 1 = unknown)."""

    def __init__(self, words: Sequence[str], chars: Sequence[str]) -> None:
        if list(words[:2]) != [PAD, UNK] or list(chars[:2]) != [PAD, UNK]:
            raise ValueError("vocabularies must start with <pad>, <unk>")
        self.words = list(words)
        self.chars = list(chars)
        self.word_index = {w: i for i, w in enumerate(self.words)}
        self.char_index = {c: i for i, c in enumerate(self.chars)}
        self._cache: dict[str, tuple[int, list[int]]] = {}

    @classmethod
    def build(
        cls, token_lists: Iterable[Sequence[str]], min_count: int = 2, min_char_count: int = 5
    ) -> Vocab:
        """Count normalised words and raw characters over the training tokens."""
        word_counts: dict[str, int] = {}
        char_counts: dict[str, int] = {}
        for tokens in token_lists:
            for tok in tokens:
                norm = normalize(tok)
                word_counts[norm] = word_counts.get(norm, 0) + 1
                for ch in tok[:MAX_CHARS_PER_TOKEN]:
                    char_counts[ch] = char_counts.get(ch, 0) + 1
        words = sorted((w for w, n in word_counts.items() if n >= min_count),
                       key=lambda w: (-word_counts[w], w))
        chars = sorted((c for c, n in char_counts.items() if n >= min_char_count),
                       key=lambda c: (-char_counts[c], c))
        return cls([PAD, UNK, *words], [PAD, UNK, *chars])

    def word_id(self, token: str) -> int:
        """Id of a token; ``@Name``/``#Name`` fall back to ``name`` when only that is known."""
        norm = normalize(token)
        idx = self.word_index.get(norm)
        if idx is None and norm[:1] in ("@", "#") and len(norm) > 1:
            idx = self.word_index.get(norm[1:])
        return UNK_ID if idx is None else idx

    def char_ids(self, token: str) -> list[int]:
        return [self.char_index.get(ch, UNK_ID) for ch in token[:MAX_CHARS_PER_TOKEN]]

    def _lookup(self, token: str) -> tuple[int, list[int]]:
        """Word id and char ids of a token, memoised: tweets repeat their tokens so much that
        normalising each one again dominated encoding time (a bounded dict; reset when full)."""
        found = self._cache.get(token)
        if found is None:
            if len(self._cache) >= _ENCODE_CACHE_SIZE:
                self._cache.clear()
            found = (self.word_id(token), self.char_ids(token))
            self._cache[token] = found
        return found

    def encode(self, batch: Sequence[Sequence[str]]) -> dict[str, np.ndarray]:
        """Id tensors for a batch of token lists, padded to the longest: the model's inputs
        ``word_ids [B,T]``, ``char_ids [B,T,C]`` and ``lengths [B]`` (all int64)."""
        size = len(batch)
        lengths = np.fromiter(map(len, batch), dtype=np.int64, count=size)
        longest = int(lengths.max(initial=0)) or 1
        cached, lookup = self._cache.get, self._lookup  # a cache hit costs no method call
        lookups = [cached(tok) or lookup(tok) for tok in chain.from_iterable(batch)]
        count = len(lookups)
        words, chars = zip(*lookups, strict=True) if lookups else ((), ())
        char_counts = np.fromiter(map(len, chars), dtype=np.int64, count=count)
        char_len = int(char_counts.max(initial=0)) or 1
        # Flat position of every token in the padded [B, T] grid.
        rows = np.repeat(np.arange(size, dtype=np.int64), lengths)
        starts = np.cumsum(lengths) - lengths
        cols = np.arange(count, dtype=np.int64) - np.repeat(starts, lengths)
        word_ids = np.zeros((size, longest), dtype=np.int64)
        word_ids[rows, cols] = np.fromiter(words, dtype=np.int64, count=count)
        char_ids = np.zeros((size, longest, char_len), dtype=np.int64)
        flat_chars = np.fromiter(chain.from_iterable(chars), dtype=np.int64,
                                 count=int(char_counts.sum()))
        token_of_char = np.repeat(np.arange(count, dtype=np.int64), char_counts)
        char_pos = np.arange(len(flat_chars), dtype=np.int64) - np.repeat(
            np.cumsum(char_counts) - char_counts, char_counts)
        char_ids[rows[token_of_char], cols[token_of_char], char_pos] = flat_chars
        return {"word_ids": word_ids, "char_ids": char_ids, "lengths": lengths}

    def save(self, path: Path) -> None:
        path.write_text(
            json.dumps({"words": self.words, "chars": self.chars}, ensure_ascii=False),
            encoding="utf-8",
        )

    @classmethod
    def load(cls, path: Path) -> Vocab:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(data["words"], data["chars"])
