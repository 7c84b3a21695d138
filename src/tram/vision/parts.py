"""Checks on the image parts of a request, before anything is sent to an engine.

A data URL is decoded once to check its size and that its bytes really are the image type it
claims (a mislabelled or truncated image gets a 400 here, not an obscure engine error).
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Collection

from tram.config import VisionConfig
from tram.errors import InvalidRequest
from tram.protocol.chat import ChatCompletionRequest, ImagePart, OtherPart
from tram.vision.dataurl import DATA_URL, b64decode
from tram.vision.media import MEDIA_PARTS

__all__ = ["any_parts", "check_data_url", "check_url_form", "content_parts", "param_of",
           "sniff_type"]

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def sniff_type(data: bytes) -> str | None:
    for signature, mime in _SIGNATURES:
        if data.startswith(signature):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def param_of(message_index: int, part_index: int) -> str:
    return f"messages[{message_index}].content[{part_index}].image_url.url"


def check_data_url(url: str | memoryview, config: VisionConfig, param: str) -> bytes:
    """Decode and check a base64 data URL (a str, or the bytes of one); the image bytes."""
    # A view's header read as text: one character per byte, so indexes match.
    head = url if isinstance(url, str) else bytes(url[:256]).decode("ascii", "replace")
    match = DATA_URL.match(head)
    if match is None:
        raise InvalidRequest(
            "Invalid image data URL: expected 'data:image/<type>;base64,<data>'.",
            param=param, code="invalid_image_url",
        )
    declared = match.group("type").lower()
    if declared not in config.allowed_types:
        raise InvalidRequest(
            f"Unsupported image type {declared!r}; allowed: {', '.join(config.allowed_types)}.",
            param=param, code="invalid_image_format",
        )
    encoded = url[match.end():]
    if len(encoded) * 3 // 4 > config.max_image_bytes + 3:
        raise InvalidRequest(
            f"Image is larger than the {config.max_image_bytes} bytes allowed per image.",
            param=param, code="image_too_large",
        )
    try:
        data = b64decode(encoded)
    except (binascii.Error, ValueError):
        raise InvalidRequest(
            "Invalid image data URL: the data is not valid base64.",
            param=param, code="invalid_image_url",
        ) from None
    actual = sniff_type(data)
    if actual is None:
        raise InvalidRequest(
            "The image data is not a PNG, JPEG, WebP or GIF image.",
            param=param, code="invalid_image_format",
        )
    if actual != declared and not (declared == "image/jpg" and actual == "image/jpeg"):
        raise InvalidRequest(
            f"The image data is {actual} but the data URL says {declared}.",
            param=param, code="invalid_image_format",
        )
    return data


def any_parts(request: ChatCompletionRequest) -> bool:
    """Whether any message's content is a list of parts (else all of it is plain text)."""
    for message in request.messages:  # noqa: SIM110 - a loop: no generator on every request
        if isinstance(message.content, list):
            return True
    return False


def content_parts(request: ChatCompletionRequest, media: Collection[str] = ()
                  ) -> tuple[list[tuple[int, int, ImagePart]], list[tuple[int, int]]]:
    """Images as (message index, part index, part), and the positions of video/audio parts
    of the kinds in `media` ("video", "audio"); any other part that is not text is a 400
    naming it. Video and audio parts (`video_url`, `audio_url`, `input_audio`) would be
    fetched by vLLM itself, past every check here, so they pass only where the model enables
    them (and are then vetted, `vision/media.py`); other types (`input_image`, `image`,
    `image_embeds`, …) are not OpenAI chat parts."""
    images: list[tuple[int, int, ImagePart]] = []
    clips: list[tuple[int, int]] = []
    for i, message in enumerate(request.messages):
        if isinstance(message.content, list):
            for j, part in enumerate(message.content):
                if isinstance(part, ImagePart):
                    images.append((i, j, part))
                elif isinstance(part, OtherPart):
                    if MEDIA_PARTS.get(part.type) in media:
                        clips.append((i, j))
                        continue
                    hint = (f" This model does not take {MEDIA_PARTS[part.type]}."
                            if part.type in MEDIA_PARTS else "")
                    raise InvalidRequest(
                        f"Content parts of type '{part.type}' are not accepted: Trạm takes "
                        f"'text' and 'image_url' parts.{hint}",
                        param=f"messages[{i}].content[{j}].type", code="unsupported_content_part")
    return images, clips


def check_url_form(url: str, param: str) -> None:
    """An image URL is a base64 data URL or an http(s) URL; anything else is a 400."""
    if not url.startswith("data:") and not re.match(r"^https?://[^/\s]+", url, re.IGNORECASE):
        raise InvalidRequest(
            "Image URL must be an http(s) URL or a base64 data URL "
            "('data:image/png;base64,...').",
            param=param, code="invalid_image_url",
        )
