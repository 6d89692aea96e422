"""One streamed request against an OpenAI-compatible server, and how it is measured."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

TIMEOUT = "timeout"
CONNECTION = "connection"
BAD_STREAM = "bad_stream"
HTTP_4XX = "http_4xx"
HTTP_5XX = "http_5xx"
# Reported even when zero so that the JSON shape does not depend on what went wrong.
STANDARD_ERROR_KINDS = (HTTP_4XX, HTTP_5XX, TIMEOUT, CONNECTION, BAD_STREAM)


def http_error_kind(status: int) -> str:
    """Error kind for a non-200 response: its status class, e.g. ``http_5xx`` for 503."""
    return f"http_{status // 100}xx"


@dataclass(frozen=True)
class Target:
    """Where and how to send requests."""

    base_url: str
    model: str
    chat: bool
    max_tokens: int
    include_usage: bool
    request_timeout_s: float

    @property
    def path(self) -> str:
        return "/v1/chat/completions" if self.chat else "/v1/completions"

    def body(self, prompt: str) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "max_tokens": self.max_tokens, "stream": True}
        if self.chat:
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        if self.include_usage:
            body["stream_options"] = {"include_usage": True}
        return body


@dataclass(frozen=True)
class RequestResult:
    """Outcome of one request. Times are ``time.perf_counter()`` values / durations in seconds."""

    start: float
    end: float
    error: str | None
    ttft: float | None = None
    itls: tuple[float, ...] = ()
    output_tokens: int = 0
    tokens_from_usage: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def e2e(self) -> float:
        return self.end - self.start


def chunk_text(payload: Mapping[str, Any], chat: bool) -> str:
    """Generated text carried by one streamed chunk (empty for role-only or usage-only chunks).

    Reasoning models stream their thinking in ``reasoning_content`` (older vLLM) or
    ``reasoning`` before any ``content``; those are output tokens too and count for TTFT.
    """
    parts: list[str] = []
    choices = payload.get("choices")
    for choice in choices if isinstance(choices, list) else ():
        if not isinstance(choice, dict):
            continue
        if chat:
            delta = choice.get("delta")
            if isinstance(delta, dict):
                for key in ("content", "reasoning_content", "reasoning"):
                    value = delta.get(key)
                    if isinstance(value, str):
                        parts.append(value)
        else:
            text = choice.get("text")
            if isinstance(text, str):
                parts.append(text)
    return "".join(parts)


def usage_completion_tokens(payload: Mapping[str, Any]) -> int | None:
    usage = payload.get("usage")
    if isinstance(usage, dict):
        tokens = usage.get("completion_tokens")
        if isinstance(tokens, int):
            return tokens
    return None


def is_error_payload(payload: Mapping[str, Any]) -> bool:
    """vLLM reports failures after the 200 header as an error object inside the stream."""
    return "error" in payload or payload.get("object") == "error"


def sse_data(line: str) -> str | None:
    """Payload of an SSE ``data:`` field, or ``None`` for other fields, comments and blank lines.

    OpenAI-compatible servers put each event in a single ``data:`` line, so lines are not
    joined into multi-line events.
    """
    if not line.startswith("data:"):
        return None
    data = line[len("data:") :]
    return data[1:] if data.startswith(" ") else data


async def sse_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """Split a byte stream into SSE lines at ``\n``, dropping a ``\r`` before it.

    httpx's ``aiter_lines`` splits like ``str.splitlines``, i.e. also at U+2028, U+0085 and
    friends, which vLLM's JSON leaves unescaped inside generated text; that would cut a chunk
    in two and make a healthy stream look broken. Splitting bytes at 0x0A is safe for UTF-8.
    Undecodable bytes raise ``UnicodeDecodeError`` (a bad stream).
    """
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            yield line.removesuffix(b"\r").decode("utf-8")
    if buffer:
        yield buffer.removesuffix(b"\r").decode("utf-8")


async def send_request(client: httpx.AsyncClient, target: Target, prompt: str, headers: Mapping[str, str]) -> RequestResult:
    """Send one streamed request and measure it; never raises for server or network failures.

    The whole exchange runs under a hard ``request_timeout_s`` deadline, on top of httpx's own
    per-operation timeouts, because a server that trickles bytes would otherwise never trip a
    read timeout.
    """
    start = time.perf_counter()

    def failed(kind: str) -> RequestResult:
        return RequestResult(start=start, end=time.perf_counter(), error=kind)

    try:
        async with asyncio.timeout(target.request_timeout_s):
            async with client.stream("POST", target.base_url + target.path, json=target.body(prompt), headers=headers) as response:
                if response.status_code != 200:
                    # Reading the body lets the connection go back to the pool.
                    await response.aread()
                    return failed(http_error_kind(response.status_code))
                return await _consume_stream(response, target.chat, start)
    except (TimeoutError, httpx.TimeoutException):
        return failed(TIMEOUT)
    except (httpx.DecodingError, UnicodeDecodeError):
        return failed(BAD_STREAM)
    except httpx.RequestError:
        return failed(CONNECTION)


async def _consume_stream(response: httpx.Response, chat: bool, start: float) -> RequestResult:
    ttft: float | None = None
    last_token_at = start
    itls: list[float] = []
    chunk_tokens = 0
    usage_tokens: int | None = None
    done_at: float | None = None
    error: str | None = None
    # The stream is read to its end even after [DONE] or an error so the keep-alive
    # connection can be reused; a fresh (TLS) handshake would otherwise inflate the next TTFT.
    async for line in sse_lines(response.aiter_bytes()):
        data = sse_data(line)
        if data is None or done_at is not None or error is not None:
            continue
        now = time.perf_counter()
        if data.strip() == "[DONE]":
            done_at = now
            continue
        try:
            payload = json.loads(data)
        except json.JSONDecodeError:
            error = BAD_STREAM
            continue
        if not isinstance(payload, dict) or is_error_payload(payload):
            error = BAD_STREAM
            continue
        if chunk_text(payload, chat):
            chunk_tokens += 1
            if ttft is None:
                ttft = now - start
            else:
                itls.append(now - last_token_at)
            last_token_at = now
        reported = usage_completion_tokens(payload)
        if reported is not None:
            usage_tokens = reported
    if error is not None or done_at is None:
        # A stream that ends without [DONE] was cut short.
        return RequestResult(start=start, end=time.perf_counter(), error=error or BAD_STREAM)
    return RequestResult(
        start=start,
        end=done_at,
        error=None,
        ttft=ttft,
        itls=tuple(itls),
        output_tokens=usage_tokens if usage_tokens is not None else chunk_tokens,
        tokens_from_usage=usage_tokens is not None,
    )
