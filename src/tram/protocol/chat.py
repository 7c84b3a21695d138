"""The chat completion request, checked field by field; unknown fields are allowed.

Only what Trạm must rely on is typed strictly. Everything else the client sends (vLLM extras such
as `top_k`, `chat_template_kwargs`, `repetition_penalty`) is kept by `extra="allow"`, and the
gateway forwards the client's own JSON object, not a re-serialisation of this model.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    Tag,
    field_validator,
    model_validator,
)

__all__ = ["ChatCompletionRequest", "ChatMessage", "ContentPart", "ImagePart", "ImageURL",
           "OtherPart", "StreamOptions", "TextPart"]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ImageURL(_Open):
    url: StrictStr = Field(min_length=1)
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Open):
    """OpenAI's `{"image_url": {"url": …, "detail": …}}`, or the lenient `"image_url": "<url>"`
    that many clients send (read as `{"url": "<url>"}`)."""

    type: Literal["image_url"]
    image_url: ImageURL

    @field_validator("image_url", mode="before")
    @classmethod
    def _lenient(cls, value: Any) -> Any:
        return {"url": value} if isinstance(value, str) else value


class TextPart(_Open):
    type: Literal["text"]
    text: StrictStr


class OtherPart(_Open):
    """Any other part type: parsed so that the gateway can refuse it by name
    (`vision.parts.image_parts`)."""

    type: StrictStr

    @model_validator(mode="after")
    def _not_known(self) -> OtherPart:
        if self.type in ("text", "image_url"):
            raise ValueError(f"malformed '{self.type}' content part")
        return self


def _part_kind(value: Any) -> str:
    """The branch a content part is checked against, chosen by its `type`, so that an error
    names the field that is wrong (`...content[1].image_url.url`), not another branch's."""
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return {"text": "TextPart", "image_url": "ImagePart"}.get(kind, "OtherPart") \
        if isinstance(kind, str) else "OtherPart"


# Tags are capitalised: `relay/validation.py` leaves them out of the error's `param`.
ContentPart = Annotated[
    Annotated[TextPart, Tag("TextPart")] | Annotated[ImagePart, Tag("ImagePart")]
    | Annotated[OtherPart, Tag("OtherPart")],
    Discriminator(_part_kind),
]


class ChatMessage(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: StrictStr | list[ContentPart] | None = None


class StreamOptions(_Open):
    include_usage: StrictBool | None = None


class Tool(_Open):
    type: StrictStr
    function: dict[StrictStr, Any] | None = None


class ResponseFormat(_Open):
    type: StrictStr


class ChatCompletionRequest(_Open):
    model: StrictStr = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: StrictBool | None = False
    stream_options: StreamOptions | None = None
    max_tokens: StrictInt | None = Field(None, ge=1)
    max_completion_tokens: StrictInt | None = Field(None, ge=1)
    n: StrictInt | None = Field(None, ge=1, le=128)
    # Numbers are numbers: "0.5" or true is a 400 invalid_type, as OpenAI answers (an int is a
    # number too).
    temperature: StrictFloat | None = Field(None, ge=0, le=2)
    top_p: StrictFloat | None = Field(None, ge=0, le=1)
    presence_penalty: StrictFloat | None = Field(None, ge=-2, le=2)
    frequency_penalty: StrictFloat | None = Field(None, ge=-2, le=2)
    logit_bias: dict[StrictStr, Annotated[StrictFloat, Field(ge=-100, le=100)]] | None = None
    logprobs: StrictBool | None = None
    top_logprobs: StrictInt | None = Field(None, ge=0, le=20)
    seed: StrictInt | None = None
    stop: StrictStr | list[StrictStr] | None = None
    user: StrictStr | None = None
    tools: list[Tool] | None = None
    tool_choice: StrictStr | dict[StrictStr, Any] | None = None
    parallel_tool_calls: StrictBool | None = None
    response_format: ResponseFormat | None = None
    store: StrictBool | None = None
    metadata: dict[StrictStr, StrictStr] | None = None
    reasoning_effort: StrictStr | None = None
    service_tier: StrictStr | None = None
    modalities: list[StrictStr] | None = None

    def extra_fields(self) -> dict[str, Any]:
        return dict(self.__pydantic_extra__ or {})
