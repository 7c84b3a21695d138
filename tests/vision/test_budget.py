"""Pixel budgets before the GPU: an engine never receives more pixels per image than its
model's budget (`detail: low` gets a smaller one); images within it pass byte for byte; the
usage row records the pixels sent."""

from __future__ import annotations

import base64
import io
import sqlite3

import httpx
import pytest

from tests.conftest import GatewayFactory
from tests.support.fault_engine import EngineLog
from tests.support.images import data_url, png
from tram.config import Settings
from tram.vision.decode import budget_size


def _jpeg(width: int, height: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 200)).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def _sent_images(engine_log: EngineLog) -> list[tuple[str, int, int, bytes]]:
    from PIL import Image

    found = []
    for part in engine_log.received[-1]["messages"][0]["content"]:
        if part.get("type") == "image_url":
            header, encoded = part["image_url"]["url"].split(",", 1)
            raw = base64.b64decode(encoded)
            with Image.open(io.BytesIO(raw)) as image:
                found.append((header, image.width, image.height, raw))
    return found


@pytest.mark.parametrize(("size", "budget"), [((4000, 3000), 1_003_520), ((100, 10_000), 2_500),
                                              ((640, 480), 640 * 480), ((7, 5), 10)])
def test_the_budget_keeps_the_aspect_and_is_never_exceeded(size: tuple[int, int],
                                                           budget: int) -> None:
    width, height = budget_size(*size, budget)
    assert width * height <= budget
    assert abs(width / height - size[0] / size[1]) <= max(1 / height, 1 / width) * size[0] / size[1] + 0.01


def test_an_engine_never_receives_more_pixels_than_the_budget(
        gateway: GatewayFactory, auth: dict, engine_log: EngineLog, settings: Settings,
        fault_engine_server: tuple[str, EngineLog]) -> None:
    models = [{"name": "qwen-vl", "vision": True, "max_pixels": 10_000,
               "upstreams": [{"url": fault_engine_server[0], "served_name": "echo"}]}]
    small = png(80, 60)
    with gateway(models=models, vision={"low_detail_pixels": 2_500}) as url:
        answer = httpx.post(url + "/v1/chat/completions", headers=auth, json={
            "model": "qwen-vl", "messages": [{"role": "user", "content": [
                {"type": "text", "text": "compare"},
                {"type": "image_url", "image_url": {"url": data_url(png(400, 300))}},
                {"type": "image_url", "image_url": {"url": data_url(_jpeg(1600, 900), "image/jpeg"),
                                                    "detail": "high"}},
                {"type": "image_url", "image_url": {"url": data_url(png(400, 300)),
                                                    "detail": "low"}},
                {"type": "image_url", "image_url": {"url": data_url(small)}}]}]})
        assert answer.status_code == 200, answer.text
        sent = _sent_images(engine_log)
        httpx.get(url + "/admin/usage", headers=auth)  # the row is written
    (png_header, w1, h1, _), (jpeg_header, w2, h2, _), (_, w3, h3, _), (_, w4, h4, raw4) = sent
    assert w1 * h1 <= 10_000 and abs(w1 / h1 - 4 / 3) < 0.05 and png_header == "data:image/png;base64"
    assert w2 * h2 <= 10_000 and abs(w2 / h2 - 16 / 9) < 0.05 and jpeg_header == "data:image/jpeg;base64"
    assert w3 * h3 <= 2_500 < w1 * h1  # detail: low sends fewer
    assert (w4, h4) == (80, 60) and raw4 == small  # within the budget: untouched
    with sqlite3.connect(settings.data_dir / "tram.db") as db:
        images, pixels = db.execute("SELECT images, image_pixels FROM usage_events").fetchone()
    assert (images, pixels) == (4, w1 * h1 + w2 * h2 + w3 * h3 + 80 * 60)


def test_the_lenient_image_url_form_is_accepted_and_sent_as_openais(
        gateway: GatewayFactory, auth: dict, engine_log: EngineLog,
        fault_engine_server: tuple[str, EngineLog]) -> None:
    models = [{"name": "qwen-vl", "vision": True, "max_pixels": 10_000,
               "upstreams": [{"url": fault_engine_server[0], "served_name": "echo"}]}]
    small, large = data_url(png(20, 20)), data_url(png(400, 300))
    with gateway(models=models) as url:
        answer = httpx.post(url + "/v1/chat/completions", headers=auth, json={
            "model": "qwen-vl", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": small},
                {"type": "image_url", "image_url": large}]}]})
        bad = httpx.post(url + "/v1/chat/completions", headers=auth, json={
            "model": "qwen-vl", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": "ftp://x/a.png"}]}]})
    assert answer.status_code == 200, answer.text
    first, second = engine_log.received[-1]["messages"][0]["content"]
    assert first == {"type": "image_url", "image_url": {"url": small}}
    assert second["image_url"]["url"].startswith("data:image/png;base64,")
    assert second["image_url"]["url"] != large  # fitted to the budget
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "messages[0].content[0].image_url.url"
