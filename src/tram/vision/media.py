"""Video and audio parts, for models whose config enables them (`video:` / `audio:` in
tram.yaml): refused otherwise, vetted like images when enabled.

vLLM fetches `video_url` and `audio_url` URLs itself, past every check of the gateway, so the
gateway takes them in hand: a data URL is decoded, a URL fetched through the SSRF-safe fetcher,
each within the model's byte cap, and the clip's duration is read from its header (WAV through
the standard library's `wave`; MP4 from its `mvhd` box) and held to the model's duration cap.
What the engine receives is a data URL. Other containers are refused: their duration cannot be
checked without a decoder.
"""

from __future__ import annotations

import binascii
import io
import re
import struct
import wave
from dataclasses import dataclass
from typing import Any, Literal

from tram.config import MediaLimits
from tram.errors import InvalidRequest
from tram.vision.dataurl import DATA_URL, as_data_url, b64decode

__all__ = ["MEDIA_PARTS", "MediaPart", "check_clip", "clip_seconds", "media_of"]

Kind = Literal["video", "audio"]
# part type → (kind, field holding the URL or data)
MEDIA_PARTS: dict[str, Kind] = {"video_url": "video", "audio_url": "audio", "input_audio": "audio"}
@dataclass(frozen=True)
class MediaPart:
    kind: Kind
    message_index: int
    part_index: int
    part: dict[str, Any]  # the client's own part, rewritten in place once vetted
    where: str = "messages"  # the list it is in: chat's messages, Responses' input

    @property
    def param(self) -> str:
        field = "input_audio.data" if self.part.get("type") == "input_audio" \
            else f"{self.part.get('type')}.url"
        return f"{self.where}[{self.message_index}].content[{self.part_index}].{field}"

    def source(self) -> str | bytes:
        """A URL to fetch (str, http/https) or the clip's bytes."""
        kind = self.part.get("type")
        if kind == "input_audio":
            body = self.part.get("input_audio")
            data = body.get("data") if isinstance(body, dict) else None
            if not isinstance(data, str):
                raise InvalidRequest("input_audio needs base64 'data'.", param=self.param,
                                     code="invalid_media")
            return _b64(data, self.param)
        value = self.part.get(kind) if isinstance(kind, str) else None
        url = value.get("url") if isinstance(value, dict) else value
        if not isinstance(url, str) or not url:
            raise InvalidRequest(f"{kind} needs a 'url'.", param=self.param, code="invalid_media")
        match = DATA_URL.match(url)
        if match is not None:
            return _b64(url[match.end():], self.param)
        if not re.match(r"^https?://[^/\s]+", url, re.IGNORECASE):
            raise InvalidRequest(f"A {self.kind} URL must be http(s) or a base64 data URL.",
                                 param=self.param, code="invalid_media")
        return url

    def replace(self, data: bytes, mime: str) -> None:
        """Forward the vetted clip itself, as a data URL (or base64 data for input_audio)."""
        url = as_data_url(data, mime)
        kind = self.part["type"]
        if kind == "input_audio":
            self.part["input_audio"]["data"] = url.split(",", 1)[1]
        else:
            self.part[kind] = {"url": url}


def _b64(encoded: str, param: str) -> bytes:
    try:
        return b64decode(encoded)
    except (binascii.Error, ValueError):
        raise InvalidRequest("The media data is not valid base64.", param=param,
                             code="invalid_media") from None


def _mp4_seconds(data: bytes) -> float | None:
    """The duration in an MP4's movie header (moov/mvhd), None if there is none."""
    def boxes(buffer: bytes, start: int, end: int) -> list[tuple[bytes, int, int]]:
        found, at = [], start
        while at + 8 <= end:
            size, kind = struct.unpack(">I4s", buffer[at:at + 8])
            header = 8
            if size == 1 and at + 16 <= end:
                size, header = struct.unpack(">Q", buffer[at + 8:at + 16])[0], 16
            elif size == 0:
                size = end - at
            if size < header or at + size > end:
                break
            found.append((kind, at + header, at + size))
            at += size
        return found

    for kind, start, end in boxes(data, 0, len(data)):
        if kind != b"moov":
            continue
        for inner, body, _ in boxes(data, start, end):
            if inner == b"mvhd":
                version = data[body]
                if version == 1:
                    scale, duration = struct.unpack(">IQ", data[body + 20:body + 32])
                else:
                    scale, duration = struct.unpack(">II", data[body + 12:body + 20])
                return duration / scale if scale else None
    return None


def clip_seconds(data: bytes) -> tuple[str, float] | None:
    """(MIME type, duration in seconds) of a WAV or MP4 clip; None if it is neither."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        try:
            with wave.open(io.BytesIO(data)) as clip:
                rate = clip.getframerate()
                return "audio/wav", clip.getnframes() / rate if rate else 0.0
        except (wave.Error, EOFError):
            return None
    if data[4:8] == b"ftyp":
        seconds = _mp4_seconds(data)
        return ("video/mp4", seconds) if seconds is not None else None
    return None


def check_clip(data: bytes, part: MediaPart, limits: MediaLimits) -> str:
    """The clip's MIME type, once its size, container and duration are within `limits`."""
    if len(data) > limits.max_bytes:
        raise InvalidRequest(f"The {part.kind} is larger than the {limits.max_bytes} bytes "
                             "allowed.", param=part.param, code="media_too_large")
    found = clip_seconds(data)
    expected = "audio/wav" if part.kind == "audio" else "video/mp4"
    if found is None or found[0] != expected:
        raise InvalidRequest(f"The {part.kind} must be a {'WAV' if part.kind == 'audio' else 'MP4'} "
                             "file whose duration can be read.", param=part.param,
                             code="invalid_media")
    mime, seconds = found
    if seconds > limits.max_seconds:
        raise InvalidRequest(f"The {part.kind} lasts {seconds:.1f}s, more than the "
                             f"{limits.max_seconds:g}s allowed.", param=part.param,
                             code="media_too_long")
    return mime


def media_of(part: dict[str, Any], message_index: int, part_index: int) -> MediaPart | None:
    kind = MEDIA_PARTS.get(str(part.get("type")))
    return MediaPart(kind, message_index, part_index, part) if kind is not None else None
