"""Plain ASGI middleware: request id + access log (outermost), then authentication."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable

from tram.auth.principal import Authenticator, bearer_token
from tram.errors import TramError, error_response, unexpected_failure
from tram.metrics import Metrics
from tram.requestlog import RequestRecord, log_request
from tram.store.usage import UsageWriter
from tram.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["AuthMiddleware", "RequestIdMiddleware", "header", "record_of"]

logger = logging.getLogger("tram.app")

_VALID_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def record_of(scope: Scope) -> RequestRecord:
    record: RequestRecord = scope["state"]["tram.record"]
    return record


def header(scope: Scope, name: bytes) -> str | None:
    """A request header's first value (`name` in lower case, as ASGI servers give names).
    A plain loop over the raw pairs: Starlette's `Headers(scope).get` decoded every name
    (docs/decisions.md, "Gateway CPU per request")."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def observe(metrics: Metrics, record: RequestRecord) -> None:
    # Only configured model names become label values (record.model is set once the name is
    # found in the registry), so clients cannot grow the metrics without bound.
    metrics.observe_request(
        record.model or "", record.status or 0, record.elapsed(),
        record.first_byte_ms / 1000 if record.first_byte_ms is not None else None,
        record.prompt_tokens, record.completion_tokens, record.route or "chat")


class RequestIdMiddleware:
    """Honour a sane incoming X-Request-ID or make one; return it; log one line per request."""

    def __init__(self, app: ASGIApp, metrics: Metrics | None = None,
                 usage: UsageWriter | None = None,
                 dialect_of: Callable[[str], str] = lambda path: "openai") -> None:
        self.app = app
        self.metrics = metrics
        self.usage = usage
        self.dialect_of = dialect_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = header(scope, b"x-request-id")
        request_id = incoming if incoming and _VALID_ID.match(incoming) else os.urandom(16).hex()
        record = RequestRecord(request_id, scope["method"], scope["path"])
        scope.setdefault("state", {})["tram.record"] = record

        id_header = (b"x-request-id", request_id.encode("latin-1"))

        recorded = False

        async def send_with_id(message: Message) -> None:
            nonlocal recorded
            if message["type"] == "http.response.start":
                record.status = message["status"]
                # A new list: handlers may pass shared constant header lists.
                message["headers"] = [*message.get("headers", ()), id_header]
            elif message["type"] == "http.response.body" and not message.get("more_body") \
                    and record.stream is False and not recorded:
                # A JSON answer's outcome is journaled before its last bytes leave: a gateway
                # killed right after the client has it must not record it as interrupted.
                recorded = self._record_usage(record)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # Last resort: whatever escaped every handler still gets an OpenAI-shaped 500 with
            # its request id, never a traceback; the traceback goes to the log.
            logger.exception("unhandled error on %s %s (request %s)", scope["method"],
                             scope["path"], request_id)
            record.error_code = "internal_error"
            if record.status is None:
                await unexpected_failure(self.dialect_of(scope["path"]))(
                    scope, receive, send_with_id)
        finally:
            if record.status is None:
                record.status = 499 if record.client_disconnected else 500
            log_request(record)
            if self.metrics is not None and record.model is not None:
                observe(self.metrics, record)
            if not recorded:
                self._record_usage(record)

    def _record_usage(self, record: RequestRecord) -> bool:
        """Only requests with a valid key are recorded: a refused one costs no disk write
        (AuthMiddleware counts it in a metric), so nobody without a key grows the store."""
        if self.usage is None or record.key_id is None or record.route is None:
            return False
        self.usage.record(record.as_usage())
        return True


class AuthMiddleware:
    """Every route under the protected prefixes needs `Authorization: Bearer <key>` (or
    Anthropic's `x-api-key: <key>` where `x_api_key` says the path takes it); errors in the
    shape `dialect_of` gives the path."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator,
                 prefixes: tuple[str, ...] = ("/v1", "/admin"),
                 metrics: Metrics | None = None,
                 dialect_of: Callable[[str], str] = lambda path: "openai",
                 x_api_key: Callable[[str], bool] = lambda path: True) -> None:
        self.app = app
        self.authenticator = authenticator
        self.prefixes = prefixes
        self.metrics = metrics
        self.dialect_of = dialect_of
        self.x_api_key = x_api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefixes):
            await self.app(scope, receive, send)
            return
        try:
            authorization = header(scope, b"authorization")
            # Anthropic's clients send the key as `x-api-key` (Claude Code, the anthropic SDK).
            api_key = header(scope, b"x-api-key") \
                if authorization is None and self.x_api_key(scope["path"]) else None
            token = api_key.strip() if api_key else bearer_token(authorization)
            principal = await self.authenticator.authenticate(token)
        except TramError as error:
            record_of(scope).error_code = error.code
            if self.metrics is not None:
                self.metrics.unauthenticated.labels(error.code or "").inc()
            await error_response(error, dialect=self.dialect_of(scope["path"]))(
                scope, receive, send)
            return
        scope["state"]["tram.principal"] = principal
        record_of(scope).key_id = principal.key_id
        await self.app(scope, receive, send)
