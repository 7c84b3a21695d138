"""The web pages: a playground and an admin console, static files served by the gateway.

No build step: plain ES modules, a stylesheet and one HTML page (docs/decisions.md). Every asset
is served from here; the pages talk to this gateway only, and the Content-Security-Policy says
so to the browser (no script, style, image or connection to anywhere else).
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from tram.types import ASGIApp

__all__ = ["STATIC", "web_index", "web_pages"]

STATIC = Path(__file__).with_name("static")

_HEADERS = [
    (b"content-security-policy",
     b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
     b"connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
     b"frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-cache"),  # revalidated (ETag): a new version is seen at once
]


class _PageHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def web_pages() -> ASGIApp:
    """/ui/…: the page's scripts, stylesheet and icon."""
    return _PageHeaders(StaticFiles(directory=STATIC))


async def web_index(request: Request) -> Response:
    """/: the one page (playground and console)."""
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8",
                        headers={name.decode(): value.decode() for name, value in _HEADERS})
