"""Watchlists: the entities a user tracks, their aliases and exclusions, and the file format.

A watched entity has a name, an optional type (``company``, ``person``...), aliases (plain
names, ``@handles``, ``#hashtags``) and exclusions (phrases that veto an overlapping match:
``apple pie`` for Apple, ``manchester united`` for United Airlines). The name itself is
always an alias. Entities are keyed by :func:`stream.textproc.entity_key` of the name, so
``United Airlines`` and ``united airlines`` are one entity, and every mention of any alias is
stored under that key: history and alerts are per watched entity, whatever alias was written.

The YAML file (``tweetwatch watch import``/``export``, ``tweetwatch analyze --watchlist``)::

    entities:
      - name: United Airlines
        type: company            # optional
        aliases: ["United", "@united", "#UnitedAirlines"]
        exclude: ["united states", "manchester united"]   # optional

Everything a user can get wrong raises :class:`InvalidWatchlist` with a one-line reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from stream.textproc import entity_key, nameable, tokenize

MAX_NAME_CHARS = 200
MAX_TYPE_CHARS = 32
MAX_ALIASES = 200


class InvalidWatchlist(ValueError):
    """A watchlist entry or file that cannot be used; ``str(exc)`` says why, in one line."""


@dataclass(frozen=True, slots=True)
class WatchedEntity:
    """One tracked entity (see the module docstring)."""

    name: str
    type: str | None = None
    aliases: tuple[str, ...] = ()
    exclude: tuple[str, ...] = field(default_factory=tuple)

    @property
    def key(self) -> str:
        """The entity key every mention of this entity is stored under."""
        return entity_key(self.name)

    def all_aliases(self) -> tuple[str, ...]:
        """The name first, then the aliases, without case-insensitive repeats."""
        seen: dict[str, str] = {}
        for alias in (self.name, *self.aliases):
            seen.setdefault(alias.casefold(), alias)
        return tuple(seen.values())

    def as_json(self) -> dict[str, Any]:
        """The file/JSON form (``type`` and ``exclude`` only when set)."""
        doc: dict[str, Any] = {"name": self.name}
        if self.type:
            doc["type"] = self.type
        doc["aliases"] = list(self.aliases)
        if self.exclude:
            doc["exclude"] = list(self.exclude)
        return doc


def _clean_phrase(value: Any, what: str, name: str) -> str:
    if not isinstance(value, str):
        raise InvalidWatchlist(f"{what} of {name!r} must be a string, got {type(value).__name__}")
    text = " ".join(value.split())
    if not text:
        raise InvalidWatchlist(f"{what} of {name!r} is empty")
    if len(text) > MAX_NAME_CHARS:
        raise InvalidWatchlist(f"{what} of {name!r} is longer than {MAX_NAME_CHARS} characters")
    if not nameable(entity_key(text)) or not tokenize(text):
        owner = "" if what == "name" else f" of {name!r}"
        raise InvalidWatchlist(f"{what} {text!r}{owner} has no letters or digits")
    return text


def make_entity(name: Any, type_: Any = None, aliases: Iterable[Any] = (),
                exclude: Iterable[Any] = ()) -> WatchedEntity:
    """A validated entity: whitespace folded, aliases de-duplicated (case-insensitively)."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidWatchlist("every entity needs a non-empty 'name'")
    clean_name = _clean_phrase(name, "name", name)
    kind: str | None = None
    if type_ is not None:
        if not isinstance(type_, str):
            raise InvalidWatchlist(f"type of {clean_name!r} must be a string")
        kind = " ".join(type_.split()) or None
        if kind is not None and len(kind) > MAX_TYPE_CHARS:
            raise InvalidWatchlist(f"type of {clean_name!r} is longer than {MAX_TYPE_CHARS} "
                                   "characters")
    alias_list = list(dict.fromkeys(_clean_phrase(a, "alias", clean_name) for a in aliases))
    if len(alias_list) > MAX_ALIASES:
        raise InvalidWatchlist(f"{clean_name!r} has more than {MAX_ALIASES} aliases")
    deduped: dict[str, str] = {}
    for alias in alias_list:
        if alias.casefold() != clean_name.casefold():
            deduped.setdefault(alias.casefold(), alias)
    excluded = list(dict.fromkeys(_clean_phrase(x, "exclusion", clean_name) for x in exclude))
    return WatchedEntity(clean_name, kind, tuple(deduped.values()), tuple(excluded))


def _as_list(value: Any, what: str, name: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise InvalidWatchlist(f"{what} of {name!r} must be a list of strings")
    return value


def entities_from_document(doc: Any) -> list[WatchedEntity]:
    """Entities of a parsed watchlist document (``{"entities": [...]}``)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("entities"), list):
        raise InvalidWatchlist("a watchlist is a mapping with an 'entities' list")
    entities: dict[str, WatchedEntity] = {}
    for number, item in enumerate(doc["entities"], 1):
        if not isinstance(item, dict):
            raise InvalidWatchlist(f"entity #{number} is not a mapping")
        unknown = set(item) - {"name", "type", "aliases", "exclude"}
        if unknown:
            raise InvalidWatchlist(f"entity #{number} has unknown field(s) "
                                   f"{', '.join(sorted(map(str, unknown)))}")
        name = item.get("name")
        entity = make_entity(name, item.get("type"), _as_list(item.get("aliases"), "aliases",
                                                               name),
                             _as_list(item.get("exclude"), "exclude", name))
        if entity.key in entities:
            raise InvalidWatchlist(f"entity {entity.name!r} is listed twice")
        entities[entity.key] = entity
    return list(entities.values())


def parse_watchlist(text: str) -> list[WatchedEntity]:
    """Entities of a YAML (or JSON, a subset of YAML) watchlist text."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise InvalidWatchlist(f"not valid YAML{where}: {problem}") from None
    return entities_from_document(doc)


def read_watchlist(path: Path) -> list[WatchedEntity]:
    """Entities of a watchlist file; a missing or unreadable file is one ``OSError`` line."""
    return parse_watchlist(Path(path).read_text(encoding="utf-8"))


def dump_watchlist(entities: Sequence[WatchedEntity]) -> str:
    """The YAML text of a watchlist (what ``tweetwatch watch export`` prints)."""
    doc = {"entities": [e.as_json() for e in entities]}
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=100)
