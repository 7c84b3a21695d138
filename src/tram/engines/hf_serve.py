"""Engine side: `python -m tram.engines.hf_serve MODEL [transformers serve options]`.

Runs Hugging Face's `transformers serve` (an OpenAI-compatible server with continuous batching
and vision-language models) for one preloaded checkpoint. One thing is added: a vision
checkpoint whose video processor needs torchvision (Qwen2/2.5/3-VL) still loads where
torchvision is not installed (PyPI's torchvision does not load beside the CPU torch used here):
its processor is then built without a video processor, so images work and videos are refused.

This module runs only in the engine process; the gateway never imports it (nor torch).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["main", "processor_without_video"]


def processor_without_video(path: str) -> Any:
    """The checkpoint's processor class, built with its image processor and tokenizer only."""
    import transformers
    from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer
    from transformers.models.auto import processing_auto

    folder = Path(path)
    name = None
    config_file = folder / "processor_config.json"
    if config_file.is_file():
        name = json.loads(config_file.read_text()).get("processor_class")
    if name is None:
        mapping: dict[str, str] = processing_auto.PROCESSOR_MAPPING_NAMES  # type: ignore[attr-defined]
        name = mapping.get(AutoConfig.from_pretrained(path).model_type)
    if name is None:
        raise ImportError(f"no processor class known for {path}")
    base = getattr(transformers, name)

    class ImageOnlyProcessor(base):  # type: ignore[misc, valid-type]
        def __init__(self, image_processor: Any = None, tokenizer: Any = None,
                     chat_template: Any = None, **kwargs: Any) -> None:
            super().__init__(image_processor=image_processor, tokenizer=tokenizer,
                             video_processor=None, chat_template=chat_template, **kwargs)

    tokenizer = AutoTokenizer.from_pretrained(path)
    template = tokenizer.chat_template
    template_file = folder / "chat_template.jinja"
    if template is None and template_file.is_file():
        template = template_file.read_text()
    return ImageOnlyProcessor(image_processor=AutoImageProcessor.from_pretrained(path),
                              tokenizer=tokenizer, chat_template=template)


def _allow_missing_torchvision() -> None:
    from transformers.cli.serving import model_manager

    original = model_manager.ModelManager._load_processor

    def load(self: Any, model_id_and_revision: str, gguf_file: str | None = None) -> Any:
        try:
            return original(self, model_id_and_revision, gguf_file=gguf_file)
        except ImportError as exc:
            if "torchvision" not in str(exc).lower():
                raise
            model_id, _ = model_manager.split_revision(model_id_and_revision)  # type: ignore[attr-defined]
            return processor_without_video(model_id)

    model_manager.ModelManager._load_processor = load  # type: ignore[method-assign]


def main(argv: list[str]) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local checkpoints only: no hub look-ups
    _allow_missing_torchvision()
    from transformers.cli.transformers import app

    sys.argv = ["transformers", "serve", *argv]
    app()


if __name__ == "__main__":
    main(sys.argv[1:])
