"""Fetching remote images for engines that cannot fetch them, without becoming an SSRF proxy.

Every address a host name resolves to must be public (`addresses.is_public`: IANA's
special-purpose blocks, and IPv4 carried inside IPv6), unless the operator allows private ones.
The connection then goes to an address that was checked, not to the name again: the request is
made to that address with the name kept in the Host header and for TLS (SNI and the
certificate's check), so a DNS answer that changes between the check and the connect
(rebinding) cannot lead anywhere else. Redirects are followed by hand, at most three, each
target resolved and checked again; the body is read with a size cap and a deadline, and must
be an image of an allowed type.
"""

from __future__ import annotations

import collections
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import anyio

from tram.config import VisionConfig
from tram.errors import InvalidRequest
from tram.vision.addresses import is_public
from tram.vision.dataurl import as_data_url
from tram.vision.parts import sniff_type

if TYPE_CHECKING:
    import httpx

__all__ = ["ImageFetcher", "Resolver"]

_MAX_REDIRECTS = 3
_DEFAULT_PORTS = {"http": 80, "https": 443}

# host, port → the addresses it resolves to, as text (a test can give its own)
Resolver = Callable[[str, int], Awaitable[list[str]]]


async def _system_resolver(host: str, port: int) -> list[str]:
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class ImageFetcher:
    """httpx (redirect handling, TLS, streaming with a cap) is loaded on the first image URL
    the gateway fetches: most deployments never do, and it is ~6 MB per process."""

    def __init__(self, config: VisionConfig,
                 transport: httpx.AsyncBaseTransport | None = None,
                 resolver: Resolver = _system_resolver,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._config = config
        self._transport = transport
        self._resolve = resolver
        self._http: httpx.AsyncClient | None = None
        self._cache = _Cache(config.fetch_cache_bytes, config.fetch_cache_seconds, clock)

    @property
    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            import httpx

            self._http = httpx.AsyncClient(
                transport=self._transport, follow_redirects=False, trust_env=False,
                timeout=httpx.Timeout(self._config.fetch_timeout,
                                      connect=self._config.fetch_connect_timeout),
                headers={"user-agent": "tram-image-fetch/1"},
            )
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def fetch_as_data_url(self, url: str, param: str) -> str:
        data, mime = await self.fetch(url, param)
        return as_data_url(data, mime)

    async def fetch(self, url: str, param: str) -> tuple[bytes, str]:
        """An image: its bytes and type (PNG, JPEG, WebP or GIF, as allowed)."""
        cached = self._cache.get(url)
        if cached is not None:
            return cached
        data = await self.fetch_bytes(url, param, self._config.max_image_bytes, "image")
        mime = sniff_type(data)
        if mime is None or mime not in self._config.allowed_types:
            raise InvalidRequest(
                "The image URL did not return a PNG, JPEG, WebP or GIF image.",
                param=param, code="invalid_image_format",
            )
        self._cache.put(url, data, mime)
        return data, mime

    async def fetch_bytes(self, url: str, param: str, limit: int, what: str) -> bytes:
        """Whatever the URL holds, within `limit` bytes, under the same address rules
        (`what` names it in errors: "image", "video", "audio")."""
        import httpx

        try:
            with anyio.fail_after(self._config.fetch_timeout):
                for _ in range(_MAX_REDIRECTS + 1):
                    target, headers, extensions = await self._pinned(url, param)
                    async with self._client.stream("GET", target, headers=headers,
                                                   extensions=extensions) as response:
                        if response.is_redirect and "location" in response.headers:
                            url = urljoin(url, response.headers["location"])
                            continue
                        if response.status_code != 200:
                            raise _fail(f"Fetching the {what} URL gave HTTP "
                                        f"{response.status_code}.", param)
                        return await _read_capped(response, limit, param, what)
                raise _fail(f"Fetching the {what} URL redirected too many times.", param)
        except TimeoutError:
            raise _fail(f"Fetching the {what} URL took longer than "
                        f"{self._config.fetch_timeout:g}s.", param) from None
        except httpx.HTTPError as exc:
            raise _fail(f"Could not fetch the {what} URL ({type(exc).__name__}).",
                        param) from None


    async def _pinned(self, url: str, param: str) -> tuple[str, dict[str, str], dict[str, Any]]:
        """The URL to request (at a checked address), its Host header and TLS name."""
        parts = urlsplit(url)
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise InvalidRequest("Image URL must be an http(s) URL.", param=param,
                                 code="invalid_image_url")
        host = parts.hostname
        if not _host_allowed(host, self._config):
            raise InvalidRequest(f"Images from {host!r} are not accepted here.", param=param,
                                 code="image_address_not_allowed")
        if self._config.allow_private_addresses:
            return url, {}, {}
        if _is_address(host):  # nothing to resolve, nothing to pin: the URL is the address
            if not is_public(host):
                raise _not_public(host, param)
            return url, {}, {}
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
        try:
            addresses = await self._resolve(host, port)
        except OSError:
            raise _fail(f"The image host {host!r} could not be resolved.", param) from None
        # Every answer must be public, not only the one used: a name that also points inside
        # is refused whole (and what it resolved to is not revealed).
        if not addresses or not all(is_public(address) for address in addresses):
            raise _not_public(host, param)
        address = addresses[0].split("%", 1)[0]
        netloc = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
        target = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        host_header = host if parts.port is None else f"{host}:{parts.port}"
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        return target, {"host": host_header}, extensions


async def _read_capped(response: httpx.Response, limit: int, param: str, what: str) -> bytes:
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit, param, what)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit, param, what)
        chunks.append(chunk)
    return b"".join(chunks)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _not_public(host: str, param: str) -> InvalidRequest:
    return InvalidRequest(f"The image host {host!r} is not a public address; Trạm does not "
                          "fetch images from private networks.", param=param,
                          code="image_address_not_allowed")


def _matches(host: str, pattern: str) -> bool:
    pattern = pattern.lower().rstrip(".")
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


def _host_allowed(host: str, config: VisionConfig) -> bool:
    host = host.lower().rstrip(".")
    if any(_matches(host, pattern) for pattern in config.fetch_deny_hosts):
        return False
    return not config.fetch_allow_hosts or any(_matches(host, pattern)
                                               for pattern in config.fetch_allow_hosts)


class _Cache:
    """Fetched images by URL, bounded by total bytes and by age (oldest out first)."""

    def __init__(self, max_bytes: int, max_age: float, clock: Callable[[], float]) -> None:
        self._max_bytes, self._max_age, self._clock = max_bytes, max_age, clock
        self._entries: collections.OrderedDict[str, tuple[float, bytes, str]] = \
            collections.OrderedDict()
        self._bytes = 0

    def get(self, url: str) -> tuple[bytes, str] | None:
        entry = self._entries.get(url)
        if entry is None:
            return None
        stored, data, mime = entry
        if self._clock() - stored > self._max_age:
            self._drop(url)
            return None
        self._entries.move_to_end(url)
        return data, mime

    def put(self, url: str, data: bytes, mime: str) -> None:
        if len(data) > self._max_bytes or self._max_age <= 0:
            return
        if url in self._entries:
            self._drop(url)
        self._entries[url] = (self._clock(), data, mime)
        self._bytes += len(data)
        while self._bytes > self._max_bytes:
            self._drop(next(iter(self._entries)))

    def _drop(self, url: str) -> None:
        _, data, _ = self._entries.pop(url)
        self._bytes -= len(data)


def _fail(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="image_fetch_failed")


def _too_large(limit: int, param: str, what: str) -> InvalidRequest:
    return InvalidRequest(f"The {what} is larger than the {limit} bytes allowed.", param=param,
                          code="image_too_large" if what == "image" else "media_too_large")
