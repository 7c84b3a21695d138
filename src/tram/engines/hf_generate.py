"""Engine side of `kind: transformers`: load a checkpoint and generate, on transformers' public
API only (Auto classes, `generate`, a `BaseStreamer`, a `StoppingCriteria`).

A vision checkpoint whose video processor needs torchvision (Qwen2/2.5/3-VL) still loads where
torchvision is not installed (PyPI's torchvision does not load beside the CPU torch used here):
its image steps are then done from its image processor and tokenizer (`_QwenVLEncoder`), so
images work and videos are refused. Images arrive as data URLs (the gateway fetches and vets every image and
forwards it as data); this engine never fetches a URL.

This module runs only in the engine process; the gateway never imports it (nor torch).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import queue
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Generation", "LoadedModel", "RequestError", "load"]


class RequestError(ValueError):
    """A request this engine cannot serve; the message is for the client (HTTP 400)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass
class Generation:
    """One request's output as it is produced: text pieces, then the end."""

    prompt_tokens: int
    max_tokens: int
    completion_tokens: int = 0
    finish_reason: str | None = None
    pieces: queue.Queue[str | None] = field(default_factory=queue.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)


class _ProcessorEncoder:
    """The checkpoint's own processor: chat template, tokens and pixels in one call."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)

    def __call__(self, messages: list[dict[str, Any]]) -> Any:
        return self.processor.apply_chat_template(messages, add_generation_prompt=True,
                                                  tokenize=True, return_dict=True,
                                                  return_tensors="pt")


class _QwenVLEncoder:
    """Qwen2/2.5/3-VL without torchvision: the processor class cannot be built without its
    video processor, so its image steps are done here with the public pieces: the chat
    template writes one `<|image_pad|>` per image, the image processor gives each image's patch
    grid, and each pad becomes grid ÷ merge² tokens, as the processor itself expands it."""

    PAD = "<|image_pad|>"

    def __init__(self, tokenizer: Any, image_processor: Any, template: str) -> None:
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.template = template

    def __call__(self, messages: list[dict[str, Any]]) -> Any:
        text = self.tokenizer.apply_chat_template(messages, chat_template=self.template,
                                                  add_generation_prompt=True, tokenize=False)
        images = [part["image"] for message in messages for part in message["content"]
                  if part["type"] == "image"]
        vision: dict[str, Any] = {}
        if images:
            vision = dict(self.image_processor(images=images, return_tensors="pt"))
            merge = int(self.image_processor.merge_size) ** 2
            counts = iter(int(grid.prod()) // merge for grid in vision["image_grid_thw"])
            text = re.sub(re.escape(self.PAD), lambda _: self.PAD * next(counts), text)
        encoded = self.tokenizer(text, return_tensors="pt")
        encoded.update(vision)
        return encoded


def _encoder(path: Path) -> _ProcessorEncoder | _QwenVLEncoder:
    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer

    try:
        return _ProcessorEncoder(AutoProcessor.from_pretrained(path))
    except ImportError as exc:
        if "torchvision" not in str(exc).lower():
            raise
    tokenizer = AutoTokenizer.from_pretrained(path)
    image_processor = AutoImageProcessor.from_pretrained(path)
    template = tokenizer.chat_template
    template_file = path / "chat_template.jinja"
    if template is None and template_file.is_file():
        template = template_file.read_text()
    if _QwenVLEncoder.PAD not in tokenizer.get_vocab() or \
            not hasattr(image_processor, "merge_size") or template is None:
        raise ImportError(f"{path}: its processor needs torchvision, which does not load beside "
                          "this torch; only Qwen2/2.5/3-VL checkpoints are served without it")
    return _QwenVLEncoder(tokenizer, image_processor, template)


def _image(url: str, param: str) -> Any:
    from PIL import Image

    if not url.startswith("data:") or "," not in url:
        raise RequestError("This engine takes images as data URLs only (the gateway fetches "
                           "image URLs).", param)
    try:
        raw = base64.b64decode(url.split(",", 1)[1], validate=True)
        image = Image.open(io.BytesIO(raw))
        image.load()
    except (binascii.Error, OSError, ValueError) as exc:
        raise RequestError(f"The image could not be decoded ({exc}).", param) from None
    return image.convert("RGB")


def _messages(messages: Any) -> list[dict[str, Any]]:
    """OpenAI chat messages → the processor's chat-template form (text and image parts)."""
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty list.", "messages")
    converted = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise RequestError("Each message needs a role.", f"messages[{i}]")
        content = message.get("content")
        if content is None or isinstance(content, str):
            parts = [{"type": "text", "text": content or ""}]
        elif isinstance(content, list):
            parts = [_part(part, f"messages[{i}].content[{j}]") for j, part in enumerate(content)]
        else:
            raise RequestError("'content' must be a string or a list of parts.",
                               f"messages[{i}].content")
        converted.append({"role": message["role"], "content": parts})
    return converted


def _part(part: Any, param: str) -> dict[str, Any]:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text" and isinstance(part.get("text"), str):
        return {"type": "text", "text": part["text"]}
    if kind == "image_url":
        url = part["image_url"] if isinstance(part.get("image_url"), str) else \
            (part.get("image_url") or {}).get("url")
        if isinstance(url, str):
            return {"type": "image", "image": _image(url, param)}
    raise RequestError("Content parts must be text or image_url.", param)


class _Pieces:
    """A `BaseStreamer` (transformers' streaming interface) that decodes the generated ids
    into text pieces on the request's queue, counting tokens as they come."""

    def __init__(self, tokenizer: Any, generation: Generation) -> None:
        self._tokenizer = tokenizer
        self._generation = generation
        self._ids: list[int] = []
        self._sent = ""
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if not self._prompt_seen:  # generate() hands the prompt over first
            self._prompt_seen = True
            return
        self._ids.extend(int(token) for token in value.reshape(-1).tolist())
        self._generation.completion_tokens = len(self._ids)
        text = self._tokenizer.decode(self._ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
            return
        if len(text) > len(self._sent):
            self._generation.pieces.put(text[len(self._sent):])
            self._sent = text

    def end(self) -> None:
        pass


class LoadedModel:
    def __init__(self, path: Path, device: str) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

        self.path = path
        self.encode = _encoder(path)
        self.tokenizer = self.encode.tokenizer
        config = json.loads((path / "config.json").read_text())
        auto = AutoModelForImageTextToText if "vision_config" in config else AutoModelForCausalLM
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = auto.from_pretrained(path, dtype="auto").to(device).eval()  # type: ignore[arg-type]
        self.device = device
        self.context = int(getattr(self.model.config.get_text_config(), "max_position_embeddings",
                                   0) or 0)
        self._lock = threading.Lock()  # one generation at a time: each uses every core

    def prepare(self, request: dict[str, Any]) -> tuple[Any, Generation]:
        """Tokenise the request (in the caller's thread); raises RequestError."""
        inputs = self.encode(_messages(request.get("messages")))
        prompt = int(inputs["input_ids"].shape[-1])
        limit = request.get("max_completion_tokens") or request.get("max_tokens") or 256
        if not isinstance(limit, int) or limit < 1:
            raise RequestError("max_tokens must be a positive integer.", "max_tokens")
        if self.context and prompt + limit > self.context:
            limit = self.context - prompt
            if limit < 1:
                raise RequestError(f"The prompt is {prompt} tokens; this model's context is "
                                   f"{self.context}.", "messages")
        return inputs.to(self.device), Generation(prompt_tokens=prompt, max_tokens=limit)

    def run(self, inputs: Any, generation: Generation, request: dict[str, Any]) -> None:
        """Generate (blocking; run it in a thread); the pieces end with None."""
        from transformers import StoppingCriteria, StoppingCriteriaList

        class Cancelled(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                return generation.cancelled.is_set()

        given = request.get("temperature")
        temperature = float(given) if isinstance(given, int | float) else 1.0
        sampling: dict[str, Any] = {"do_sample": temperature > 0}
        if temperature > 0:
            sampling.update(temperature=temperature, top_p=float(request.get("top_p") or 1.0))
        try:
            with self._lock:
                self.model.generate(**inputs, max_new_tokens=generation.max_tokens,
                                    streamer=_Pieces(self.tokenizer, generation),
                                    stopping_criteria=StoppingCriteriaList([Cancelled()]),
                                    **sampling)
        finally:
            generation.finish_reason = "length" \
                if generation.completion_tokens >= generation.max_tokens else "stop"
            generation.pieces.put(None)


def pieces_of(generation: Generation) -> Iterator[str]:
    """The text pieces, blocking until each arrives (for a worker thread)."""
    while (piece := generation.pieces.get()) is not None:
        yield piece


def load(path: str, device: str) -> LoadedModel:
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise SystemExit(f"{folder}: not a Hugging Face checkpoint folder (no config.json)")
    return LoadedModel(folder, device)
