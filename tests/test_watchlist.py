"""Watchlists without a broker: the file format, the alias matcher (examples and properties),
how watched matches merge with the model's spans, and the store on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.inference import merge_mentions
from stream.matcher import WatchMatcher, token_key
from stream.storage import create_engine
from stream.textproc import entity_key, tokenize
from stream.watch_store import (
    WatchlistFollower,
    find_entity,
    load_watchlist,
    remove_entity,
    save_entities,
)
from stream.watchlist import (
    InvalidWatchlist,
    WatchedEntity,
    dump_watchlist,
    make_entity,
    parse_watchlist,
)

UNITED = make_entity("United Airlines", "company", ["United", "@united", "#UnitedAirlines"],
                     ["united states", "manchester united"])
APPLE = make_entity("Apple", None, ["@Apple", "iPhone"], ["apple pie"])


def found(matcher: WatchMatcher, text: str) -> list[tuple[str, str]]:
    return [(m.entity.name, text[m.start:m.end]) for m in matcher.match(text)]


# --- file format ----------------------------------------------------------------------------
def test_the_issue_file_format_round_trips():
    text = """
entities:
  - name: United Airlines
    type: company            # optional
    aliases: ["United", "@united", "#UnitedAirlines"]
    exclude: ["united states", "manchester united"]   # optional
  - name: Comcast
"""
    entities = parse_watchlist(text)
    assert entities == [UNITED, WatchedEntity("Comcast")]
    assert parse_watchlist(dump_watchlist(entities)) == entities
    assert entities[0].key == "unitedairlines"


@pytest.mark.parametrize(("text", "message"), [
    ("[1, 2]", "a watchlist is a mapping with an 'entities' list"),
    ("entities: [{aliases: [x]}]", "every entity needs a non-empty 'name'"),
    ("entities: [{name: x, colour: red}]", "entity #1 has unknown field(s) colour"),
    ("entities: [{name: x}, {name: X}]", "entity 'X' is listed twice"),
    ("entities: [{name: x, aliases: [1]}]", "alias of 'x' must be a string, got int"),
    ("entities: [{name: x, aliases: ['!!']}]", "alias '!!' of 'x' has no letters or digits"),
    ("entities: [", "not valid YAML at line 1"),
])
def test_bad_files_say_why_in_one_line(text, message):
    with pytest.raises(InvalidWatchlist) as info:
        parse_watchlist(text)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


# --- matching ---------------------------------------------------------------------------------
def test_every_written_form_of_an_alias_matches():
    matcher = WatchMatcher([UNITED])
    text = "UNITED's crew, #United, @united and united all the same; #unitedairlines too"
    assert found(matcher, text) == [
        ("United Airlines", "UNITED's"), ("United Airlines", "#United"),
        ("United Airlines", "@united"), ("United Airlines", "united"),
        ("United Airlines", "#unitedairlines"),
    ]


def test_token_boundaries_and_exclusions():
    matcher = WatchMatcher([UNITED, APPLE])
    assert found(matcher, "Reunited with the Unitedstates crowd") == []
    assert found(matcher, "Manchester United beat the United States team") == []
    assert found(matcher, "Apple pie at the Apple store") == [("Apple", "Apple")]
    assert found(matcher, "my iPhone died") == [("Apple", "iPhone")]


def test_handle_and_hashtag_aliases_match_only_that_form():
    delta = make_entity("Delta Air Lines", None, ["@Delta"])
    matcher = WatchMatcher([delta])
    assert found(matcher, "the river delta floods; @Delta lost my bag") == [
        ("Delta Air Lines", "@Delta")]
    assert found(matcher, "#DeltaAirLines and Delta Air Lines") == [
        ("Delta Air Lines", "#DeltaAirLines"), ("Delta Air Lines", "Delta Air Lines")]


def test_hyphenated_words_meet_their_spaced_forms():
    kim = make_entity("Kim Jong-un")
    cars = make_entity("self driving cars")
    matcher = WatchMatcher([kim, cars])
    assert found(matcher, "Kim Jong Un and KIM JONG-UN's self-driving cars") == [
        ("Kim Jong-un", "Kim Jong Un"), ("Kim Jong-un", "KIM JONG-UN's"),
        ("self driving cars", "self-driving cars")]
    assert found(matcher, "#KimJongUn") == [("Kim Jong-un", "#KimJongUn")]


def test_the_longest_overlapping_match_wins():
    bank = make_entity("Bank of America", None, ["BofA"])
    america = make_entity("America")
    matcher = WatchMatcher([america, bank])
    assert found(matcher, "Bank of America and America") == [
        ("Bank of America", "Bank of America"), ("America", "America")]


ALIAS_WORD = st.text(alphabet="abcdefghij", min_size=2, max_size=6)


@settings(max_examples=150, deadline=None)
@given(words=st.lists(ALIAS_WORD, min_size=1, max_size=3),
       before=st.lists(ALIAS_WORD, max_size=4), after=st.lists(ALIAS_WORD, max_size=4),
       form=st.sampled_from(["plain", "upper", "title", "possessive", "handle", "hashtag"]))
def test_property_an_alias_is_found_in_any_form_anywhere(words, before, after, form):
    alias = " ".join(words)
    written = {
        "plain": alias, "upper": alias.upper(), "title": alias.title(),
        "possessive": alias + "'s", "handle": "@" + "".join(words),
        "hashtag": "#" + "".join(w.title() for w in words),
    }[form]
    text = " ".join([*before, written, *after])
    matcher = WatchMatcher([make_entity(alias)])
    matches = matcher.match(text)
    start = len(" ".join(before)) + (1 if before else 0)
    end = start + len(written)
    # Found there, or overlapped by an earlier match of the same alias ("aa aa" in "aa aa aa").
    assert any(m.start < end and start < m.end for m in matches), (text, found(matcher, text))
    # Never overlapping, always on token boundaries, always in order.
    tokens = tokenize(text)
    starts, ends = {t.start for t in tokens}, {t.end for t in tokens}
    for a, b in zip(matches, matches[1:], strict=False):
        assert a.end <= b.start
    assert all(m.start in starts and m.end in ends for m in matches)


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=80), alias=st.text(min_size=1, max_size=12))
def test_property_matches_are_the_alias_key_on_token_boundaries(text, alias):
    try:
        entity = make_entity(alias)
    except InvalidWatchlist:
        return
    for match in WatchMatcher([entity]).match(text):
        surface = text[match.start:match.end]
        assert entity_key(surface) == entity_key(alias) or \
            "".join(token_key(t.text) for t in tokenize(surface)).lstrip("@#") == \
            "".join(token_key(t.text) for t in tokenize(alias)).lstrip("@#")


# --- merging with the model's spans -------------------------------------------------------------
def entity_logits_for(tokens: list, negative: set[int]) -> np.ndarray:
    """Entity-sentiment logits: negative on the ``negative`` tokens, neutral elsewhere."""
    logits = np.zeros((len(tokens), 3), dtype=np.float32)
    for i in range(len(tokens)):
        logits[i] = [4.0, 0.0, 0.0] if i in negative else [0.0, 4.0, 0.0]
    return logits


def test_watched_match_and_model_span_are_one_mention():
    text = "I fly United Airlines to Paris"
    tokens = tokenize(text)
    logits = entity_logits_for(tokens, negative={2})
    watched = WatchMatcher([make_entity("United Airlines", None, ["United"])]).match_tokens(
        tokens)
    spans = [(2, 4, "company"), (5, 6, "geo-loc")]
    mentions = merge_mentions(text, tokens, logits, spans, watched)
    assert [(m.entity, m.entity_key, m.type, m.type_source, m.watch) for m in mentions] == [
        ("United Airlines", "unitedairlines", "company", "model", "United Airlines"),
        ("Paris", "paris", "geo-loc", "model", None)]
    # The sentiment toward it pools the mention's own tokens (one negative of two).
    assert mentions[0].probs[0] == pytest.approx(mentions[0].probs[1])
    typed = make_entity("United Airlines", "airline", ["United"])
    mentions = merge_mentions(text, tokens, logits, spans,
                              WatchMatcher([typed]).match_tokens(tokens))
    assert (mentions[0].type, mentions[0].type_source) == ("airline", "watchlist")


def test_a_handle_only_complaint_is_a_watched_mention_with_its_own_sentiment():
    text = "@united lost my bag again"
    tokens = tokenize(text)
    watched = WatchMatcher([UNITED]).match_tokens(tokens)
    mentions = merge_mentions(text, tokens, entity_logits_for(tokens, negative={0}), [], watched)
    assert [(m.entity, m.watch, m.sentiment, m.type) for m in mentions] == [
        ("@united", "United Airlines", "negative", "company")]


# --- the store ---------------------------------------------------------------------------------
async def check_store(url: str) -> None:
    engine = create_engine(url)
    follower = WatchlistFollower(engine, poll_s=0.01)
    try:
        async with engine.connect() as conn:
            before = await load_watchlist(conn)
        async with engine.begin() as conn:
            await save_entities(conn, [UNITED, APPLE], replace_all=True)
        assert [e.name for e in (await follower.current()).entities] == ["Apple",
                                                                          "United Airlines"]
        seen = follower.version
        assert seen is not None and seen > before[0]
        async with engine.begin() as conn:
            assert await remove_entity(conn, "apple") == "Apple"
            assert await remove_entity(conn, "nothing") is None
        await asyncio.sleep(0.02)
        assert [e.name for e in (await follower.current()).entities] == ["United Airlines"]
        assert follower.version == seen + 1
        async with engine.connect() as conn:
            assert await find_entity(conn, "@united") == UNITED
            assert await find_entity(conn, "united airlines") == UNITED
            assert await find_entity(conn, "Delta") is None
        async with engine.begin() as conn:
            await save_entities(conn, [], replace_all=True)
        await asyncio.sleep(0.02)
        assert await follower.current() is None
    finally:
        await engine.dispose()


async def test_store_on_sqlite(sqlite_url):
    await check_store(sqlite_url)


@pytest.mark.integration
async def test_store_on_postgres(scratch_database):
    await check_store(scratch_database.url)


# --- the command line ----------------------------------------------------------------------------
def watch_cli(url: str, *args: str, stdin: str | None = None):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("TWEETWATCH_")}
    env["TWEETWATCH_DATABASE_URL"] = url
    return subprocess.run([sys.executable, "-m", "stream.cli", "watch", *args], text=True,
                          capture_output=True, env=env, input=stdin, timeout=60, check=False)


def test_watch_commands_round_trip_and_fail_in_one_line(sqlite_url, tmp_path):
    done = watch_cli(sqlite_url, "add", "United Airlines", "--alias", "United", "--alias",
                     "@united", "--exclude", "united states", "--type", "company")
    assert (done.returncode, done.stdout) == (0, "watching United Airlines (3 aliases, "
                                                 "1 exclusions)\n"), done.stderr
    assert watch_cli(sqlite_url, "add", "Comcast").returncode == 0
    listed = watch_cli(sqlite_url, "list", "--json").stdout.splitlines()
    assert [json.loads(line)["name"] for line in listed] == ["Comcast", "United Airlines"]
    exported = watch_cli(sqlite_url, "export").stdout
    assert parse_watchlist(exported) == [WatchedEntity("Comcast"), UNITED_CLI]
    path = tmp_path / "wl.yaml"
    path.write_text(exported.replace("Comcast", "Verizon"), encoding="utf-8")
    assert watch_cli(sqlite_url, "import", str(path), "--replace").returncode == 0
    assert "Verizon" in watch_cli(sqlite_url, "list").stdout
    assert watch_cli(sqlite_url, "remove", "@UNITED airlines").stdout == \
        "removed United Airlines\n"

    for args, message in [
        (("remove", "Nobody"), "tweetwatch: error: no watched entity named 'Nobody'"),
        (("add", "!!"), "tweetwatch: error: name '!!' has no letters or digits"),
        (("import", str(tmp_path / "missing.yaml")), "tweetwatch: error: cannot read"),
    ]:
        failed = watch_cli(sqlite_url, *args)
        assert failed.returncode != 0
        assert failed.stderr.startswith(message), failed.stderr
        assert len(failed.stderr.strip().splitlines()) == 1, failed.stderr


UNITED_CLI = make_entity("United Airlines", "company", ["United", "@united"], ["united states"])
