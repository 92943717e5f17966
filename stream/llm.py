"""The LLM behind the alert texts: any OpenAI-compatible Chat Completions endpoint (vLLM,
Ollama, llama.cpp, OpenAI), through the ``openai`` SDK.

An alert must go out whether or not the LLM is healthy, so the client fails fast and
predictably rather than trying hard. The SDK (``openai.AsyncOpenAI``) builds the request,
authenticates, applies the per-request timeout and classifies failures; around it:

- retries with exponential backoff and jitter (tenacity) after timeouts, connection errors and
  HTTP 408/409/425/429/5xx, at most ``llm_retries`` of them. The SDK's own retries are off
  (``max_retries=0``) so that the circuit breaker sees every attempt and the backoff is the
  configured one;
- a circuit breaker (below; neither the SDK nor tenacity has one) stops calling an endpoint
  that keeps failing until a trial request succeeds again;
- at most ``max_concurrency`` requests in flight;
- the answer is read as a stream and given up past ``MAX_ANSWER_BYTES`` (a runaway endpoint
  must not fill the worker's memory), and an error's body never reaches a message or a log
  line (an error page may echo the request's headers, the API key among them). The SDK reads
  an error response's body itself; only its status is kept here.

Every failure surfaces as an :class:`LLMError` subclass, which the alert worker turns into the
template text. It all runs on the event loop, so a slow endpoint never blocks other work.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import openai
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from stream.settings import Settings

Role = Literal["system", "user", "assistant"]


class LLMError(Exception):
    """Base class: the LLM could not produce an answer for this request."""


class LLMUnavailable(LLMError):
    """The circuit breaker is open: the endpoint is not called at all."""


class LLMTimeout(LLMError):
    """The endpoint did not answer within the request timeout."""


class LLMHTTPError(LLMError):
    """The endpoint answered with an HTTP error status (or the connection failed)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class LLMBadResponse(LLMError):
    """The endpoint answered 200 but not with a Chat Completions body."""


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True, slots=True)
class Completion:
    """The assistant's text and the model name the endpoint reports."""

    text: str
    model: str


class CircuitBreaker:
    """Consecutive-failure circuit breaker with a single half-open trial.

    closed: requests flow; ``failure_threshold`` consecutive failures open it.
    open: requests are refused for ``reset_s`` seconds.
    half-open: one trial request is let through; success closes, failure re-opens.
    """

    def __init__(
        self,
        failure_threshold: int,
        reset_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.reset_s = reset_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False

    @property
    def state(self) -> Literal["closed", "open", "half-open"]:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.reset_s:
            return "half-open"
        return "open"

    def allow(self) -> bool:
        """May a request go out now? In half-open state only one trial at a time."""
        state = self.state
        if state == "closed":
            return True
        if state == "half-open" and not self._trial_in_flight:
            self._trial_in_flight = True
            return True
        return False

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial_in_flight = False

    def record_failure(self) -> None:
        self._failures += 1
        was_trial = self._trial_in_flight
        self._trial_in_flight = False
        if was_trial or self._failures >= self.failure_threshold:
            self._opened_at = self._clock()


_RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
MAX_ANSWER_BYTES = 1024 * 1024


class ChatClient:
    """Chat completions from ``base_url`` with timeout, retries, breaker and a size cap.

    ``base_url`` includes the API prefix, e.g. ``http://ollama:11434/v1`` or
    ``https://api.openai.com/v1``. Create and use it inside the running event loop; call
    :meth:`close` when done.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 10.0,
        max_concurrency: int = 4,
        retries: int = 2,
        backoff_s: float = 0.5,
        breaker_failures: int = 5,
        breaker_reset_s: float = 30.0,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/chat/completions"  # for messages: where requests go
        self.model = model
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.breaker = CircuitBreaker(breaker_failures, breaker_reset_s, clock=clock)
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._rng = rng or random.Random()
        # No key: no Authorization header at all (a local model wants none). The SDK insists
        # on a key (else it reads OPENAI_API_KEY or refuses to start), so it gets a
        # placeholder whose header each request then leaves out.
        self._client = openai.AsyncOpenAI(base_url=self.base_url, api_key=api_key or "no-key",
                                          timeout=timeout_s, max_retries=0)
        self._headers: dict[str, Any] = {} if api_key else {"Authorization": openai.Omit()}

    @classmethod
    def from_settings(cls, settings: Settings) -> ChatClient | None:
        """The configured client, or None when no endpoint is configured (template only)."""
        if not settings.llm_base_url:
            return None
        return cls(
            settings.llm_base_url,
            settings.llm_model,
            api_key=settings.llm_api_key,
            timeout_s=settings.llm_timeout_s,
            max_concurrency=settings.llm_max_concurrency,
            retries=settings.llm_retries,
            backoff_s=settings.llm_backoff_s,
            breaker_failures=settings.llm_breaker_failures,
            breaker_reset_s=settings.llm_breaker_reset_s,
        )

    def backoff_delay(self, attempt: int) -> float:
        """Sleep before retry ``attempt`` (1-based): equal jitter over base * 2**(attempt-1)."""
        ceiling = self.backoff_s * (2 ** (attempt - 1))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def _wait(self, state: RetryCallState) -> float:
        return self.backoff_delay(state.attempt_number)

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        temperature: float = 0.2,
        max_tokens: int = 200,
    ) -> Completion:
        """One chat completion; raises an :class:`LLMError` subclass when none can be had."""
        request: dict[str, Any] = {
            "model": self.model,
            "messages": [m.as_dict() for m in messages],
            "temperature": temperature,
            "max_tokens": max_tokens,
            "stream": False,
            "extra_headers": self._headers,
        }
        last_error: list[LLMError] = []

        async def attempt() -> Completion:
            if not self.breaker.allow():
                raise LLMUnavailable(f"circuit breaker open for {self.url}") from (
                    last_error[-1] if last_error else None)
            try:
                async with self._semaphore:
                    completion = await self._request(request)
            except LLMError as exc:
                self.breaker.record_failure()
                last_error.append(exc)
                raise
            self.breaker.record_success()
            return completion

        retrying = AsyncRetrying(stop=stop_after_attempt(self.retries + 1), wait=self._wait,
                                 retry=retry_if_exception(_retryable), reraise=True)
        return await retrying(attempt)

    async def _request(self, request: dict[str, Any]) -> Completion:
        try:
            async with asyncio.timeout(self.timeout_s):
                async with self._client.chat.completions.with_streaming_response.create(
                        **request) as response:
                    body = await _read_capped(response, MAX_ANSWER_BYTES)
        except (TimeoutError, openai.APITimeoutError):
            raise LLMTimeout(f"no answer from {self.url} within {self.timeout_s:g} s") from None
        except openai.APIStatusError as exc:
            # Neither the SDK's message nor its exception travel on: both quote the body.
            reason = getattr(exc.response, "reason_phrase", "") or ""
            raise LLMHTTPError(f"{self.url} answered HTTP {exc.status_code} {reason}".strip(),
                               status=exc.status_code) from None
        except openai.APIConnectionError as exc:
            cause = type(exc.__cause__ or exc).__name__
            raise LLMHTTPError(f"request to {self.url} failed: {cause}") from None
        return _parse_completion(body, self.model)

    async def close(self) -> None:
        await self._client.close()


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, LLMTimeout):
        return True
    if isinstance(exc, LLMHTTPError):
        return exc.status is None or exc.status in _RETRYABLE_STATUS
    return False


async def _read_capped(response: Any, limit: int) -> bytes:
    """The response body, or :class:`LLMBadResponse` as soon as it passes ``limit`` bytes (an
    alert needs a few hundred)."""
    length = response.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise LLMBadResponse(f"answer of {length} bytes is over {limit}")
    body = bytearray()
    async for chunk in response.iter_bytes(64 * 1024):
        body += chunk
        if len(body) > limit:
            raise LLMBadResponse(f"answer is over {limit} bytes")
    return bytes(body)


def _parse_completion(body: bytes, default_model: str) -> Completion:
    """Extract ``choices[0].message.content``; anything else is an :class:`LLMBadResponse`
    (whose message never quotes the body)."""
    try:
        data = json.loads(body)
        content = data["choices"][0]["message"]["content"]
    except RecursionError as exc:
        raise LLMBadResponse("not a chat completion: JSON nested too deeply") from exc
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise LLMBadResponse(f"not a chat completion ({type(exc).__name__})") from exc
    if not isinstance(content, str):
        raise LLMBadResponse("chat completion content is not a string")
    model = data.get("model") if isinstance(data, dict) else None
    return Completion(text=content, model=model if isinstance(model, str) else default_model)
