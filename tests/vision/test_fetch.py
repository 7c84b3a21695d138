"""The gateway's image fetcher: images come back as bytes; private hosts and non-images do not."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.images import image_server_app, png
from tests.support.servers import serve_app
from tram.config import VisionConfig
from tram.errors import InvalidRequest
from tram.vision.fetch import ImageFetcher


@pytest.fixture(scope="module")
def image_host() -> Iterator[str]:
    with serve_app(image_server_app()) as url:
        yield url


async def test_fetches_an_image_and_follows_a_redirect(image_host: str) -> None:
    fetcher = ImageFetcher(VisionConfig(allow_private_addresses=True))
    try:
        data, mime = await fetcher.fetch(image_host + "/image-40x30.png", "p")
        assert (data, mime) == (png(40, 30), "image/png")
        redirected, _ = await fetcher.fetch(image_host + "/redirect", "p")
        assert redirected == png(64, 64)
        url = await fetcher.fetch_as_data_url(image_host + "/image-8x8.png", "p")
        assert url.startswith("data:image/png;base64,iVBOR")
    finally:
        await fetcher.aclose()


@pytest.mark.parametrize(
    ("path", "allow_private", "max_bytes", "code", "words"),
    [
        ("/image-64x64.png", False, 10_000_000, "image_address_not_allowed", "not a public address"),
        ("/text", True, 10_000_000, "invalid_image_format", "did not return a PNG"),
        ("/missing.png", True, 10_000_000, "image_fetch_failed", "HTTP 404"),
        ("/image-800x800.png", True, 2048, "image_too_large", "2048 bytes"),
    ],
)
async def test_refusals_are_clear_400s(image_host: str, path: str, allow_private: bool,
                                       max_bytes: int, code: str, words: str) -> None:
    fetcher = ImageFetcher(VisionConfig(allow_private_addresses=allow_private,
                                        max_image_bytes=max_bytes))
    try:
        with pytest.raises(InvalidRequest) as caught:
            await fetcher.fetch(image_host + path, "messages[0].content[1].image_url.url")
    finally:
        await fetcher.aclose()
    assert caught.value.code == code
    assert words in caught.value.message
    assert caught.value.param == "messages[0].content[1].image_url.url"
