"""The Chat Completions client against a real HTTP server on loopback: retries, timeout, breaker."""

from __future__ import annotations

import asyncio
import random
import time

import pytest
from llm_server import MODEL, LLMServer

from stream.llm import (
    ChatClient,
    ChatMessage,
    CircuitBreaker,
    LLMBadResponse,
    LLMHTTPError,
    LLMTimeout,
    LLMUnavailable,
)
from stream.settings import Settings

PROMPT = [
    ChatMessage("system", "Write an alert between <alert> and </alert>."),
    ChatMessage(
        "user", "ENTITY: Verizon\nTYPE: company\n<tweets>\n<tweet n=1>down</tweet>\n</tweets>"
    ),
]


@pytest.fixture
async def server():
    srv = await LLMServer().start()
    yield srv
    await srv.stop()


def make_client(srv: LLMServer, **kwargs) -> ChatClient:
    options = {"timeout_s": 2.0, "retries": 2, "backoff_s": 0.01, "rng": random.Random(0)}
    options.update(kwargs)
    return ChatClient(srv.base_url, "test-model", **options)


async def test_good_answer_and_request_shape(server):
    client = make_client(server, api_key="sekret")
    try:
        completion = await client.complete(PROMPT, max_tokens=50)
    finally:
        await client.close()
    assert completion.model == MODEL
    assert completion.text.startswith("<alert>Alert: 1 recent tweets are critical of the company")
    sent = server.requests[0]
    assert sent["model"] == "test-model" and sent["max_tokens"] == 50
    assert [m["role"] for m in sent["messages"]] == ["system", "user"]
    assert server.authorizations == ["Bearer sekret"]


async def test_no_key_sends_no_authorization(server, monkeypatch):
    """A local model wants no key: none is sent, not even one from OPENAI_API_KEY."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment")
    client = make_client(server)
    try:
        await client.complete(PROMPT)
    finally:
        await client.close()
    assert server.authorizations == [None]


async def test_retries_transient_errors_then_succeeds(server):
    server.script = ["error", "error"]
    client = make_client(server, retries=2)
    try:
        completion = await client.complete(PROMPT)
    finally:
        await client.close()
    assert "Verizon" in completion.text
    assert len(server.requests) == 3
    assert client.breaker.state == "closed"


async def test_gives_up_after_retries(server):
    server.mode = "error"
    client = make_client(server, retries=1, breaker_failures=10)
    try:
        with pytest.raises(LLMHTTPError) as info:
            await client.complete(PROMPT)
    finally:
        await client.close()
    assert info.value.status == 500
    assert len(server.requests) == 2


async def test_garbage_body_is_a_bad_response_and_not_retried(server):
    server.mode = "garbage"
    client = make_client(server, retries=3)
    try:
        with pytest.raises(LLMBadResponse):
            await client.complete(PROMPT)
    finally:
        await client.close()
    assert len(server.requests) == 1


async def test_timeout_is_enforced(server):
    server.mode, server.delay_s = "slow", 3.0
    client = make_client(server, timeout_s=0.2, retries=1)
    started = time.monotonic()
    try:
        with pytest.raises(LLMTimeout):
            await client.complete(PROMPT)
    finally:
        await client.close()
    assert time.monotonic() - started < 1.5
    assert len(server.requests) == 2


async def test_connection_refused_fails_fast():
    srv = await LLMServer().start()
    url = srv.base_url
    await srv.stop()
    client = ChatClient(url, "m", retries=1, backoff_s=0.01, timeout_s=2.0)
    started = time.monotonic()
    try:
        with pytest.raises(LLMHTTPError):
            await client.complete(PROMPT)
    finally:
        await client.close()
    assert time.monotonic() - started < 1.0


async def test_breaker_opens_refuses_then_half_open_trial_closes_it(server):
    server.mode = "error"
    client = make_client(server, retries=0, breaker_failures=2, breaker_reset_s=0.3)
    try:
        for _ in range(2):
            with pytest.raises(LLMHTTPError):
                await client.complete(PROMPT)
        assert client.breaker.state == "open"
        with pytest.raises(LLMUnavailable):
            await client.complete(PROMPT)
        assert len(server.requests) == 2  # the open breaker sent nothing
        await asyncio.sleep(0.35)
        assert client.breaker.state == "half-open"
        server.mode = "good"
        await client.complete(PROMPT)
        assert client.breaker.state == "closed"
    finally:
        await client.close()


async def test_failed_half_open_trial_reopens(server):
    server.mode = "error"
    client = make_client(server, retries=0, breaker_failures=1, breaker_reset_s=0.2)
    try:
        with pytest.raises(LLMHTTPError):
            await client.complete(PROMPT)
        await asyncio.sleep(0.25)
        with pytest.raises(LLMHTTPError):
            await client.complete(PROMPT)  # the trial, which fails
        assert client.breaker.state == "open"
        with pytest.raises(LLMUnavailable):
            await client.complete(PROMPT)
    finally:
        await client.close()
    assert len(server.requests) == 2


def test_half_open_lets_one_trial_through():
    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=1, reset_s=10, clock=lambda: now[0])
    breaker.record_failure()
    assert not breaker.allow()
    now[0] = 10.0
    assert breaker.allow()
    assert not breaker.allow()  # a second caller waits for the trial's outcome
    breaker.record_success()
    assert breaker.allow() and breaker.state == "closed"


async def test_concurrency_is_capped(server):
    server.mode, server.delay_s = "slow", 0.3
    client = make_client(server, max_concurrency=2, timeout_s=3.0)
    try:
        await asyncio.gather(*(client.complete(PROMPT) for _ in range(5)))
    finally:
        await client.close()
    assert server.max_in_flight == 2
    assert len(server.requests) == 5


def test_backoff_grows_exponentially_with_bounded_jitter():
    client = ChatClient("http://127.0.0.1:9/v1", "m", backoff_s=0.5, rng=random.Random(1))
    for attempt in range(1, 5):
        ceiling = 0.5 * 2 ** (attempt - 1)
        delays = {client.backoff_delay(attempt) for _ in range(20)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1  # jittered


async def test_requests_go_to_the_configured_endpoint_only(server, monkeypatch):
    """The SDK would read OPENAI_BASE_URL; the configured base URL wins, so a test's requests
    reach the loopback server and nothing else."""
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # nothing listens
    client = make_client(server)
    try:
        await client.complete(PROMPT)
    finally:
        await client.close()
    assert len(server.requests) == 1


def test_from_settings_without_endpoint_is_none():
    assert ChatClient.from_settings(Settings(llm_base_url=None)) is None
    client = ChatClient.from_settings(
        Settings(llm_base_url="http://llm:8000/v1/", llm_model="x", llm_retries=5)
    )
    assert client is not None
    assert client.url == "http://llm:8000/v1/chat/completions" and client.retries == 5


@pytest.mark.parametrize("mode", ["nested", "huge"])
async def test_hostile_bodies_are_bad_responses_read_within_a_cap(server, mode):
    """JSON nested 100,000 deep must not raise RecursionError, and a 3 MiB answer is cut off
    at the cap instead of being read whole."""
    server.mode = mode
    client = make_client(server, retries=0)
    try:
        with pytest.raises(LLMBadResponse) as caught:
            await client.complete(PROMPT)
    finally:
        await client.close()
    assert "nested too deeply" in str(caught.value) or "over" in str(caught.value)


async def test_error_bodies_never_reach_the_message(server):
    """A 500 page that echoes the request headers must not put the API key in any log line."""
    server.mode = "leak"
    client = make_client(server, api_key="sk-secret-123", retries=0)
    try:
        with pytest.raises(LLMHTTPError) as caught:
            await client.complete(PROMPT)
    finally:
        await client.close()
    assert server.authorizations == ["Bearer sk-secret-123"]
    assert "sk-secret" not in str(caught.value) and "500" in str(caught.value)
