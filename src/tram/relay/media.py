"""Media parts vetted before any engine sees them, on every route that carries them: chat's
messages, the Responses API's input items and Anthropic's content blocks alike.

Each route's parts are found by a walker of its own shape; what is done to them is one code
path: an image is checked (type, size, header, pixel budget), fetched by the gateway where the
model says `image_fetch: gateway` (SSRF-safe, `vision/fetch.py`), fitted to the budget and put
back as a data URL; a video or audio clip is refused unless the model enables it, then
decoded or fetched, held to its caps and put back as data. Forms an engine would fetch or read
by itself past these checks (a file URL, a file id) are refused by name.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from tram.config import VisionConfig
from tram.errors import ImagesNotSupported, InvalidRequest
from tram.protocol.chat import ChatCompletionRequest
from tram.relay.route import ModelRoute
from tram.requestlog import RequestRecord
from tram.routing.registry import ModelPool
from tram.vision.decode import ImageWorkers
from tram.vision.fetch import ImageFetcher
from tram.vision.lift import Lifted
from tram.vision.media import MEDIA_PARTS, MediaPart, check_clip
from tram.vision.parts import any_parts, check_url_form, content_parts, param_of

__all__ = ["ImageRef", "MediaVetting"]


@dataclass
class ImageRef:
    """One image where a route carries it: its URL (http(s) or data), where that URL is
    (`param`, what errors about it name) and where its part is (`part`), its detail, and how to
    put the vetted data URL back in its place."""

    url: str
    param: str
    part: str
    detail: str | None
    replace: Callable[[str], None]


def _unsupported(kind: str, param: str, how: str) -> InvalidRequest:
    return InvalidRequest(f"Content parts of type '{kind}' are not accepted here: {how}",
                          param=param, code="unsupported_content_part")


def _set(container: dict[str, Any], key: str) -> Callable[[str], None]:
    def replace(url: str) -> None:
        container[key] = url
    return replace


def _chat_parts(request: ChatCompletionRequest, payload: dict[str, Any], enabled: list[str]
                ) -> tuple[list[ImageRef], list[MediaPart]]:
    images, clip_places = content_parts(request, enabled)
    refs = []
    for i, j, part in images:
        given = payload["messages"][i]["content"][j]
        if isinstance(given.get("image_url"), str):  # the lenient form, as OpenAI's
            given["image_url"] = {"url": given["image_url"]}
        refs.append(ImageRef(part.image_url.url, param_of(i, j), f"messages[{i}].content[{j}]",
                             part.image_url.detail, _set(given["image_url"], "url")))
    clips = []
    for i, j in clip_places:
        kind = MEDIA_PARTS[payload["messages"][i]["content"][j]["type"]]
        clips.append(MediaPart(kind, i, j, payload["messages"][i]["content"][j]))
    return refs, clips


def _responses_part(part: dict[str, Any], where: str, i: int, j: int, enabled: Collection[str],
                    refs: list[ImageRef], clips: list[MediaPart]) -> None:
    kind = part.get("type")
    param = f"{where}[{i}].content[{j}]"
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str):
            raise _unsupported("input_image", param, "send the image as `image_url` (an http(s) "
                               "URL or a base64 data URL); file ids are not served.")
        refs.append(ImageRef(url, param + ".image_url", param, part.get("detail"),
                             _set(part, "image_url")))
    elif kind == "input_file" and ("file_url" in part or "file_id" in part):
        raise _unsupported("input_file", param, "send the file's content as `file_data`; the "
                           "gateway does not fetch file URLs nor serve file ids.")
    elif isinstance(kind, str) and kind in MEDIA_PARTS:
        if MEDIA_PARTS[kind] not in enabled:
            raise _unsupported(kind, param + ".type", f"this model does not take "
                               f"{MEDIA_PARTS[kind]}.")
        clips.append(MediaPart(MEDIA_PARTS[kind], i, j, part, where))


def _responses_parts(payload: dict[str, Any], enabled: list[str]
                     ) -> tuple[list[ImageRef], list[MediaPart]]:
    refs: list[ImageRef] = []
    clips: list[MediaPart] = []
    items = payload.get("input")
    for i, item in enumerate(items if isinstance(items, list) else ()):
        if not isinstance(item, dict):
            continue
        for key in ("content", "output"):  # a message's parts; a tool output's parts
            parts = item.get(key)
            for j, part in enumerate(parts if isinstance(parts, list) else ()):
                if isinstance(part, dict):
                    _responses_part(part, "input", i, j, enabled, refs, clips)
    return refs, clips


def _anthropic_blocks(blocks: Any, param: str, refs: list[ImageRef]) -> None:
    for j, block in enumerate(blocks if isinstance(blocks, list) else ()):
        if not isinstance(block, dict):
            continue
        kind, source, where = block.get("type"), block.get("source"), f"{param}[{j}]"
        if kind == "tool_result":
            _anthropic_blocks(block.get("content"), where + ".content", refs)
        elif kind == "image" and isinstance(source, dict):
            refs.append(_anthropic_image(block, source, where))
        elif kind == "document" and isinstance(source, dict) \
                and source.get("type") not in ("text", "base64", "content"):
            raise _unsupported("document", where + ".source", "send documents as base64 or "
                               "text; the gateway does not fetch document URLs.")


def _anthropic_image(block: dict[str, Any], source: dict[str, Any], where: str) -> ImageRef:
    param = where + ".source"
    if source.get("type") == "url" and isinstance(source.get("url"), str):
        url = source["url"]
    elif source.get("type") == "base64" and isinstance(source.get("data"), str):
        url = f"data:{source.get('media_type')};base64,{source['data']}"
    else:
        raise _unsupported("image", param, "an image source is base64 data or an http(s) URL.")

    def replace(data_url: str) -> None:
        head, _, data = data_url.partition(",")
        block["source"] = {"type": "base64", "media_type": head[5:].split(";", 1)[0],
                           "data": data}
    return ImageRef(url, param, where, None, replace)


def _messages_parts(payload: dict[str, Any]) -> tuple[list[ImageRef], list[MediaPart]]:
    refs: list[ImageRef] = []
    messages = payload.get("messages")
    for i, message in enumerate(messages if isinstance(messages, list) else ()):
        if isinstance(message, dict):
            _anthropic_blocks(message.get("content"), f"messages[{i}].content", refs)
    return refs, []


class MediaVetting:
    def __init__(self, vision: VisionConfig, fetcher: ImageFetcher) -> None:
        self._vision = vision
        self._fetcher = fetcher
        # Image decoding and resizing: a few threads of lower priority (vision.max_concurrent).
        self._workers = ImageWorkers(vision.max_concurrent)

    def close(self) -> None:
        self._workers.close()

    def _parts(self, route: ModelRoute, pool: ModelPool, request: BaseModel | None,
               payload: dict[str, Any]) -> tuple[list[ImageRef], list[MediaPart]]:
        enabled = [kind for kind in ("video", "audio") if getattr(pool.config, kind) is not None]
        if route.media == "chat":
            assert isinstance(request, ChatCompletionRequest)
            return _chat_parts(request, payload, enabled)
        if route.media == "responses":
            return _responses_parts(payload, enabled)
        return _messages_parts(payload)

    @staticmethod
    def applies(route: ModelRoute, request: BaseModel | None) -> bool:
        """Whether the request may carry media to vet: not on a route without any, nor in a
        chat request of plain text (most of them; no await for those)."""
        if route.media is None:
            return False
        return not isinstance(request, ChatCompletionRequest) or any_parts(request)

    async def vet(self, route: ModelRoute, pool: ModelPool, request: BaseModel | None,
                  payload: dict[str, Any], record: RequestRecord, lifted: Lifted) -> None:
        """Every media part of the request checked, fetched and fitted in place; a 400 naming
        the part for anything refused."""
        if not self.applies(route, request):
            return
        images, clips = self._parts(route, pool, request, payload)
        record.images = len(images)
        for clip in clips:
            await self._clip(pool, clip)
        if not images:
            return
        if not pool.config.vision:
            raise ImagesNotSupported(
                f"The model '{pool.name}' is text-only and does not accept images; "
                "send image parts to a vision model such as 'qwen-vl'.", param=images[0].part)
        limit = pool.config.images_per_request()
        if len(images) > limit:
            raise InvalidRequest(f"The model '{pool.name}' takes at most {limit} images per "
                                 f"request; this one has {len(images)}.",
                                 param=images[limit].part, code="too_many_images")
        for image in images:
            await self._image(pool, image, lifted, record)

    async def _image(self, pool: ModelPool, image: ImageRef, lifted: Lifted,
                     record: RequestRecord) -> None:
        view = lifted.get(image.url)
        if view is None:
            check_url_form(image.url, image.param)
        source: str | bytes | memoryview
        if view is not None:
            source = view  # a data URL, decoded in the image threads
        elif image.url.startswith("data:"):
            source = image.url
        elif pool.config.image_fetch == "gateway":
            source, _ = await self._fetcher.fetch(image.url, image.param)
        else:
            return  # the engine fetches it (the operator trusts its own allow-list)
        budget = pool.config.pixel_budget()
        if image.detail == "low":
            budget = min(budget, self._vision.low_detail_pixels)
        prepared = await self._workers.prepare(source, self._vision, budget, image.param)
        record.image_pixels += prepared.sent.pixels
        if prepared.url is not None:
            image.replace(prepared.url)

    async def _clip(self, pool: ModelPool, part: MediaPart) -> None:
        """A video or audio part of a model that enables it: fetched or decoded here, its size,
        container and duration checked, and forwarded as data (never fetched by the engine)."""
        limits = getattr(pool.config, part.kind)
        # Decoding, checking and re-encoding a clip (up to max_bytes) is CPU work: in the
        # image threads, as for images, never on the event loop.
        source = await self._workers.run(part.source)
        data = source if isinstance(source, bytes) else \
            await self._fetcher.fetch_bytes(source, part.param, limits.max_bytes, part.kind)
        mime = await self._workers.run(check_clip, data, part, limits)
        await self._workers.run(part.replace, data, mime)
