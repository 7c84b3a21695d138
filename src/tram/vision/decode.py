"""What an image really is, read from its header before it goes anywhere near an engine.

A signature is not an image: eight PNG bytes with nothing after them passed the old check. Here
Pillow reads the header (format, width, height, frames) and checks the file's structure
(`verify`: chunk checksums and lengths, without decoding the pixels), so a file that does not
decode is a 400 `invalid_image`; an image whose header declares more pixels than the operator
allows is refused from the header alone, before any decoding (a decompression bomb). An image
over the model's pixel budget is then downscaled and re-encoded. The work runs in worker
threads of lower priority, at most `vision.max_concurrent` images at a time per process, never
on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from tram.config import VisionConfig
from tram.errors import InvalidRequest
from tram.vision.dataurl import as_data_url
from tram.vision.parts import check_data_url

__all__ = ["MAX_ASPECT", "ImageInfo", "ImageWorkers", "Prepared", "budget_size", "fit_to_budget",
           "inspect", "prepare"]

# Qwen2/2.5/3-VL's image processor refuses an absolute aspect ratio of 200 or more.
MAX_ASPECT = 200
T = TypeVar("T")
_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}


@dataclass(frozen=True)
class ImageInfo:
    mime: str
    width: int
    height: int
    frames: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def _inspect(data: bytes, max_pixels: int) -> ImageInfo | tuple[str, str]:
    """The image's header, or why it is refused: (error code, message); errors stay values."""
    from PIL import Image, UnidentifiedImageError

    too_large = f"more pixels than the {max_pixels} an image may have"
    try:
        with Image.open(io.BytesIO(data)) as image:
            mime = _FORMATS.get(image.format or "")
            if mime is None:
                return "invalid_image_format", f"an image format Trạm does not accept ({image.format})"
            width, height = image.size
            frames = int(getattr(image, "n_frames", 1))
            if width <= 0 or height <= 0:
                return "invalid_image", "an image with no pixels"
            if width * height > max_pixels:
                return "image_too_large", f"{width}×{height} pixels: {too_large}"
            if max(width, height) > MAX_ASPECT * min(width, height):
                return "invalid_image", (f"{width}×{height} pixels, more than {MAX_ASPECT} times "
                                         "longer one way than the other (vision models refuse "
                                         "such images)")
            if frames > 1:
                return "invalid_image", f"animated ({frames} frames); send a single frame"
            image.verify()
    except Image.DecompressionBombError:  # Pillow's own guard, at twice its default limit
        return "image_too_large", too_large
    except UnidentifiedImageError:
        return "invalid_image", "not a decodable image"
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # truncated or corrupt
        return "invalid_image", f"a broken image ({type(exc).__name__})"
    return ImageInfo(mime, width, height, frames)


def inspect(data: bytes, max_pixels: int, param: str) -> ImageInfo:
    """The image's header; a 400 naming `param` if it is not an image Trạm may forward."""
    outcome = _inspect(data, max_pixels)
    if isinstance(outcome, tuple):
        code, why = outcome
        raise InvalidRequest(f"The image is {why}.", param=param, code=code)
    return outcome


def budget_size(width: int, height: int, budget: int) -> tuple[int, int]:
    """The largest size with the same aspect that holds at most `budget` pixels."""
    if width * height <= budget:
        return width, height
    scale = (budget / (width * height)) ** 0.5
    new_width, new_height = max(1, int(width * scale)), max(1, int(height * scale))
    while new_width * new_height > budget:  # rounding may leave it one row over
        if new_width >= new_height:
            new_width -= 1
        else:
            new_height -= 1
    return new_width, new_height


def _downscale(data: bytes, info: ImageInfo, budget: int) -> tuple[bytes, ImageInfo]:
    from PIL import Image

    width, height = budget_size(info.width, info.height, budget)
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        fitted = image.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=3.0)
    buffer = io.BytesIO()
    if info.mime == "image/jpeg":  # photos stay JPEG: PNG would be several times larger
        fitted.convert("RGB").save(buffer, "JPEG", quality=90)
        mime = "image/jpeg"
    else:  # PNG, WebP, GIF (one frame): lossless, transparency kept
        fitted.save(buffer, "PNG", optimize=False)
        mime = "image/png"
    return buffer.getvalue(), ImageInfo(mime, width, height, 1)


def fit_to_budget(data: bytes, info: ImageInfo, budget: int) -> tuple[bytes, ImageInfo]:
    """The image within `budget` pixels: as it is if it fits, else downscaled (aspect kept,
    Lanczos) and re-encoded, so that no engine receives more pixels than the operator allowed."""
    if info.pixels <= budget:
        return data, info
    return _downscale(data, info, budget)


@dataclass(frozen=True)
class Prepared:
    url: str | None  # the data URL to send instead of the client's; None: send it unchanged
    sent: ImageInfo  # what the engine receives


def prepare(source: str | bytes | memoryview, config: VisionConfig, budget: int,
            param: str) -> Prepared:
    """All the work on one image, from a data URL (a str, or a view of one lifted out of the
    body) or fetched bytes to what the engine gets: base64 decoding and type check, header
    check, downscaling, encoding. CPU-bound: run it through `ImageWorkers`, never on the event
    loop."""
    data = source if isinstance(source, bytes) else check_data_url(source, config, param)
    info = inspect(data, config.max_decode_pixels, param)
    fitted, sent = fit_to_budget(data, info, budget)
    if fitted is data and isinstance(source, str):
        return Prepared(None, sent)
    if fitted is data and isinstance(source, memoryview):  # as the client sent it
        return Prepared(bytes(source).decode("ascii"), sent)
    return Prepared(as_data_url(fitted, sent.mime), sent)


def _lower_priority() -> None:
    # On Linux a thread has its own nice value: image work yields the core to the event loop,
    # so text requests do not wait behind it (bench/RESULTS.md, `python -m bench images`).
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, 0, 10)


class ImageWorkers:
    """A few threads of lower priority for image work (`vision.max_concurrent` per process);
    further images wait their turn."""

    def __init__(self, size: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="tram-image",
                                        initializer=_lower_priority)

    async def prepare(self, source: str | bytes | memoryview, config: VisionConfig,
                      budget: int, param: str) -> Prepared:
        return await self.run(prepare, source, config, budget, param)

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """Any CPU-bound media work (video and audio clips too), in these threads."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, work, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
