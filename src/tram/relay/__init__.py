"""Forwarding a chat request and relaying the engine's answer (JSON or SSE) to the client."""

from tram.relay.chat import ChatService, JSONResult, StreamResult
from tram.relay.sse import SSEDecoder, done_frame, error_frame

__all__ = ["ChatService", "JSONResult", "SSEDecoder", "StreamResult", "done_frame", "error_frame"]
