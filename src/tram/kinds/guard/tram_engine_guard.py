"""An ASGI middleware that makes an engine answer only its gateway: every request on every path
must carry `Authorization: Bearer $TRAM_ENGINE_KEY`, except `GET /health` (liveness probes,
which learn nothing from it). Standard library only: it runs inside the engine's environment.

Why: vLLM's own `--api-key` guards only paths under /v1 (and a few prefixes); `/invocations`,
`/tokenize`, `/pooling`, `/classify`, `/score`, `/rerank` and `/metrics` answer anyone who can
reach the port. vLLM accepts ASGI middleware by import path (`--middleware`), its supported
extension point, so this closes every path without touching vLLM's code.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["EngineKeyGuard"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_REFUSAL = (b'{"error": {"message": "This engine answers its gateway only.", '
            b'"type": "authentication_error", "param": null, "code": "engine_key_required"}}')


class EngineKeyGuard:
    def __init__(self, app: ASGIApp, key: str | None = None) -> None:
        self.app = app
        key = key if key is not None else os.environ.get("TRAM_ENGINE_KEY", "")
        if not key:
            raise RuntimeError("tram_engine_guard: TRAM_ENGINE_KEY is not set; refusing to start "
                               "an engine that anyone could use")
        self._digest = hashlib.sha256(b"Bearer " + key.encode()).digest()

    def _allowed(self, scope: Scope) -> bool:
        if scope.get("method") == "GET" and scope.get("path") == "/health":
            return True
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                return hmac.compare_digest(hashlib.sha256(value).digest(), self._digest)
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(_REFUSAL)).encode())]})
        await send({"type": "http.response.body", "body": _REFUSAL})
