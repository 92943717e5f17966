"""Find every alias of every watched entity in a tweet: one Aho–Corasick pass per tweet.

Matching is on tokens (``stream.textproc.tokenize``, the model's own tokens), so it respects
token boundaries by construction: ``United`` never matches inside ``Reunited``. Each token is
reduced to a key (NFKC, case-folded, a trailing possessive ``'s`` dropped, punctuation
dropped) and keeps a leading ``@``/``#``, and the tweet becomes the string
``" k1 k2 k3 "`` (a hyphenated token counts as its pieces); every alias, turned into the
same form, is a pattern ``" a1 a2 "`` in one
``ahocorasick.Automaton`` (pyahocorasick, C). So ``United``, ``UNITED``, ``United's``,
``@united`` and ``#United`` all match the alias ``United``, while an alias written as a
handle (``@united``) or a hashtag (``#UnitedAirlines``) matches only that form. A multi-word
alias also matches its one-token handle and hashtag (``Bank of America`` ->
``#BankOfAmerica``, ``@bankofamerica``), as ``entity_key`` folds them.

An exclusion of an entity (``manchester united``) vetoes that entity's matches that overlap
it. Overlapping matches of different entities: the longest wins, then the leftmost.

Cost: one scan of a string about as long as the tweet, whatever the number of aliases
(``tweetwatch bench matcher`` measures it against the model's time per tweet).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import ahocorasick

from stream.textproc import Token, tokenize
from stream.watchlist import WatchedEntity

_DROP = re.compile(r"[\W_]+", re.UNICODE)
_POSSESSIVE = re.compile(r"['’]s$")
_HYPHEN = re.compile(r"[-‐‑]")
_ALIAS = 0
_EXCLUDE = 1


@lru_cache(maxsize=200_000)
def token_key(text: str) -> str:
    """The matching form of one token: ``@United's`` -> ``@united``, ``AT&T`` -> ``att``
    (memoised: tweets repeat their tokens, as ``Vocab`` found for encoding)."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    prefix = folded[0] if len(folded) > 1 and folded[0] in "@#" else ""
    body = _POSSESSIVE.sub("", folded[len(prefix):])
    key = _DROP.sub("", body) or body.replace(" ", "")
    return prefix + key


@lru_cache(maxsize=200_000)
def piece_keys(text: str) -> tuple[str, ...]:
    """Keys of a token's hyphen-separated pieces, so ``Kim Jong-un`` meets ``Kim Jong Un``
    and ``self-driving cars`` meets ``self driving cars``: ``Jong-un`` -> ``jong``, ``un``."""
    parts = [p for p in _HYPHEN.split(text) if p] if text[:1] not in "@#" else []
    if len(parts) <= 1:
        return (token_key(text),)
    return tuple(token_key(p) for p in parts)


def _phrase_keys(phrase: str) -> list[str]:
    return [k for t in tokenize(phrase) for k in piece_keys(t.text)]


def _patterns(phrase: str) -> set[str]:
    """The joined-key patterns one alias or exclusion matches (see the module docstring)."""
    keys = [k for k in _phrase_keys(phrase) if k]
    if not keys:
        return set()
    patterns = {" " + " ".join(keys) + " "}
    first = keys[0]
    if len(keys) == 1 and first[0] not in "@#":
        patterns |= {f" @{first} ", f" #{first} "}
    elif len(keys) > 1 and all(k[0] not in "@#" for k in keys):
        joined = "".join(keys)
        patterns |= {f" {joined} ", f" @{joined} ", f" #{joined} "}
    return patterns


@dataclass(frozen=True, slots=True)
class WatchMatch:
    """One watched-entity mention: token span ``[first, last)`` and character span."""

    entity: WatchedEntity
    first: int
    last: int
    start: int
    end: int


class WatchMatcher:
    """Immutable matcher over one watchlist version (rebuilt when the watchlist changes)."""

    def __init__(self, entities: Sequence[WatchedEntity]) -> None:
        self.entities = list(entities)
        automaton = ahocorasick.Automaton()
        payloads: dict[str, list[tuple[int, int, int]]] = {}
        for index, entity in enumerate(self.entities):
            for alias in entity.all_aliases():
                for pattern in _patterns(alias):
                    payloads.setdefault(pattern, []).append((_ALIAS, index, pattern.count(" ")
                                                             - 1))
            for phrase in entity.exclude:
                for pattern in _patterns(phrase):
                    payloads.setdefault(pattern, []).append((_EXCLUDE, index,
                                                             pattern.count(" ") - 1))
        for pattern, items in payloads.items():
            automaton.add_word(pattern, (len(pattern), tuple(dict.fromkeys(items))))
        self.patterns = len(payloads)
        self._automaton: ahocorasick.Automaton | None = None
        if payloads:
            automaton.make_automaton()
            self._automaton = automaton

    def __len__(self) -> int:
        return len(self.entities)

    def match_tokens(self, tokens: Sequence[Token]) -> list[WatchMatch]:
        """Watched mentions in a tokenised tweet, left to right, never overlapping."""
        if self._automaton is None or not tokens:
            return []
        keys: list[str] = []
        owner: list[int] = []  # token index of each piece
        for index, token in enumerate(tokens):
            for key in piece_keys(token.text):
                keys.append(key)
                owner.append(index)
        joined = " " + " ".join(keys) + " "
        # Character offset in ``joined`` of the space before each piece -> piece index.
        piece_at: dict[int, int] = {}
        offset = 0
        for index, key in enumerate(keys):
            piece_at[offset] = index
            offset += len(key) + 1
        # (entity index, first token, last token exclusive, pieces), in token space.
        hits: list[tuple[int, int, int, int]] = []
        vetoes: dict[int, list[tuple[int, int]]] = {}
        for end_char, (length, items) in self._automaton.iter(joined):
            first = piece_at.get(end_char - length + 1)
            if first is None:
                continue
            for kind, entity_index, n_pieces in items:
                span = (owner[first], owner[first + n_pieces - 1] + 1)
                if kind == _EXCLUDE:
                    vetoes.setdefault(entity_index, []).append(span)
                else:
                    hits.append((entity_index, *span, n_pieces))
        kept = [h for h in hits
                if not any(a < h[2] and h[1] < b for a, b in vetoes.get(h[0], ()))]
        kept.sort(key=lambda h: (-h[3], h[1], h[0]))
        taken: list[tuple[int, int]] = []
        chosen: list[WatchMatch] = []
        for entity_index, first, last, _ in kept:
            if any(a < last and first < b for a, b in taken):
                continue
            taken.append((first, last))
            chosen.append(WatchMatch(self.entities[entity_index], first, last,
                                     tokens[first].start, tokens[last - 1].end))
        chosen.sort(key=lambda m: m.first)
        return chosen

    def match(self, text: str) -> list[WatchMatch]:
        """Watched mentions in a tweet text."""
        return self.match_tokens(tokenize(text))
