"""The HTTP client that talks to engines, with transport failures mapped to Trạm errors.

aiohttp, one session (connection pool) per app, created in the running event loop on first
use. httpx was the first choice; the benchmark showed its connection pool scanning every pooled
connection (a readability syscall each) on every request, which cost more than all the rest of
the gateway at 64 concurrent requests (bench/RESULTS.md). Deadlines are asyncio timeouts
around the awaits, so each timeout (connect, first byte, idle, total) has its own message.
The rest of the gateway sees only `UpstreamResponse`, never the client library.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import orjson

from tram.config import Timeouts
from tram.errors import (
    EngineBadResponse,
    EngineConnectTimeout,
    EngineTimeout,
    EngineUnavailable,
    EngineUnreachable,
    TramError,
    UpstreamClientError,
)
from tram.routing.registry import Replica

__all__ = ["UpstreamClient", "UpstreamResponse", "engine_error"]

_MAX_ERROR_BODY = 64 * 1024


class UpstreamResponse:
    """An engine's response whose headers have arrived; the body is read on demand."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status_code = response.status
        self.headers = response.headers

    async def aread(self) -> bytes:
        return await self._response.read()

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        """Body bytes as they arrive (no waiting for a full buffer)."""
        async for chunk in self._response.content.iter_any():
            yield chunk

    def close(self) -> None:
        """Return the connection to the pool if the body was read to its end, else drop it
        (a dropped connection is how an engine learns that the client went away)."""
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


class UpstreamClient:
    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                # Idle connections are let go before engines typically close them (llama.cpp's
                # server after 5 s), which keeps stale-connection retries rare.
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=4,
                                               enable_cleanup_closed=True),
                timeout=aiohttp.ClientTimeout(total=None),
                auto_decompress=False,
                skip_auto_headers=("User-Agent",),
                trust_env=False,
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    @asynccontextmanager
    async def open(self, replica: Replica, path: str, body: bytes, request_id: str,
                   timeouts: Timeouts, first_byte: float,
                   timeout_message: str | None = None) -> AsyncIterator[UpstreamResponse]:
        """Send a request and yield the response once its headers arrived (body unread).

        Leaving the context closes the response; if its body was not read to the end, the
        connection is dropped, which is how a cancelled request stops the engine.
        """
        headers = {"content-type": "application/json", "x-request-id": request_id}
        if replica.api_key:
            headers["authorization"] = f"Bearer {replica.api_key}"
        timeout = _client_timeout(timeouts.connect)
        try:
            async with asyncio.timeout(first_byte):
                try:
                    raw = await self._post(replica.url + path, body, headers, timeout)
                except aiohttp.ConnectionTimeoutError:
                    raise EngineConnectTimeout(
                        f"Could not connect to the engine within {timeouts.connect:g}s.") from None
                except aiohttp.ClientError as exc:
                    raise EngineUnreachable(
                        f"The engine for this model is unreachable ({type(exc).__name__})."
                    ) from None
        except TimeoutError:
            raise EngineTimeout(timeout_message or
                                f"The engine did not start answering within {first_byte:g}s.") \
                from None
        response = UpstreamResponse(raw)
        try:
            yield response
        finally:
            response.close()

    async def _post(self, url: str, body: bytes, headers: dict[str, str],
                    deadlines: aiohttp.ClientTimeout) -> aiohttp.ClientResponse:
        try:
            return await self._client().post(url, data=body, headers=headers, timeout=deadlines,
                                             allow_redirects=False)
        except aiohttp.ServerDisconnectedError:
            # A pooled keep-alive connection the engine had just closed (engines close idle or
            # long-used connections): nothing reached it; send once more on a fresh one.
            return await self._client().post(url, data=body, headers=headers, timeout=deadlines,
                                             allow_redirects=False)

    async def read_body(self, response: UpstreamResponse, limit: float) -> bytes:
        try:
            async with asyncio.timeout(limit):
                return await response.aread()
        except TimeoutError:
            raise EngineTimeout(f"The engine did not finish its answer within {limit:g}s.") from None
        except aiohttp.ClientError as exc:
            raise EngineBadResponse(
                f"The engine's answer was cut off ({type(exc).__name__}).") from None


@functools.lru_cache(maxsize=64)
def _client_timeout(connect: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=None, connect=connect, sock_connect=connect)


async def engine_error(response: UpstreamResponse) -> TramError:
    """Turn a non-2xx engine answer into the error the client sees.

    4xx: passed on with the engine's status, message, type and code. 503: the engine says it is
    not ready (loading, overloaded). Other 5xx: a bad gateway, with the engine's message.
    """
    try:
        raw = await response.aread()
    except aiohttp.ClientError:
        raw = b""
    message, type_, code, param = _parse_error(raw[:_MAX_ERROR_BODY])
    status = response.status_code
    if 400 <= status < 500:
        return UpstreamClientError(
            message or f"The engine refused the request with HTTP {status}.",
            status=status,
            type_=type_ or "invalid_request_error",
            code=code,
            param=param,
        )
    detail = f": {message}" if message else ""
    if status == 503:
        return EngineUnavailable(f"The engine is not ready (HTTP 503){detail}")
    return EngineBadResponse(f"The engine failed with HTTP {status}{detail}")


def _parse_error(raw: bytes) -> tuple[str | None, str | None, str | None, str | None]:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        text = raw.decode("utf-8", "replace").strip()
        return (text[:500] or None), None, None, None
    if not isinstance(data, dict):
        return None, None, None, None
    error = data.get("error", data)
    if isinstance(error, str):
        return error, None, None, None
    if not isinstance(error, dict):
        return None, None, None, None
    # OpenAI/vLLM: {"error": {"message"}}; FastAPI-based engines: {"detail": "..."}
    message = error.get("message") or error.get("detail") or data.get("message")
    code = error.get("code")
    return (
        str(message) if message is not None else None,
        str(error["type"]) if isinstance(error.get("type"), str) else None,
        str(code) if code is not None and not isinstance(code, int) else None,
        str(error["param"]) if isinstance(error.get("param"), str) else None,
    )
