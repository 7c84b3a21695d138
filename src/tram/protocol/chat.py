"""The chat completion request, checked field by field; unknown fields are allowed.

Only what Trạm must rely on is typed strictly. Everything else the client sends (vLLM extras such
as `top_k`, `chat_template_kwargs`, `repetition_penalty`) is kept by `extra="allow"`, and the
gateway forwards the client's own JSON object, not a re-serialisation of this model.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, model_validator

__all__ = ["ChatCompletionRequest", "ChatMessage", "ContentPart", "ImagePart", "ImageURL", "StreamOptions"]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ImageURL(_Open):
    url: StrictStr = Field(min_length=1)
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Open):
    type: Literal["image_url"]
    image_url: ImageURL


class TextPart(_Open):
    type: Literal["text"]
    text: StrictStr


class OtherPart(_Open):
    """Parts Trạm does not inspect (input_audio, video_url, …): passed on to the engine."""

    type: StrictStr

    @model_validator(mode="after")
    def _not_known(self) -> OtherPart:
        if self.type in ("text", "image_url"):
            raise ValueError(f"malformed '{self.type}' content part")
        return self


ContentPart = Annotated[TextPart | ImagePart | OtherPart, Field(union_mode="left_to_right")]


class ChatMessage(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: StrictStr | list[ContentPart] | None = None


class StreamOptions(_Open):
    include_usage: StrictBool | None = None


class ChatCompletionRequest(_Open):
    model: StrictStr = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: StrictBool | None = False
    stream_options: StreamOptions | None = None
    max_tokens: StrictInt | None = Field(None, ge=1)
    max_completion_tokens: StrictInt | None = Field(None, ge=1)
    n: StrictInt | None = Field(None, ge=1, le=128)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    seed: StrictInt | None = None
    stop: StrictStr | list[StrictStr] | None = None
    user: StrictStr | None = None

    def image_parts(self) -> list[tuple[int, int, ImagePart]]:
        """(message index, part index, part) of every image in the conversation."""
        found: list[tuple[int, int, ImagePart]] = []
        for i, message in enumerate(self.messages):
            if isinstance(message.content, list):
                for j, part in enumerate(message.content):
                    if isinstance(part, ImagePart):
                        found.append((i, j, part))
        return found

    def extra_fields(self) -> dict[str, Any]:
        return dict(self.__pydantic_extra__ or {})
