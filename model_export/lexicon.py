"""The shared lexicon (``lexicon/wnut16/``, ``lexicon/freebase_extra/``) as the groups of the
model's gazetteer input (``stream.gazetteer``).

Files are grouped by the entity type they evidence, so the network gets one column per type it
tags, not one per Freebase class. Names of one or two common lower-case English words ("home",
"going home": both are film titles) are dropped: flagged in every tweet, they would teach the
network that the flag means nothing. Names longer than six keys are dropped too: tweets rarely
quote them whole.
"""

from __future__ import annotations

from pathlib import Path

from stream.gazetteer import Gazetteer
from stream.matcher import phrase_keys

# Group -> files under the lexicon folder (wnut16/ first, then freebase_extra/).
GROUPS: dict[str, tuple[str, ...]] = {
    "person": ("freebase_extra/sports.pro_athlete", "freebase_extra/government.politician"),
    "firstname": ("wnut16/firstname.5k",),
    "lastname": ("wnut16/lastname.5000",),
    "company": ("wnut16/business.brand", "wnut16/business.consumer_company",
                "wnut16/venture_capital.venture_funded_company", "wnut16/business.sponsor",
                "wnut16/cvg.cvg_developer", "wnut16/internet.website",
                "wnut16/book.newspaper", "wnut16/tv.tv_network", "wnut16/broadcast.tv_channel",
                "wnut16/bigdict"),
    "product": ("wnut16/product", "wnut16/business.consumer_product",
                "wnut16/automotive.make", "wnut16/automotive.model",
                "wnut16/cvg.computer_videogame", "wnut16/cvg.cvg_platform"),
    "facility": ("freebase_extra/facility", "wnut16/architecture.museum", "wnut16/venues",
                 "wnut16/education.university", "wnut16/transportation.road"),
    "location": ("wnut16/location.country",),
    "sportsteam": ("wnut16/sports.sports_team", "wnut16/sports.sports_league"),
    "movie": ("freebase_extra/film.film",),
    "tvshow": ("wnut16/tv.tv_program",),
    "other": ("wnut16/award.award", "wnut16/base.events.festival_series",
              "wnut16/time.holiday", "wnut16/time.recurring_event",
              "wnut16/government.government_agency"),
}
COMMON_WORDS = ("wnut16/lower.10000", "wnut16/english.stop")
MAX_KEYS = 6


def _lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8", errors="replace")
            .splitlines() if line.strip()]


def load_gazetteer(lexicon_dir: Path) -> Gazetteer:
    """The gazetteer of ``GROUPS`` read from ``lexicon_dir`` (``<data>/lexicon``)."""
    missing = [f for files in GROUPS.values() for f in files if not (lexicon_dir / f).is_file()]
    missing += [f for f in COMMON_WORDS if not (lexicon_dir / f).is_file()]
    if missing:
        raise FileNotFoundError(f"lexicon incomplete under {lexicon_dir}: {', '.join(missing)}")
    common = {key for f in COMMON_WORDS for line in _lines(lexicon_dir / f)
              for key in phrase_keys(line)}
    kept: dict[str, list[str]] = {}
    for group, files in GROUPS.items():
        names = []
        for name in (line for f in files for line in _lines(lexicon_dir / f)):
            keys = phrase_keys(name)
            if not keys or len(keys) > MAX_KEYS:
                continue
            if len(keys) <= 2 and all(k in common or len(k) < 2 for k in keys):
                continue
            names.append(name)
        kept[group] = names
    return Gazetteer.from_names(kept)
