"""``tweetwatch bench matcher``: what watching 10,000 aliases costs per tweet, next to the
model.

The tweets are real (SemEval-2017 topic test); the aliases are real names too: the WNUT 2016
gazetteers in the shared data (Freebase brands, companies, people, teams...), each a watched
entity, every third one with an ``@handle`` alias beside it, plus the topic targets so that
there are matches to make. Per micro-batch (``--batch``, the worker's default size), in
alternation so that load on the machine hits both alike:

- ``analyze``: ``Analyzer.analyze(batch)`` (tokenise, encode, ONNX, decode), no watchlist;
- ``analyze + watchlist``: the same call with the matcher (matching and merging included);
- ``match``: ``WatchMatcher.match_tokens`` alone on the batch's tokens.

Medians over batches, in microseconds per tweet; the claim checked is
``median(match) < 10% of median(analyze)``.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

from stream.inference import Analyzer
from stream.matcher import WatchMatcher
from stream.publish import read_shared_tweets
from stream.settings import Settings
from stream.textproc import tokenize
from stream.watchlist import InvalidWatchlist, WatchedEntity, make_entity


def gazetteer_entities(data_dir: Path, aliases: int) -> list[WatchedEntity]:
    """At least ``aliases`` aliases over real names (module docstring), deterministic."""
    targets = {line.split("\t")[1].strip() for line in
               (data_dir / "targeted_sentiment" / "semeval2017_topic" / "test.tsv")
               .read_text(encoding="utf-8").splitlines() if line.count("\t") >= 2}
    names = sorted(t for t in targets if t)
    lexicon = data_dir / "lexicon" / "wnut16"
    for path in sorted(p for p in lexicon.iterdir() if p.is_file()):
        with open(path, encoding="utf-8", errors="replace") as handle:
            names.extend(line.strip() for _, line in zip(range(2000), handle, strict=False))
    entities: dict[str, WatchedEntity] = {}
    count = 0
    for index, name in enumerate(names):
        if count >= aliases:
            break
        handle = "@" + "".join(ch for ch in name if ch.isalnum())
        try:
            entity = make_entity(name, None, [handle] if index % 3 == 0 and len(handle) > 2
                                 else [])
        except InvalidWatchlist:
            continue
        if entity.key in entities:
            continue
        entities[entity.key] = entity
        count += len(entity.all_aliases())
    return list(entities.values())


def _median_us(values: list[float]) -> float:
    return round(statistics.median(values) * 1e6, 1)


def bench_matcher(settings: Settings, aliases: int = 10_000, tweets: int = 4096,
                  batch: int = 128, passes: int = 3) -> dict[str, Any]:
    """Run the benchmark (module docstring); returns the figures."""
    texts = read_shared_tweets(settings.data_dir, "topic")[:tweets]
    started = time.perf_counter()
    entities = gazetteer_entities(settings.data_dir, aliases)
    matcher = WatchMatcher(entities)
    build_s = time.perf_counter() - started
    analyzer = Analyzer(settings.model_dir, settings.model_variant, settings.intra_op_threads)
    batches = [texts[i:i + batch] for i in range(0, len(texts), batch)]
    tokenised = [[tokenize(t) for t in b] for b in batches]
    analyzer.analyze(batches[0], matcher=matcher)  # warm-up
    plain: list[float] = []
    watched: list[float] = []
    match: list[float] = []
    matched = 0
    for _ in range(passes):
        for texts_b, tokens_b in zip(batches, tokenised, strict=True):
            t0 = time.perf_counter()
            analyzer.analyze(texts_b)
            t1 = time.perf_counter()
            analyzer.analyze(texts_b, matcher=matcher)
            t2 = time.perf_counter()
            found = sum(len(matcher.match_tokens(toks)) for toks in tokens_b)
            t3 = time.perf_counter()
            n = len(texts_b)
            plain.append((t1 - t0) / n)
            watched.append((t2 - t1) / n)
            match.append((t3 - t2) / n)
            matched += found
    result = {
        "tweets": len(texts), "batch": batch, "passes": passes,
        "entities": len(entities), "aliases": sum(len(e.all_aliases()) for e in entities),
        "patterns": matcher.patterns, "build_s": round(build_s, 2),
        "matches_per_tweet": round(matched / (passes * len(texts)), 3),
        "model_variant": settings.model_variant,
        "us_per_tweet_median": {"analyze": _median_us(plain),
                                "analyze_with_watchlist": _median_us(watched),
                                "match_only": _median_us(match)},
        # The fastest batch of each: on a shared, loaded machine the medians of the two
        # analyze calls differ by more than the watchlist costs (see docs/watchlists.md).
        "us_per_tweet_best": {"analyze": round(min(plain) * 1e6, 1),
                              "analyze_with_watchlist": round(min(watched) * 1e6, 1),
                              "match_only": round(min(match) * 1e6, 1)},
    }
    medians = result["us_per_tweet_median"]
    result["match_share_of_analyze"] = round(medians["match_only"] / medians["analyze"], 4)
    result["watchlist_overhead_share"] = round(
        (medians["analyze_with_watchlist"] - medians["analyze"]) / medians["analyze"], 4)
    return result


def markdown(result: dict[str, Any]) -> str:
    """The result as a small Markdown table."""
    m = result["us_per_tweet_median"]
    b = result["us_per_tweet_best"]
    return "\n".join([
        f"{result['aliases']} aliases ({result['entities']} entities, {result['patterns']} "
        f"patterns, built in {result['build_s']} s), {result['tweets']} tweets in batches of "
        f"{result['batch']}, {result['passes']} passes, {result['model_variant']} model; "
        f"{result['matches_per_tweet']} watched matches per tweet",
        "",
        "| step | median µs per tweet | fastest batch, µs per tweet |",
        "|---|---|---|",
        f"| Analyzer.analyze | {m['analyze']} | {b['analyze']} |",
        f"| Analyzer.analyze with the watchlist | {m['analyze_with_watchlist']} | "
        f"{b['analyze_with_watchlist']} |",
        f"| WatchMatcher.match_tokens alone | {m['match_only']} | {b['match_only']} |",
        "",
        f"matching = {result['match_share_of_analyze']:.1%} of the analyze time per tweet "
        f"(medians); analyze with the watchlist {result['watchlist_overhead_share']:+.1%} "
        "(medians, including building the extra watched mentions)",
    ])


def write_result(result: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "matcher.json").write_text(json.dumps(result, indent=1) + "\n",
                                          encoding="utf-8")
    path = out_dir / "matcher.md"
    path.write_text(markdown(result) + "\n", encoding="utf-8")
    return path
