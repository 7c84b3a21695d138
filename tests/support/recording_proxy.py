"""A logging reverse proxy for the coding agents' tests: every request a CLI sends to the
gateway goes through it, and it records the method, path, headers, JSON body, the gateway's
status and (for errors, or the opening of a stream) what came back. Bytes are relayed as they
come: a stream stays a stream. Loopback only."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.support.servers import serve_app

__all__ = ["Exchange", "RecordingProxy", "recording_proxy"]

_HOP_BY_HOP = {"host", "connection", "keep-alive", "transfer-encoding", "te", "trailer",
               "upgrade", "proxy-authorization", "proxy-authenticate", "content-length"}
_KEEP = 4 * 1024 * 1024  # of each answer: a whole stream of a test's turn


@dataclass
class Exchange:
    """One request through the proxy and what the gateway answered."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any  # the parsed JSON body, the raw text if it is not JSON, or None
    status: int = 0
    answer: bytes = b""
    answer_headers: dict[str, str] = field(default_factory=dict)
    client_gone: bool = False  # the client disconnected before the answer ended

    def answer_json(self) -> Any:
        try:
            return json.loads(self.answer)
        except ValueError:
            return None

    def error(self) -> str | None:
        """`status code: message` of an error answer (or an SSE error event), else None."""
        parsed = self.answer_json()
        if self.status >= 400 and isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            err = parsed["error"]
            return f"{self.status} {err.get('code') or err.get('type')}: {err.get('message')}"
        if self.status >= 400:
            return f"{self.status}: {self.answer[:300]!r}"
        for line in self.answer.decode(errors="replace").splitlines():
            if line.startswith("data:") and '"error"' in line:
                return f"stream error event: {line[5:].strip()[:300]}"
        return None

    def summary(self) -> str:
        fields = sorted(self.body) if isinstance(self.body, dict) else []
        return f"{self.method} {self.path} -> {self.status} fields={fields} error={self.error()}"


@dataclass
class RecordingProxy:
    url: str
    exchanges: list[Exchange]

    def generating(self) -> list[Exchange]:
        """The requests that asked a model for text (chat, responses, messages)."""
        return [e for e in self.exchanges if e.method == "POST" and e.path.split("?")[0]
                .endswith(("/chat/completions", "/responses", "/messages"))]

    def report(self) -> str:
        return "\n".join(e.summary() for e in self.exchanges) or "(no requests)"


def _body(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        kind = (await receive())["type"]
        await send({"type": kind + ".complete"})
        if kind == "lifespan.shutdown":
            return


async def _read_body(receive: Any) -> bytes:
    raw = b""
    while True:
        message = await receive()
        raw += message.get("body", b"")
        if not message.get("more_body"):
            return raw


async def _relay(target: str, exchange: Exchange, raw: bytes, send: Any,
                 uds: str | None = None) -> None:
    forward = {k: v for k, v in exchange.headers.items() if k not in _HOP_BY_HOP}
    transport = httpx.AsyncHTTPTransport(uds=uds) if uds is not None else None
    async with httpx.AsyncClient(timeout=900, transport=transport) as client, client.stream(
            exchange.method, target + exchange.path, headers=forward, content=raw) as upstream:
        exchange.status = upstream.status_code
        exchange.answer_headers = dict(upstream.headers)
        out = [(k.encode(), v.encode()) for k, v in upstream.headers.items()
               if k.lower() not in _HOP_BY_HOP and k.lower() != "content-encoding"]
        await send({"type": "http.response.start", "status": upstream.status_code,
                    "headers": out})
        async for chunk in upstream.aiter_bytes():
            if len(exchange.answer) < _KEEP:
                exchange.answer += chunk[:_KEEP - len(exchange.answer)]
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


async def _until_disconnect(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _app(target: str, exchanges: list[Exchange], lock: threading.Lock,
         rewrite: Callable[[str, Any], Any] | None, uds: str | None = None) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        raw = await _read_body(receive)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        query = scope["query_string"].decode()
        exchange = Exchange(scope["method"], scope["path"] + (f"?{query}" if query else ""),
                            headers, _body(raw))
        if rewrite is not None and isinstance(exchange.body, dict):
            raw = json.dumps(rewrite(exchange.path, exchange.body)).encode()
        with lock:
            exchanges.append(exchange)
        # A client that goes away cancels the request to the gateway, as the gateway cancels
        # the engine's: a CLI's timeout must not leave the engine working for nobody.
        relay = asyncio.ensure_future(_relay(target, exchange, raw, send, uds))
        gone = asyncio.ensure_future(_until_disconnect(receive))
        await asyncio.wait([relay, gone], return_when=asyncio.FIRST_COMPLETED)
        exchange.client_gone = gone.done() and not relay.done()
        for task in (relay, gone):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relay

    return app


@contextmanager
def recording_proxy(target: str, rewrite: Callable[[str, Any], Any] | None = None,
                    port: int | None = None, uds: str | None = None) -> Iterator[RecordingProxy]:
    """`with recording_proxy(gateway_url) as proxy:` point a client at `proxy.url` (same
    paths as the gateway's) and read `proxy.exchanges` afterwards. `rewrite(path, body)`, for
    diagnosis only, changes a JSON body before it is forwarded (what a gateway change would
    accept); the exchange records the body as the client sent it. `uds`: reach `target` over
    that Unix socket (an engine's private socket)."""
    exchanges: list[Exchange] = []
    with serve_app(_app(target.rstrip("/"), exchanges, threading.Lock(), rewrite, uds), port,
                   tram_server=False) as url:
        yield RecordingProxy(url, exchanges)
