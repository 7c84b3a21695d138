"""BENCHMARK PLUMBING: the HTTP/1.1 server side the benchmark fakes share (the fake engine,
the fleet simulator, the floors' Protocol servers). Requests are parsed with llhttp
(httptools, as uvicorn does); each whole request becomes one `request(url, body)` call.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools

__all__ = ["RequestProtocol", "chunked", "http_response"]


def http_response(body: bytes, status: bytes = b"200 OK", kind: bytes = b"application/json") -> bytes:
    """A whole HTTP/1.1 response with a content-length."""
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: " + kind + b"\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)


def chunked(data: bytes) -> bytes:
    """One chunk of a chunked body."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


class RequestProtocol(asyncio.Protocol):
    """Requests in; subclasses answer in `request`. A parse error closes the connection."""

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.transport: Any = None  # uvloop's transport is not an asyncio.Transport subclass
        self.url = b""
        self._body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport:
                self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        body, self._body = b"".join(self._body), []
        self.request(self.url, body)

    def request(self, url: bytes, body: bytes) -> None:
        raise NotImplementedError
