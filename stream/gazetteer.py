"""Per-token gazetteer flags: "this token is inside a known name of type T".

A small network cannot learn from 90k labelled tweets which strings name films, TV shows or
teams; lists of known names (Freebase, the WNUT 2016 shared task's lexicon) can tell it. A model
trained with them reads one extra input, ``gazetteer`` ``[B, T, 2G]`` (float32, two columns
per group of lists: see ``Gazetteer.width``), and the artifact carries the lists
(``gazetteer.tsv.gz``) so serving computes the same flags as training did. Names are matched
in the watchlist's key form (``stream.matcher``): case-insensitive, on token boundaries, with
the handle, hashtag and possessive forms (``#TheWalkingDead`` meets ``The Walking Dead``).
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from stream.matcher import phrase_keys, piece_keys

GAZETTEER_FILE = "gazetteer.tsv.gz"
GAZETTEER_INPUT = "gazetteer"
_TOKEN_CACHE_SIZE = 200_000


class Gazetteer:
    """Lists of names by group, matched in token lists.

    ``names`` maps a name's keys joined by spaces (``"harold and maude"``, see
    ``stream.matcher.phrase_keys``) to the bit mask of the groups that list it. Matching looks
    up every run of up to ``longest`` keys in a dict, and a ``@handle`` or ``#hashtag`` token
    in a second dict of the names' keys run together (``#TheWalkingDead``): a few dict
    lookups per token, and far less memory than an automaton over the several forms of 600k
    names.
    """

    input_name = GAZETTEER_INPUT

    def __init__(self, groups: Sequence[str], names: Mapping[str, int]) -> None:
        if not groups:
            raise ValueError("a gazetteer needs at least one group")
        self.groups = tuple(groups)
        self.names = dict(names)
        self.longest = max((name.count(" ") + 1 for name in self.names), default=0)
        # Keys run together (hashtags and handles); for each key that starts a name, the
        # groups of its one-word name and whether longer names start with it; the proper
        # prefixes of longer names (a run of keys that starts no name ends the search there).
        self._solid: dict[str, tuple[int, int]] = {}  # (groups of longer names, one-word)
        self._starts: dict[str, tuple[int, bool]] = {}
        self._prefixes: set[str] = set()
        for name, mask in self.names.items():
            longer_groups, one_word_groups = self._solid.get(name.replace(" ", ""), (0, 0))
            if " " in name:
                longer_groups |= mask
            else:
                one_word_groups |= mask
            self._solid[name.replace(" ", "")] = (longer_groups, one_word_groups)
            first = name.split(" ", 1)[0]
            one, longer = self._starts.get(first, (0, False))
            if " " in name:
                self._starts[first] = (one, True)
            else:
                self._starts[first] = (one | mask, longer)
            cut = name.rfind(" ")
            while cut > 0:
                self._prefixes.add(name[:cut])
                cut = name.rfind(" ", 0, cut)
        self._columns: dict[tuple[int, int], tuple[int, ...]] = {}
        self._tokens: dict[str, tuple[tuple[int, ...], tuple[tuple[str, tuple[int, ...],
                                                                bool], ...]]] = {}

    @property
    def width(self) -> int:
        """Columns of the model input: per group, inside a name of several words, then
        inside a one-word name (a one-word title such as "John" is weak evidence; "Harold
        and Maude" is strong)."""
        return 2 * len(self.groups)

    @classmethod
    def from_names(cls, names_by_group: Mapping[str, Iterable[str]]) -> Gazetteer:
        """A gazetteer of plain names (``{"movie": ["Harold and Maude", ...]}``)."""
        groups = list(names_by_group)
        names: dict[str, int] = {}
        for index, group in enumerate(groups):
            for name in names_by_group[group]:
                if keys := phrase_keys(name):
                    joined = " ".join(keys)
                    names[joined] = names.get(joined, 0) | (1 << index)
        return cls(groups, names)

    def _group_columns(self, mask: int, offset: int) -> tuple[int, ...]:
        columns = self._columns.get((mask, offset))
        if columns is None:
            columns = tuple(offset + g for g in range(len(self.groups)) if mask >> g & 1)
            self._columns[(mask, offset)] = columns
        return columns

    def _token(self, text: str) -> tuple[tuple[int, ...], tuple[tuple[str, tuple[int, ...],
                                                                   bool], ...]]:
        """What one token contributes, memoised (tweets repeat their tokens): the columns a
        ``@handle``/``#hashtag`` marks by itself, or its pieces' keys, each with the columns
        of the one-word name it is and whether a longer name starts with it."""
        found = self._tokens.get(text)
        if found is not None:
            return found
        if len(self._tokens) >= _TOKEN_CACHE_SIZE:
            self._tokens.clear()
        pieces = piece_keys(text)
        head = pieces[0]
        if len(head) > 2 and head[0] in "@#" and (solid := self._solid.get(head[1:])):
            found = (self._group_columns(solid[0], 0)
                     + self._group_columns(solid[1], len(self.groups)), ())
        else:
            keys = []
            for key in pieces:
                mask, longer = self._starts.get(key, (0, False))
                keys.append((key, self._group_columns(mask, len(self.groups)), longer))
            found = ((), tuple(keys))
        self._tokens[text] = found
        return found

    def _marks(self, tokens: Sequence[str]) -> list[tuple[int, int]]:
        """(token index, column) of every listed name's tokens, with repeats."""
        keys: list[str] = []
        owner: list[int] = []
        starts: list[int] = []  # key indices that begin a longer name
        marks: list[tuple[int, int]] = []
        cached, token_info = self._tokens.get, self._token
        for index, text in enumerate(tokens):
            direct, pieces = cached(text) or token_info(text)
            if direct:
                marks.extend([(index, c) for c in direct])
            for key, columns, longer in pieces:
                if columns:
                    marks.extend([(index, c) for c in columns])
                if longer:
                    starts.append(len(keys))
                keys.append(key)
                owner.append(index)
        names, prefixes = self.names, self._prefixes
        count = len(keys)
        for first in starts:
            run, last, longer = keys[first], first + 1, True
            while longer and last < count:
                run = f"{run} {keys[last]}"
                last += 1
                if mask := names.get(run, 0):
                    columns = self._group_columns(mask, 0)
                    marks.extend([(token, c) for token in range(owner[first],
                                                                 owner[last - 1] + 1)
                                  for c in columns])
                longer = run in prefixes
        return marks

    def flags(self, tokens: Sequence[str]) -> list[tuple[int, int]]:
        """(token index, column) of every token inside a listed name (see ``width``)."""
        if not self.names or not tokens:
            return []
        return sorted(set(self._marks(tokens)))

    def encode(self, batch: Sequence[Sequence[str]], steps: int) -> np.ndarray:
        """The model's ``gazetteer`` input for a batch padded to ``steps`` tokens."""
        out = np.zeros((len(batch), steps, self.width), dtype=np.float32)
        rows: list[int] = []
        tokens_at: list[int] = []
        columns: list[int] = []
        for row, tokens in enumerate(batch):
            if not tokens or not self.names:
                continue
            marks = self._marks(tokens)
            rows.extend([row] * len(marks))
            tokens_at.extend(token for token, _ in marks)
            columns.extend(column for _, column in marks)
        out[rows, tokens_at, columns] = 1.0
        return out

    def save(self, path: Path) -> None:
        """Write the lists as gzip text: the groups on the first line, then one name's keys
        and its group mask a line (sorted, so the same lists give the same bytes)."""
        with open(path, "wb") as handle, gzip.GzipFile("", "wb", fileobj=handle,
                                                        mtime=0) as raw:
            lines = ["\t".join(self.groups)]
            lines += [f"{name}\t{mask}" for name, mask in sorted(self.names.items())]
            raw.write(("\n".join(lines) + "\n").encode("utf-8"))

    @classmethod
    def load(cls, path: Path) -> Gazetteer:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            groups = handle.readline().rstrip("\n").split("\t")
            names = {}
            for line in handle:
                name, _, mask = line.rstrip("\n").rpartition("\t")
                names[name] = int(mask)
        return cls(groups, names)
