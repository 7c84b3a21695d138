"""Large data URLs lifted out of a request body before its JSON is parsed: the image ones go
to the image threads as views, everything else comes back exactly as the client sent it."""

from __future__ import annotations

import base64

import httpx
import orjson
import pytest

from tests.conftest import GatewayFactory
from tests.support.fault_engine import EngineLog
from tests.support.images import data_url, png
from tram.errors import InvalidJSON
from tram.vision.lift import keep_image_urls, lift_data_urls

BIG = data_url(png(900, 900, (0, 0, 0)) + b"\0" * 300_000)  # > 256 KiB, still a PNG header


def _body(*parts: dict, text: str = "hi") -> bytes:
    return orjson.dumps({"model": "qwen-vl", "messages": [
        {"role": "system", "content": text},
        {"role": "user", "content": [{"type": "text", "text": "what is this?"}, *parts]}]})


def test_only_long_data_url_values_are_lifted_and_the_rest_is_restored_exactly() -> None:
    long_text = "data:" + "x" * 300_000  # a text that starts like a data URL
    escaped = "data:" + "y" * 300_000 + "\n"  # a JSON escape inside: never lifted
    small = data_url(png(8, 8))
    raw = _body({"type": "image_url", "image_url": {"url": BIG}},
                {"type": "image_url", "image_url": BIG},  # the lenient form
                {"type": "image_url", "image_url": {"url": small}},
                {"type": "text", "text": long_text}, text=escaped)
    body, lifted = lift_data_urls(raw)
    assert len(lifted) == 3  # the two images and the long text
    assert len(body) < len(escaped) + 2_000  # what stays: the escaped value and the small rest
    payload = orjson.loads(body)
    images = keep_image_urls(payload, lifted)
    assert len(images) == 2
    parts = payload["messages"][1]["content"]
    assert parts[1]["image_url"]["url"] in images and parts[2]["image_url"] in images
    assert bytes(images[parts[1]["image_url"]["url"]]).decode() == BIG
    # Everything that is not an image URL is exactly what was sent.
    original = orjson.loads(raw)
    for restored, sent in ((parts[3], original["messages"][1]["content"][3]),
                           (parts[4], original["messages"][1]["content"][4])):
        assert restored == sent
    assert payload["messages"][0] == original["messages"][0]


def test_small_bodies_and_keys_are_left_alone() -> None:
    raw = _body({"type": "image_url", "image_url": {"url": data_url(png(8, 8))}})
    assert lift_data_urls(raw) == (raw, {})
    key_not_value = orjson.dumps({"data:" + "z" * 300_000: 1, "model": "m"})
    assert lift_data_urls(key_not_value)[1] == {}


def test_restored_text_must_be_utf8() -> None:
    raw = b'{"model":"m","messages":[{"role":"user","content":"data:' + b"\xff" * 300_000 + b'"}]}'
    body, lifted = lift_data_urls(raw)
    with pytest.raises(InvalidJSON):
        keep_image_urls(orjson.loads(body), lifted)


def test_lifted_images_through_the_gateway(gateway: GatewayFactory, auth: dict,
                                           engine_log: EngineLog,
                                           fault_engine_server: tuple[str, EngineLog]) -> None:
    models = [{"name": "qwen-vl", "vision": True, "max_pixels": 1_000_000,
               "upstreams": [{"url": fault_engine_server[0], "served_name": "echo"}]}]
    resized = data_url(png(1500, 1000, (5, 5, 5)) + b"\0" * 300_000)
    broken = "data:image/png;base64," + "!" * 400_000
    with gateway(models=models) as url:
        answer = httpx.post(url + "/v1/chat/completions", headers=auth, content=_body(
            {"type": "image_url", "image_url": {"url": BIG}},
            {"type": "image_url", "image_url": {"url": resized, "detail": "high"}}))
        sent = engine_log.received[-1]["messages"][1]["content"]
        refused = httpx.post(url + "/v1/chat/completions", headers=auth, content=_body(
            {"type": "image_url", "image_url": {"url": broken}}))
    assert answer.status_code == 200, answer.text
    assert sent[1]["image_url"]["url"] == BIG  # within budget: exactly as sent
    assert sent[2]["image_url"]["detail"] == "high"
    small = base64.b64decode(sent[2]["image_url"]["url"].split(",", 1)[1])
    assert len(small) < 300_000  # resized to the budget and re-encoded
    assert refused.status_code == 400
    assert (refused.json()["error"]["code"], refused.json()["error"]["param"]) == \
        ("invalid_image_url", "messages[1].content[1].image_url.url")
