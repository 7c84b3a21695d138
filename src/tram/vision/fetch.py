"""Fetching remote images for engines that cannot fetch them, without becoming an SSRF proxy.

Every address a host name resolves to must be public (unless the operator allows private
ones); redirects are followed by hand, at most three, each target checked again; the body is
read with a size cap and a deadline, and must be an image of an allowed type.
Known limit: the name is resolved again by the HTTP client, so a DNS answer that changes
between the check and the connect (rebinding) is not caught; engines on the same host should
not expose anything an image URL could harm.
"""

from __future__ import annotations

import base64
import ipaddress
import socket
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

import anyio

from tram.config import VisionConfig
from tram.errors import InvalidRequest
from tram.vision.parts import sniff_type

if TYPE_CHECKING:
    import httpx

__all__ = ["ImageFetcher"]

_MAX_REDIRECTS = 3


class ImageFetcher:
    """httpx (redirect handling, TLS, streaming with a cap) is loaded on the first image URL
    the gateway fetches: most deployments never do, and it is ~6 MB per process."""

    def __init__(self, config: VisionConfig,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._config = config
        self._transport = transport
        self._http: httpx.AsyncClient | None = None

    @property
    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            import httpx

            self._http = httpx.AsyncClient(
                transport=self._transport, follow_redirects=False, trust_env=False,
                timeout=httpx.Timeout(self._config.fetch_timeout),
                headers={"user-agent": "tram-image-fetch/1"},
            )
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def fetch_as_data_url(self, url: str, param: str) -> str:
        data, mime = await self.fetch(url, param)
        return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")

    async def fetch(self, url: str, param: str) -> tuple[bytes, str]:
        import httpx

        try:
            with anyio.fail_after(self._config.fetch_timeout):
                for _ in range(_MAX_REDIRECTS + 1):
                    await self._check_host(url, param)
                    async with self._client.stream("GET", url) as response:
                        if response.is_redirect and "location" in response.headers:
                            url = urljoin(url, response.headers["location"])
                            continue
                        if response.status_code != 200:
                            raise _fail(f"Fetching the image URL gave HTTP {response.status_code}.",
                                        param)
                        data = await self._read_capped(response, param)
                        break
                else:
                    raise _fail("Fetching the image URL redirected too many times.", param)
        except TimeoutError:
            raise _fail(f"Fetching the image URL took longer than {self._config.fetch_timeout:g}s.",
                        param) from None
        except httpx.HTTPError as exc:
            raise _fail(f"Could not fetch the image URL ({type(exc).__name__}).", param) from None
        mime = sniff_type(data)
        if mime is None or mime not in self._config.allowed_types:
            raise InvalidRequest(
                "The image URL did not return a PNG, JPEG, WebP or GIF image.",
                param=param, code="invalid_image_format",
            )
        return data, mime

    async def _read_capped(self, response: httpx.Response, param: str) -> bytes:
        limit = self._config.max_image_bytes
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise _too_large(limit, param)
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit, param)
            chunks.append(chunk)
        return b"".join(chunks)

    async def _check_host(self, url: str, param: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidRequest("Image URL must be an http(s) URL.", param=param,
                                 code="invalid_image_url")
        if self._config.allow_private_addresses:
            return
        try:
            infos = await anyio.getaddrinfo(parts.hostname, parts.port or 443,
                                            type=socket.SOCK_STREAM)
        except OSError:
            raise _fail(f"The image host {parts.hostname!r} could not be resolved.", param) from None
        for info in infos:
            address = ipaddress.ip_address(info[4][0])
            if not address.is_global:
                raise InvalidRequest(
                    f"The image host {parts.hostname!r} resolves to a non-public address; "
                    "Trạm does not fetch images from private networks.",
                    param=param, code="invalid_image_url",
                )


def _fail(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="image_fetch_failed")


def _too_large(limit: int, param: str) -> InvalidRequest:
    return InvalidRequest(f"Image is larger than the {limit} bytes allowed per image.",
                          param=param, code="image_too_large")
