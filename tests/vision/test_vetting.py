"""Every image vetted before an engine sees it: a corpus of bad inputs; SSRF refused in every
form an attacker tried (the fetcher runs on a stub resolver and a recording transport, so a
wrong answer cannot reach any address: the transport counts what would have been contacted);
a connection pinned to the address that was checked (DNS rebinding); content parts of unknown
or unvetted types refused by name."""

from __future__ import annotations

import base64
import io
import ipaddress
import struct
import zlib
from collections.abc import Callable

import httpx
import pytest

from tests.conftest import GatewayFactory
from tests.support.fault_engine import EngineLog
from tests.support.images import data_url, png
from tram.config import VisionConfig
from tram.errors import InvalidRequest
from tram.vision.addresses import is_public
from tram.vision.decode import inspect
from tram.vision.fetch import ImageFetcher
from tram.vision.parts import check_data_url

PARAM = "messages[0].content[1].image_url.url"


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares width × height, with almost no data behind it."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0"))
            + chunk(b"IEND", b""))


def _animated_gif() -> bytes:
    from PIL import Image

    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100)
    return buffer.getvalue()


def _encoded(data: bytes) -> str:
    return base64.b64encode(data).decode()


CORPUS: dict[str, tuple[str, str]] = {
    # name: (data URL, the error code)
    "truncated base64": ("data:image/png;base64," + _encoded(png(8, 8))[:-7], "invalid_image_url"),
    "wrong padding": ("data:image/png;base64," + _encoded(png(8, 8)).rstrip("=") + "===",
                      "invalid_image_url"),
    "a PNG labelled JPEG": (data_url(png(8, 8), "image/jpeg"), "invalid_image_format"),
    "a PNG declaring 100000×100000": (data_url(_png_header(100_000, 100_000)), "image_too_large"),
    "an SVG": ("data:image/svg+xml;base64," + _encoded(b"<svg xmlns='http://www.w3.org/2000/svg'/>"),
               "invalid_image_format"),
    "a 1×100000 image": (data_url(_png_header(1, 100_000)), "invalid_image"),
    "an animated GIF": (data_url(_animated_gif(), "image/gif"), "invalid_image"),
    "an empty file": ("data:image/png;base64,", "invalid_image_format"),
    "a signature-only file": (data_url(b"\x89PNG\r\n\x1a\n"), "invalid_image"),
    "a truncated PNG": (data_url(png(64, 64)[:60]), "invalid_image"),
}


@pytest.mark.parametrize("name", CORPUS)
def test_bad_images_are_400s_naming_the_part(name: str) -> None:
    url, code = CORPUS[name]
    config = VisionConfig()
    with pytest.raises(InvalidRequest) as caught:
        data = check_data_url(url, config, PARAM)
        inspect(data, config.max_decode_pixels, PARAM)
    assert caught.value.code == code, caught.value.message
    assert caught.value.param == PARAM


def test_good_images_pass_with_their_size() -> None:
    info = inspect(png(40, 30), 50_000_000, PARAM)
    assert (info.mime, info.width, info.height, info.frames) == ("image/png", 40, 30, 1)


@pytest.mark.parametrize("address", [
    "127.0.0.1", "0.0.0.0", "10.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.1.1",
    "169.254.169.254", "100.64.0.1", "::1", "::", "::ffff:127.0.0.1", "::7f00:1",
    "64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::", "2002:7f00:1::", "fec0::1", "fe80::1", "fc00::1",
    "fd12:3456::1", "2001:db8::1", "ff02::1", "224.0.0.1", "255.255.255.255", "198.18.0.1",
])
def test_special_purpose_addresses_are_not_public(address: str) -> None:
    assert not is_public(address)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111",
                                     "64:ff9b::5db8:d822", "2002:5db8:d822::1"])
def test_public_addresses_are(address: str) -> None:
    assert is_public(address)


class Network:
    """A stub resolver and a recording transport: what the fetcher resolved and contacted.
    Nothing is sent anywhere; the transport answers from `pages` (by the Host header)."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = {host: list(replies) for host, replies in answers.items()}
        self.resolved: list[str] = []
        self.contacted: list[tuple[str, str, str | None]] = []  # (URL, Host, SNI)
        self.pages: dict[str, Callable[[httpx.Request], httpx.Response]] = {}

    async def resolve(self, host: str, port: int) -> list[str]:
        self.resolved.append(host)
        try:  # an IP literal resolves to itself, as getaddrinfo does
            return [str(ipaddress.ip_address(host))]
        except ValueError:
            pass
        replies = self.answers.get(host)
        if replies is None:
            raise OSError("Name or service not known")
        return replies.pop(0) if len(replies) > 1 else replies[0]

    def handle(self, request: httpx.Request) -> httpx.Response:
        host = request.headers["host"]
        self.contacted.append((str(request.url), host,
                               request.extensions.get("sni_hostname")))
        page = self.pages.get(host)
        return page(request) if page else httpx.Response(200, content=png(16, 16),
                                                         headers={"content-type": "image/png"})

    def fetcher(self) -> ImageFetcher:
        return ImageFetcher(VisionConfig(), transport=httpx.MockTransport(self.handle),
                            resolver=self.resolve)


SSRF_URLS = {
    "http://127.0.0.1/a.png": {}, "http://localhost/a.png": {"localhost": [["127.0.0.1", "::1"]]},
    "http://[::1]/a.png": {}, "http://0.0.0.0/a.png": {}, "http://10.1.2.3/a.png": {},
    "http://172.16.5.4/a.png": {}, "http://192.168.0.10/a.png": {},
    "http://169.254.169.254/latest/meta-data/": {}, "http://[::ffff:127.0.0.1]/a.png": {},
    "http://[::7f00:1]/a.png": {}, "http://[64:ff9b::a9fe:a9fe]/a.png": {},
    "http://[2002:a9fe:a9fe::]/a.png": {}, "http://[fec0::1]/a.png": {},
    # Numeric forms getaddrinfo reads as 127.0.0.1 (inet_aton: decimal, octal, hex).
    "http://2130706433/a.png": {"2130706433": [["127.0.0.1"]]},
    "http://017700000001/a.png": {"017700000001": [["127.0.0.1"]]},
    "http://0x7f.0.0.1/a.png": {"0x7f.0.0.1": [["127.0.0.1"]]},
    "http://inside.example/a.png": {"inside.example": [["93.184.216.34", "10.0.0.5"]]},
}


@pytest.mark.parametrize("url", SSRF_URLS)
async def test_ssrf_forms_are_refused_and_nothing_is_contacted(url: str) -> None:
    network = Network(SSRF_URLS[url])
    fetcher = network.fetcher()
    try:
        with pytest.raises(InvalidRequest) as caught:
            await fetcher.fetch(url, PARAM)
    finally:
        await fetcher.aclose()
    assert caught.value.code == "image_address_not_allowed"
    # What a name resolved to is not revealed (the client's own literal may be echoed).
    for replies in SSRF_URLS[url].values():
        assert not any(address in caught.value.message for address in replies[0])
    assert network.contacted == []


async def test_the_connection_goes_to_the_address_that_was_checked() -> None:
    # Rebinding: public for the check, loopback for whoever asks next.
    network = Network({"images.example": [["93.184.216.34"], ["127.0.0.1"]]})
    fetcher = network.fetcher()
    try:
        data, mime = await fetcher.fetch("https://images.example/cat.png?size=1", PARAM)
    finally:
        await fetcher.aclose()
    assert (mime, data) == ("image/png", png(16, 16))
    assert network.resolved == ["images.example"]  # resolved once, by the check
    assert network.contacted == [("https://93.184.216.34/cat.png?size=1", "images.example",
                                  "images.example")]  # TLS and Host keep the name


async def test_a_redirect_to_a_refused_address_is_not_followed() -> None:
    network = Network({"images.example": [["93.184.216.34"]]})
    network.pages["images.example"] = lambda request: httpx.Response(
        302, headers={"location": "http://169.254.169.254/latest/meta-data/iam"})
    fetcher = network.fetcher()
    try:
        with pytest.raises(InvalidRequest) as caught:
            await fetcher.fetch("http://images.example/a.png", PARAM)
    finally:
        await fetcher.aclose()
    assert caught.value.code == "image_address_not_allowed"
    assert [host for _, host, _ in network.contacted] == ["images.example"]  # never the target


async def test_an_address_in_the_url_is_checked_and_used_as_it_is() -> None:
    network = Network({})
    fetcher = network.fetcher()
    try:
        await fetcher.fetch("https://[2606:4700::1111]:8443/a.png", PARAM)
    finally:
        await fetcher.aclose()
    assert network.resolved == []
    assert network.contacted == [("https://[2606:4700::1111]:8443/a.png", "[2606:4700::1111]:8443",
                                  None)]


async def test_every_redirect_hop_is_resolved_checked_and_pinned() -> None:
    network = Network({"a.example": [["93.184.216.34"]], "b.example": [["151.101.1.1"]]})
    network.pages["a.example"] = lambda request: httpx.Response(
        301, headers={"location": "https://b.example:8443/b.png"})
    fetcher = network.fetcher()
    try:
        await fetcher.fetch("http://a.example/a.png", PARAM)
    finally:
        await fetcher.aclose()
    assert network.contacted == [("http://93.184.216.34/a.png", "a.example", None),
                                 ("https://151.101.1.1:8443/b.png", "b.example:8443", "b.example")]


@pytest.mark.parametrize(("model", "part"), [
    ("qwen-text", {"type": "video_url", "video_url": {"url": "http://169.254.169.254/v.mp4"}}),
    ("qwen-vl", {"type": "video_url", "video_url": {"url": "http://169.254.169.254/v.mp4"}}),
    ("qwen-vl", {"type": "audio_url", "audio_url": {"url": "http://10.0.0.1/a.wav"}}),
    ("qwen-vl", {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}),
    ("qwen-vl", {"type": "input_image", "image_url": "http://10.0.0.1/a.png"}),
    ("qwen-vl", {"type": "image", "image": "http://10.0.0.1/a.png"}),
    ("qwen-vl", {"type": "image_embeds", "image_embeds": "AAAA"}),
])
def test_parts_of_other_types_are_refused_by_name(gateway: GatewayFactory, auth: dict,
                                                  engine_log: EngineLog, model: str,
                                                  part: dict) -> None:
    with gateway() as url:
        answer = httpx.post(url + "/v1/chat/completions", headers=auth, json={
            "model": model, "messages": [{"role": "user", "content": [
                {"type": "text", "text": "what is this?"}, part]}]})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert (error["code"], error["param"]) == ("unsupported_content_part",
                                               "messages[0].content[1].type")
    assert part["type"] in error["message"]
    assert engine_log.received == []


def test_images_per_request_are_bounded(gateway: GatewayFactory, auth: dict,
                                        engine_log: EngineLog,
                                        fault_engine_server: tuple[str, EngineLog]) -> None:
    models = [{"name": "qwen-vl", "vision": True, "max_images": 2,
               "upstreams": [{"url": fault_engine_server[0], "served_name": "echo"}]}]
    image = {"type": "image_url", "image_url": {"url": data_url(png(8, 8))}}
    with gateway(models=models) as url:
        two = httpx.post(url + "/v1/chat/completions", headers=auth, json={
            "model": "qwen-vl", "messages": [{"role": "user", "content": [image, image]}]})
        three = httpx.post(url + "/v1/chat/completions", headers=auth, json={
            "model": "qwen-vl", "messages": [{"role": "user", "content": [image, image, image]}]})
    assert two.status_code == 200
    assert three.status_code == 400
    assert (three.json()["error"]["code"], three.json()["error"]["param"]) == \
        ("too_many_images", "messages[0].content[2]")
    assert len(engine_log.received) == 1


async def test_host_allow_and_deny_lists() -> None:
    network = Network({"cdn.images.example": [["93.184.216.34"]],
                       "evil.example": [["93.184.216.35"]],
                       "blocked.images.example": [["93.184.216.36"]]})
    fetcher = ImageFetcher(VisionConfig(fetch_allow_hosts=["*.images.example"],
                                        fetch_deny_hosts=["blocked.images.example"]),
                           transport=httpx.MockTransport(network.handle), resolver=network.resolve)
    try:
        await fetcher.fetch("http://cdn.images.example/a.png", PARAM)
        for url in ("http://evil.example/a.png", "http://blocked.images.example/a.png",
                    "http://images.example.evil.example/a.png"):
            with pytest.raises(InvalidRequest) as caught:
                await fetcher.fetch(url, PARAM)
            assert caught.value.code == "image_address_not_allowed"
    finally:
        await fetcher.aclose()
    assert [host for _, host, _ in network.contacted] == ["cdn.images.example"]
    assert "evil.example" not in network.resolved  # refused before any look-up


async def test_a_fetched_image_is_cached_by_url_for_a_while() -> None:
    now = [1000.0]
    network = Network({"images.example": [["93.184.216.34"]]})
    fetcher = ImageFetcher(VisionConfig(fetch_cache_seconds=60, fetch_cache_bytes=10_000),
                           transport=httpx.MockTransport(network.handle),
                           resolver=network.resolve, clock=lambda: now[0])
    try:
        first = await fetcher.fetch("http://images.example/a.png", PARAM)
        again = await fetcher.fetch("http://images.example/a.png", PARAM)
        now[0] += 61
        later = await fetcher.fetch("http://images.example/a.png", PARAM)
    finally:
        await fetcher.aclose()
    assert first == again == later
    assert len(network.contacted) == 2  # once, then again after the minute
