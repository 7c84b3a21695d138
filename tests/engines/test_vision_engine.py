"""Vision end to end: `tram up --model qwen-vl=<checkpoint>` with a tiny Qwen3-VL built offline.

Random weights, so the assertions are on protocol, shapes and token accounting, not on words.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import openai
import orjson
import pytest

from tests.conftest import MASTER_KEY
from tests.support.images import data_url, image_server_app, png
from tests.support.servers import serve_app
from tests.support.tiny_vlm import build_tiny_qwen3_vl
from tests.support.tram_up import TramUp
from tests.test_spec_examples import _blocks, _localise

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def image_host() -> Iterator[str]:
    with serve_app(image_server_app()) as url:
        yield url


@pytest.fixture(scope="module")
def vision_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TramUp]:
    folder = tmp_path_factory.mktemp("vision")
    checkpoint = build_tiny_qwen3_vl(folder / "tiny-qwen3-vl")
    # The test's image server is on loopback, which the gateway refuses to fetch by default.
    (folder / "tram.yaml").write_text("vision: {allow_private_addresses: true}\nmodels: []\n")
    up = TramUp(folder, ["--config", "tram.yaml", "--model", f"qwen-vl={checkpoint}"], MASTER_KEY)
    try:
        up.wait_up(180)
        yield up
    finally:
        up.stop()


@pytest.fixture(scope="module")
def client(vision_up: TramUp) -> openai.OpenAI:
    return openai.OpenAI(base_url=vision_up.url + "/v1", api_key=MASTER_KEY, max_retries=0)


def ask(client: openai.OpenAI, image_url: str | None, **kwargs: object) -> openai.types.chat.ChatCompletion:
    content: list[dict] = [{"type": "text", "text": "Describe this image for me."}]
    if image_url is not None:
        content.append({"type": "image_url", "image_url": {"url": image_url}})
    return client.chat.completions.create(  # type: ignore[call-overload, no-any-return]
        model="qwen-vl", messages=[{"role": "user", "content": content}], max_tokens=4, **kwargs)


def test_listed_as_a_vision_model(client: openai.OpenAI) -> None:
    card = client.models.retrieve("qwen-vl")
    assert card.model_extra is not None and card.model_extra["vision"] is True


def test_image_by_data_url_is_counted_in_the_prompt(client: openai.OpenAI) -> None:
    text_only = ask(client, None)
    small = ask(client, data_url(png(64, 64)))
    large = ask(client, data_url(png(128, 128)))
    assert small.model == "qwen-vl"
    assert small.choices[0].finish_reason in ("length", "stop")
    assert text_only.usage and small.usage and large.usage
    assert small.usage.completion_tokens <= 4
    # 64x64 at 16px patches merged 2x2: 4 image tokens (plus the vision start/end markers);
    # 128x128: 16. The engine's counts follow the image's real shape.
    assert small.usage.prompt_tokens == text_only.usage.prompt_tokens + 2 + 4
    assert large.usage.prompt_tokens == text_only.usage.prompt_tokens + 2 + 16


def test_image_by_url_is_fetched_by_the_gateway(client: openai.OpenAI, image_host: str) -> None:
    by_url = ask(client, image_host + "/image-128x128.png")
    by_data = ask(client, data_url(png(128, 128)))
    assert by_url.usage and by_data.usage
    assert by_url.usage.prompt_tokens == by_data.usage.prompt_tokens


def test_vision_streaming(client: openai.OpenAI) -> None:
    chunks = list(ask(client, data_url(png(64, 64)), stream=True))
    assert chunks and all(c.model == "qwen-vl" for c in chunks)
    assert chunks[-1].choices[0].finish_reason in ("length", "stop")


def test_bad_image_url_is_a_400(client: openai.OpenAI, image_host: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, image_host + "/text")
    assert caught.value.body["code"] == "invalid_image_format"  # type: ignore[index]


def test_guide_section_4_curl_with_a_reachable_image(vision_up: TramUp, image_host: str) -> None:
    """The guide's vision example; its example.com image is replaced by a local one (no internet)."""
    command = _localise(_blocks("bash")[2], vision_up).replace(
        "https://example.com/image.jpg", image_host + "/image-64x64.png")
    command = command.replace("curl ", "curl -sS -w '\\n%{http_code}' ", 1)
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120,
                            check=False)
    body, status = result.stdout.rsplit("\n", 1)
    assert status == "200", body
    answer = orjson.loads(body)
    assert answer["model"] == "qwen-vl"
    assert answer["usage"]["completion_tokens"] <= 300


def test_the_engine_answers_the_gateway_alone(vision_up: TramUp) -> None:
    """Trạm's own transformers server listens on a Unix socket in a folder only its user can
    enter, and every path but GET /health needs the engine's key."""
    where = vision_up.engine_urls()["qwen-vl"]
    assert where.startswith("unix:")
    folder = Path(where.removeprefix("unix:")).parent
    assert folder.stat().st_mode & 0o777 == 0o700
    with vision_up.engine_client("qwen-vl", timeout=10) as engine:
        assert engine.get("/health").status_code == 200
        assert engine.get("/v1/models").status_code == 401
        refused = engine.post("/v1/chat/completions", json={"messages": [
            {"role": "user", "content": "hi"}]})
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "engine_key_required"
        assert engine.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
