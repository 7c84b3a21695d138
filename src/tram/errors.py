"""Every error a client of Trạm can see, and the one place that maps them to HTTP.

The tree::

    TramError                         status  type                      code
    ├── InvalidRequest                400     invalid_request_error     invalid_value (or as given)
    │   ├── InvalidJSON               400     invalid_request_error     invalid_json
    │   ├── AmbiguousKeyName          400     invalid_request_error     ambiguous_key_name
    │   └── ImagesNotSupported        400     invalid_request_error     images_not_supported
    ├── AuthenticationFailed          401     invalid_request_error     invalid_api_key
    │   └── MissingAPIKey             401     invalid_request_error     missing_api_key
    ├── PermissionDenied              403     permission_error          model_not_allowed
    │   └── AdminRequired             403     permission_error          insufficient_permissions
    ├── NotFound                      404     invalid_request_error     not_found
    │   ├── ModelNotFound             404     invalid_request_error     model_not_found
    │   └── RouteNotServed            404     invalid_request_error     route_not_supported
    ├── MethodNotAllowed              405     invalid_request_error     method_not_allowed
    ├── Conflict                      409     invalid_request_error     conflict
    ├── RequestTimeout                408     invalid_request_error     request_timeout
    ├── RequestTooLarge               413     invalid_request_error     request_too_large
    ├── HeadersTooLarge               431     invalid_request_error     request_headers_too_large
    ├── MalformedHTTP                 400     invalid_request_error     invalid_http_request
    ├── ModelOverloaded               429     rate_limit_error          model_overloaded
    ├── RateLimited                   429     rate_limit_error          rate_limit_exceeded
    ├── InsufficientQuota             429     insufficient_quota        insufficient_quota
    ├── UpstreamClientError           4xx     as the engine said        as the engine said
    ├── EngineBadResponse             502     upstream_error            bad_gateway
    ├── EngineUnreachable             502     upstream_error            engine_unreachable
    ├── EngineUnavailable             503     service_unavailable_error engine_unavailable
    ├── ServerBusy                    503     service_unavailable_error server_busy
    ├── StoreUnavailable              503     service_unavailable_error store_unavailable
    ├── LimitsUnavailable             503     service_unavailable_error limits_unavailable
    ├── EngineTimeout                 504     timeout_error             engine_timeout
    │   └── EngineConnectTimeout      504     timeout_error             engine_connect_timeout
    └── InternalError                 500     server_error              internal_error

On `/v1/messages` the same errors are written in Anthropic's shape (`anthropic_error_body`:
`{"type": "error", "error": {"type": "not_found_error", "message"}}`), with the same statuses.

Services raise these; `error_response` (used by the app's exception handlers), `error_body`
(used by the SSE relay for mid-stream error events) and `raw_http_response` (used by the HTTP
server's guard for what it answers before any app runs: a head too large or too slow, a
malformed request, a connection over the cap) are the only places that turn them into bytes.
Anything that is not a TramError becomes an InternalError whose message never includes the
exception text (it may carry secrets or prompt text); the traceback goes to the log instead.
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson
from starlette.responses import Response

__all__ = [
    "AdminRequired",
    "AmbiguousKeyName",
    "AuthenticationFailed",
    "ConfigError",
    "Conflict",
    "EngineBadResponse",
    "EngineConnectTimeout",
    "EngineTimeout",
    "EngineUnavailable",
    "EngineUnreachable",
    "HeadersTooLarge",
    "ImagesNotSupported",
    "InsufficientQuota",
    "InternalError",
    "InvalidJSON",
    "InvalidRequest",
    "LimitsUnavailable",
    "MalformedHTTP",
    "MethodNotAllowed",
    "MissingAPIKey",
    "ModelNotFound",
    "ModelOverloaded",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "RequestTimeout",
    "RequestTooLarge",
    "RouteNotServed",
    "ServerBusy",
    "StoreUnavailable",
    "TramError",
    "UpstreamClientError",
    "anthropic_error_body",
    "error_body",
    "error_response",
    "raw_http_response",
    "unexpected_error",
    "unexpected_failure",
]


class TramError(Exception):
    """Base of every client-visible error: carries status, OpenAI type, code and param."""

    status: ClassVar[int] = 500
    type: ClassVar[str] = "server_error"
    code: ClassVar[str | None] = "internal_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def status_code(self) -> int:
        return self.status

    def headers(self) -> dict[str, str]:
        return {}


class InvalidRequest(TramError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_value"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message, param=param)
        if code is not None:
            self.code = code  # type: ignore[misc]


class InvalidJSON(InvalidRequest):
    code = "invalid_json"


class AmbiguousKeyName(InvalidRequest):
    """A key named by its name where several keys have that name (the candidates listed)."""

    code = "ambiguous_key_name"


class ImagesNotSupported(InvalidRequest):
    code = "images_not_supported"


class AuthenticationFailed(TramError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class MissingAPIKey(AuthenticationFailed):
    code = "missing_api_key"


class PermissionDenied(TramError):
    status = 403
    type = "permission_error"
    code = "model_not_allowed"


class AdminRequired(PermissionDenied):
    """A key without admin rights on an admin route."""

    code = "insufficient_permissions"


class NotFound(TramError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class RouteNotServed(NotFound):
    """The model's engine does not serve this route (it said so, or tram.yaml does)."""

    code = "route_not_supported"


class MethodNotAllowed(TramError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class Conflict(TramError):
    """The request does not fit the state its object is in (cancelling a finished batch)."""

    status = 409
    type = "invalid_request_error"
    code = "conflict"


class RequestTimeout(TramError):
    """The request's head or body stopped arriving (answered by the HTTP server's guard)."""

    status = 408
    type = "invalid_request_error"
    code = "request_timeout"


class RequestTooLarge(TramError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class HeadersTooLarge(TramError):
    """The request line and headers together exceed the server's head limit."""

    status = 431
    type = "invalid_request_error"
    code = "request_headers_too_large"


class MalformedHTTP(TramError):
    """Bytes the HTTP parser refuses (e.g. Content-Length with Transfer-Encoding)."""

    status = 400
    type = "invalid_request_error"
    code = "invalid_http_request"


class ModelOverloaded(TramError):
    """Too many requests in flight for one model: refused instead of queueing without bound."""

    status = 429
    type = "rate_limit_error"
    code = "model_overloaded"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class RateLimited(TramError):
    """A key's rpm, tpm or concurrency limit; Retry-After says when to come back."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class InsufficientQuota(TramError):
    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"


class UpstreamClientError(TramError):
    """A 4xx answer of the engine, passed on with its own status, message, type and code."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message, param=param)
        self._status = status
        self._type = type_
        self._code = code
        # What the log line and the usage row name (the client sees the engine's own code,
        # null included): the engine's code, else its error type (llama.cpp's
        # `exceed_context_size_error` for a prompt over its context), never internal_error.
        self.code = code or type_  # type: ignore[misc]

    def status_code(self) -> int:
        return self._status

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self._type,
                "param": self.param,
                "code": self._code,
            }
        }


class EngineBadResponse(TramError):
    status = 502
    type = "upstream_error"
    code = "bad_gateway"


class EngineUnreachable(TramError):
    status = 502
    type = "upstream_error"
    code = "engine_unreachable"


class EngineUnavailable(TramError):
    status = 503
    type = "service_unavailable_error"
    code = "engine_unavailable"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


class ServerBusy(TramError):
    """The process holds as many connections as it may; this one is refused at once."""

    status = 503
    type = "service_unavailable_error"
    code = "server_busy"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


class StoreUnavailable(TramError):
    """The key store cannot be read and the key was not seen recently."""

    status = 503
    type = "service_unavailable_error"
    code = "store_unavailable"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "5"}


class LimitsUnavailable(TramError):
    """Redis (shared limits) is down and the operator chose to fail closed."""

    status = 503
    type = "service_unavailable_error"
    code = "limits_unavailable"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "2"}


class EngineTimeout(TramError):
    status = 504
    type = "timeout_error"
    code = "engine_timeout"


class EngineConnectTimeout(EngineTimeout):
    code = "engine_connect_timeout"


class InternalError(TramError):
    status = 500
    type = "server_error"
    code = "internal_error"


def error_body(error: TramError) -> bytes:
    """The JSON bytes of an OpenAI-shaped error object."""
    return orjson.dumps(error.body())


_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large",
            503: b"Service Unavailable"}


def raw_http_response(error: TramError) -> bytes:
    """A whole HTTP/1.1 response that closes the connection, for the server's guard (no app
    runs for these requests, so the usual response path is not there)."""
    body = error_body(error)
    status = error.status_code()
    head = [b"HTTP/1.1 %d %s" % (status, _REASONS.get(status, b"Error")),
            b"content-type: application/json", b"content-length: %d" % len(body),
            b"connection: close"]
    head += [f"{name}: {value}".encode("latin-1") for name, value in error.headers().items()]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


_ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                    403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                    429: "rate_limit_error", 503: "overloaded_error", 529: "overloaded_error"}


def anthropic_error_body(error: TramError) -> bytes:
    """The same error in Anthropic's shape (`/v1/messages`): `{"type": "error", "error":
    {"type", "message"}}`, the type from the status as Anthropic names them."""
    status = error.status_code()
    kind = _ANTHROPIC_TYPES.get(status) or ("invalid_request_error" if status < 500
                                            else "api_error")
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": error.message}})


def error_response(error: TramError, headers: dict[str, str] | None = None,
                   dialect: str = "openai") -> Response:
    """The HTTP response for an error: status, body (OpenAI's shape, or Anthropic's on
    `/v1/messages`), and the error's own headers."""
    merged = error.headers()
    if headers:
        merged.update(headers)
    return Response(
        anthropic_error_body(error) if dialect == "anthropic" else error_body(error),
        status_code=error.status_code(),
        media_type="application/json",
        headers=merged,
    )


def unexpected_error() -> InternalError:
    """What a client is told of any failure that is not a TramError, wherever it is caught
    (the outermost middleware, Starlette's last handler, the HTTP server if the app itself
    crashes): never the exception's text (it may carry secrets or prompt text), which goes to
    the log with the request's id."""
    return InternalError("The gateway failed unexpectedly; see its log with this request's "
                         "X-Request-ID.")


def unexpected_failure(dialect: str = "openai") -> Response:
    """`unexpected_error` as a 500 response in the route's shape."""
    return error_response(unexpected_error(), dialect=dialect)


class ConfigError(Exception):
    """A configuration mistake (tram.yaml, the environment, an engine that cannot start as
    configured); the message is one line meant for the operator. Not a client's error: the CLI
    prints it and exits with status 2."""
