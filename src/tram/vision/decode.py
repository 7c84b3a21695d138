"""What an image really is, read from its header before it goes anywhere near an engine.

A signature is not an image: eight PNG bytes with nothing after them passed the old check. Here
Pillow reads the header (format, width, height, frames) and checks the file's structure
(`verify`: chunk checksums and lengths, without decoding the pixels), so a file that does not
decode is a 400 `invalid_image`; an image whose header declares more pixels than the operator
allows is refused from the header alone, before any decoding (a decompression bomb). An image
over the model's pixel budget is then downscaled and re-encoded. The work runs in worker
threads, at most `vision.max_concurrent` images at a time per process, never on the event loop.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import anyio

from tram.errors import InvalidRequest

__all__ = ["MAX_ASPECT", "ImageInfo", "budget_size", "fit_to_budget", "inspect_image"]

# Qwen2/2.5/3-VL's image processor refuses an absolute aspect ratio of 200 or more.
MAX_ASPECT = 200
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


async def inspect_image(data: bytes, max_pixels: int, param: str,
                        limiter: anyio.CapacityLimiter | None = None) -> ImageInfo:
    """The image's header; a 400 naming `param` if it is not an image Trạm may forward."""
    outcome = await anyio.to_thread.run_sync(_inspect, data, max_pixels, limiter=limiter)
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


async def fit_to_budget(data: bytes, info: ImageInfo, budget: int,
                        limiter: anyio.CapacityLimiter | None = None) -> tuple[bytes, ImageInfo]:
    """The image within `budget` pixels: as it is if it fits, else downscaled (aspect kept,
    Lanczos) and re-encoded, so that no engine receives more pixels than the operator allowed."""
    if info.pixels <= budget:
        return data, info
    return await anyio.to_thread.run_sync(_downscale, data, info, budget, limiter=limiter)
