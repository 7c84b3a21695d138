"""The HTTP client that talks to engines, with transport failures mapped to Trạm errors.

Pooled keep-alive HTTP/1.1 connections (`http1`), one pool per app. httpx was the first
choice: the benchmark showed its pool checking every pooled connection (a syscall each) on every
request; aiohttp, the second, spent a third of the gateway's CPU per request on features this
call never uses (bench/RESULTS.md). Deadlines are timeouts around the awaits (a shared ticker,
see `deadlines`), so each timeout (connect, first byte, idle, total) has its own message. The
rest of the gateway sees only `UpstreamResponse`.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

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
from tram.transport.deadlines import Ticker
from tram.transport.http1 import ConnectionPool, ConnectTimeout
from tram.transport.http1 import PooledResponse as UpstreamResponse

__all__ = ["Engine", "UpstreamClient", "UpstreamResponse", "engine_error"]

_MAX_ERROR_BODY = 64 * 1024


class Engine(Protocol):
    """Where an engine is and how to reach it (a routing replica is one)."""

    url: str  # its OpenAI base URL (…/v1)
    api_key: str | None  # sent as a Bearer token
    ca_file: str | None  # a private CA for an https engine
    socket: str | None  # a Unix socket to connect to instead of the URL's host


@dataclass(frozen=True)
class _Target:
    host: str
    port: int
    tls: ssl.SSLContext | None
    base_path: str
    host_header: str

    @property
    def root_path(self) -> str:
        """The server's root for routes outside /v1 (vLLM's and llama.cpp's /tokenize)."""
        return self.base_path.removesuffix("/v1")


@functools.lru_cache(maxsize=1024)
def _target(url: str, ca_file: str | None, socket: str | None = None) -> _Target:
    """Where to connect and what to send; with `socket`, a Unix socket's path is the host (the
    pool connects to a host that starts with "/" over that socket) and port 0."""
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    host = parts.hostname or "localhost"
    tls = ssl.create_default_context(cafile=ca_file) if secure else None
    if socket is not None:
        return _Target(socket, 0, None, parts.path.rstrip("/"), parts.netloc)
    return _Target(host, port, tls, parts.path.rstrip("/"), parts.netloc)


class UpstreamClient:
    """Engine calls over pooled keep-alive HTTP/1.1 connections (see `http1`)."""

    def __init__(self) -> None:
        self._pool = ConnectionPool()
        # The hot path's timeouts (first byte, whole body, each streamed chunk): see deadlines.
        self.deadlines = Ticker()

    async def aclose(self) -> None:
        self._pool.close()

    async def send(self, replica: Engine, path: str, body: bytes, request_id: str,
                   timeouts: Timeouts, first_byte: float,
                   timeout_message: str | None = None, *, at_root: bool = False,
                   content_type: str = "application/json") -> UpstreamResponse:
        """Send a request; return the response once its headers arrived (body unread).

        The caller must `close()` it; if its body was not read to the end, the connection is
        dropped, which is how a cancelled request stops the engine.
        """
        target = _target(replica.url, replica.ca_file, replica.socket)
        base = target.root_path if at_root else target.base_path
        head = (f"POST {base}{path} HTTP/1.1\r\nhost: {target.host_header}\r\n"
                f"content-type: {content_type}\r\ncontent-length: {len(body)}\r\n"
                f"x-request-id: {request_id}\r\n")
        if replica.api_key:
            head += f"authorization: Bearer {replica.api_key}\r\n"
        deadline = self.deadlines.start(first_byte)
        try:
            return await self._pool.request(target.host, target.port, target.tls,
                                            (head + "\r\n").encode("latin-1"), body,
                                            timeouts.connect)
        except asyncio.CancelledError:
            if deadline.timed_out():
                raise EngineTimeout(timeout_message or "The engine did not start answering "
                                    f"within {first_byte:g}s.") from None
            raise
        except ConnectTimeout:
            raise EngineConnectTimeout(
                f"Could not connect to the engine within {timeouts.connect:g}s.") from None
        except OSError as exc:
            raise EngineUnreachable(
                f"The engine for this model is unreachable ({type(exc).__name__}).") from None
        finally:
            self.deadlines.discard(deadline)

    async def probe(self, replica: Engine, limit_s: float) -> bool:
        """Whether the replica answers GET <url>/models with 200 within `limit_s`."""
        return await self.get(replica, "/models", limit_s) is not None

    async def get(self, replica: Engine, path: str, limit_s: float,
                  at_root: bool = False) -> bytes | None:
        """GET a small document (an engine's /metrics); None unless a 200 within `limit_s`."""
        target = _target(replica.url, replica.ca_file, replica.socket)
        base = target.root_path if at_root else target.base_path
        head = f"GET {base}{path} HTTP/1.1\r\nhost: {target.host_header}\r\n"
        if replica.api_key:
            head += f"authorization: Bearer {replica.api_key}\r\n"
        try:
            async with asyncio.timeout(limit_s):
                response = await self._pool.request(target.host, target.port, target.tls,
                                                    (head + "\r\n").encode("latin-1"), b"",
                                                    limit_s)
                try:
                    body = await response.aread()
                finally:
                    response.close()
        except (OSError, TimeoutError):
            return None
        return body if response.status_code == 200 else None

    async def read_body(self, response: UpstreamResponse, limit: float) -> bytes:
        """The whole body, within `limit` seconds (a short answer has usually arrived with
        its headers: then no deadline is armed)."""
        arrived = response.arrived()
        if arrived is not None:
            return arrived
        deadline = self.deadlines.start(limit)
        try:
            return await response.aread()
        except asyncio.CancelledError:
            if deadline.timed_out():
                raise EngineTimeout(f"The engine did not finish its answer within {limit:g}s.") \
                    from None
            raise
        except OSError as exc:
            raise EngineBadResponse(
                f"The engine's answer was cut off ({type(exc).__name__}).") from None
        finally:
            self.deadlines.discard(deadline)


async def engine_error(response: UpstreamResponse) -> TramError:
    """Turn a non-2xx engine answer into the error the client sees.

    4xx: passed on with the engine's status, message, type and code. 503: the engine says it is
    not ready (loading, overloaded). Other 5xx: a bad gateway, with the engine's message.
    """
    try:
        raw = await response.aread()
    except OSError:
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
