"""Pydantic schemas of the OpenAI protocol as Trạm checks it. Pure data: no I/O here."""

from tram.protocol.chat import ChatCompletionRequest, ChatMessage, ImagePart
from tram.protocol.models import ModelCard, ModelList

__all__ = ["ChatCompletionRequest", "ChatMessage", "ImagePart", "ModelCard", "ModelList"]
