"""Small real images made with Pillow, and a local HTTP server that serves them."""

from __future__ import annotations

import base64
import io

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route


def png(width: int, height: int, colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, "PNG")
    return buffer.getvalue()


def data_url(image: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(image).decode()


def image_server_app() -> Starlette:
    """/image-WxH.png → a PNG of that size; /redirect → /image-64x64.png; /text → not an image."""

    async def image(request: Request) -> Response:
        width, height = (int(v) for v in request.path_params["size"].split("x"))
        return Response(png(width, height), media_type="image/png")

    async def redirect(request: Request) -> Response:
        return RedirectResponse("/image-64x64.png")

    async def text(request: Request) -> Response:
        return Response("not an image", media_type="text/plain")

    return Starlette(routes=[Route("/image-{size}.png", image), Route("/redirect", redirect),
                             Route("/text", text)])
