"""The HTTP client that talks to engines, with transport failures mapped to Trạm errors.

One `httpx.AsyncClient` (connection pool) for the whole app; its transport can be swapped
(`httpx.MockTransport`) for fault injection. Deadlines are enforced with anyio cancel scopes so
that each kind of timeout gives its own message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import httpx
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

__all__ = ["UpstreamClient", "engine_error"]

_MAX_ERROR_BODY = 64 * 1024


class UpstreamClient:
    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._client = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(None),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=512),
            follow_redirects=False,
            trust_env=False,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    def _request(self, replica: Replica, path: str, body: bytes, request_id: str,
                 timeouts: Timeouts) -> httpx.Request:
        headers = {"content-type": "application/json", "x-request-id": request_id}
        if replica.api_key:
            headers["authorization"] = f"Bearer {replica.api_key}"
        return self._client.build_request(
            "POST",
            replica.url + path,
            content=body,
            headers=headers,
            timeout=httpx.Timeout(None, connect=timeouts.connect),
        )

    @asynccontextmanager
    async def open(self, replica: Replica, path: str, body: bytes, request_id: str,
                   timeouts: Timeouts, first_byte: float,
                   timeout_message: str | None = None) -> AsyncIterator[httpx.Response]:
        """Send a request and yield the response once its headers arrived (body unread).

        Leaving the context closes the response; if its body was not read to the end, the
        connection is dropped, which is how a cancelled request stops the engine.
        """
        request = self._request(replica, path, body, request_id, timeouts)
        try:
            with anyio.fail_after(first_byte):
                response = await self._client.send(request, stream=True)
        except TimeoutError:
            raise EngineTimeout(timeout_message or
                                f"The engine did not start answering within {first_byte:g}s.") \
                from None
        except httpx.ConnectTimeout:
            raise EngineConnectTimeout(
                f"Could not connect to the engine within {timeouts.connect:g}s."
            ) from None
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError,
                httpx.WriteError) as exc:
            raise EngineUnreachable(
                f"The engine for this model is unreachable ({type(exc).__name__})."
            ) from None
        try:
            yield response
        finally:
            await response.aclose()

    async def read_body(self, response: httpx.Response, limit: float) -> bytes:
        try:
            with anyio.fail_after(limit):
                return await response.aread()
        except TimeoutError:
            raise EngineTimeout(f"The engine did not finish its answer within {limit:g}s.") from None
        except httpx.HTTPError as exc:
            raise EngineBadResponse(
                f"The engine's answer was cut off ({type(exc).__name__})."
            ) from None


async def engine_error(response: httpx.Response) -> TramError:
    """Turn a non-2xx engine answer into the error the client sees.

    4xx: passed on with the engine's status, message, type and code. 503: the engine says it is
    not ready (loading, overloaded). Other 5xx: a bad gateway, with the engine's message.
    """
    try:
        raw = await response.aread()
    except httpx.HTTPError:
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
