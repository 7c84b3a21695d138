"""Video and audio parts: refused unless the model enables them; when enabled, decoded or
fetched by the gateway (never by the engine), held to the model's byte and duration caps, and
forwarded as data."""

from __future__ import annotations

import base64
import io
import struct
import wave
from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from tests.conftest import GatewayFactory
from tests.support.fault_engine import EngineLog
from tests.support.servers import serve_app
from tram.vision.media import clip_seconds


def wav(seconds: float, rate: int = 8000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as clip:
        clip.setnchannels(1)
        clip.setsampwidth(2)
        clip.setframerate(rate)
        clip.writeframes(b"\0\0" * int(seconds * rate))
    return buffer.getvalue()


def mp4(seconds: float, version: int = 0) -> bytes:
    """The boxes an MP4 opens with: ftyp, then moov holding mvhd with the duration."""
    def box(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", 8 + len(body)) + kind + body
    scale = 1000
    if version == 1:
        mvhd = bytes([1, 0, 0, 0]) + struct.pack(">QQIQ", 0, 0, scale, int(seconds * scale))
    else:
        mvhd = bytes(4) + struct.pack(">IIII", 0, 0, scale, int(seconds * scale))
    mvhd += bytes(80)
    return box(b"ftyp", b"isom\0\0\0\0isom") + box(b"moov", box(b"mvhd", mvhd))


def test_durations_are_read_from_the_headers() -> None:
    assert clip_seconds(wav(1.5)) == ("audio/wav", 1.5)
    assert clip_seconds(mp4(12.0)) == ("video/mp4", 12.0)
    assert clip_seconds(mp4(7.5, version=1)) == ("video/mp4", 7.5)
    assert clip_seconds(b"ID3\x03\x00" + bytes(100)) is None  # MP3: not a container we read
    assert clip_seconds(b"RIFF\0\0\0\0WAVEjunk") is None


@pytest.fixture
def clips_host() -> Iterator[str]:
    app = Starlette(routes=[Route("/one-second.wav",
                                  lambda request: Response(wav(1.0), media_type="audio/wav"))])
    with serve_app(app) as url:
        yield url


def _models(engine: str) -> list[dict]:
    return [{"name": "omni", "vision": True, "audio": {"max_bytes": 100_000, "max_seconds": 2},
             "video": {"max_bytes": 100_000, "max_seconds": 10},
             "upstreams": [{"url": engine, "served_name": "echo"}]},
            {"name": "qwen-vl", "vision": True, "upstreams": [{"url": engine, "served_name": "echo"}]}]


def _ask(url: str, auth: dict, model: str, part: dict) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", headers=auth, timeout=30, json={
        "model": model, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is this?"}, part]}]})


def test_enabled_media_is_vetted_and_forwarded_as_data(
        gateway: GatewayFactory, auth: dict, engine_log: EngineLog, clips_host: str,
        fault_engine_server: tuple[str, EngineLog]) -> None:
    one_second = base64.b64encode(wav(1.0)).decode()
    with gateway(models=_models(fault_engine_server[0]),
                 vision={"allow_private_addresses": True}) as url:
        spoken = _ask(url, auth, "omni", {"type": "input_audio",
                                          "input_audio": {"data": one_second, "format": "wav"}})
        sent_audio = engine_log.received[-1]["messages"][0]["content"][1]
        fetched = _ask(url, auth, "omni", {"type": "audio_url",
                                           "audio_url": {"url": clips_host + "/one-second.wav"}})
        sent_fetched = engine_log.received[-1]["messages"][0]["content"][1]
        video = _ask(url, auth, "omni", {"type": "video_url", "video_url": {
            "url": "data:video/mp4;base64," + base64.b64encode(mp4(4.0)).decode()}})
        refused_here = _ask(url, auth, "qwen-vl", {"type": "input_audio", "input_audio": {
            "data": one_second, "format": "wav"}})
    assert [a.status_code for a in (spoken, fetched, video)] == [200, 200, 200]
    assert sent_audio["input_audio"]["data"] == one_second
    # The engine got the clip itself, never the URL to fetch.
    assert sent_fetched["audio_url"]["url"] == "data:audio/wav;base64," + one_second
    assert refused_here.status_code == 400
    assert "does not take audio" in refused_here.json()["error"]["message"]


@pytest.mark.parametrize(("part", "code"), [
    ({"type": "input_audio", "input_audio": {"data": base64.b64encode(wav(3.0)).decode(),
                                             "format": "wav"}}, "media_too_long"),
    ({"type": "video_url", "video_url": {"url": "data:video/mp4;base64,"
                                         + base64.b64encode(mp4(45.0)).decode()}}, "media_too_long"),
    ({"type": "audio_url", "audio_url": {"url": "data:audio/wav;base64,"
                                         + base64.b64encode(wav(1.0, rate=64000)).decode()}},
     "media_too_large"),
    ({"type": "audio_url", "audio_url": {"url": "data:audio/mpeg;base64,"
                                         + base64.b64encode(b"ID3\x03" + bytes(64)).decode()}},
     "invalid_media"),
    ({"type": "video_url", "video_url": {"url": "data:video/mp4;base64,"
                                         + base64.b64encode(wav(1.0)).decode()}}, "invalid_media"),
    ({"type": "input_audio", "input_audio": {"data": "not base64!", "format": "wav"}},
     "invalid_media"),
    ({"type": "video_url", "video_url": {"url": "http://169.254.169.254/latest.mp4"}},
     "image_address_not_allowed"),
])
def test_bad_media_is_a_400_naming_the_part(gateway: GatewayFactory, auth: dict,
                                            engine_log: EngineLog, part: dict, code: str,
                                            fault_engine_server: tuple[str, EngineLog]) -> None:
    with gateway(models=_models(fault_engine_server[0])) as url:
        answer = _ask(url, auth, "omni", part)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == code, error
    assert error["param"].startswith("messages[0].content[1].")
    assert engine_log.received == []
