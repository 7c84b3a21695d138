"""FAKE ROUTE ENGINE: a vLLM-shaped engine that serves every route, for the route tests only.

The real embedded engine (llama-server) serves chat, completions, tokenize, Responses and
Anthropic Messages, and is tested through each of them; it cannot serve embeddings, rerank,
score or transcriptions without models no package ships. This fake answers those routes in
vLLM's shapes with deterministic figures, records what it received (path, body, headers), and
answers chat with a tool call when the request offers tools, so the bridges' tool use can be
tested. The fault engine (chat only) is the engine that lacks every other route.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import default
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@dataclass
class RouteLog:
    received: list[tuple[str, Any]] = field(default_factory=list)  # (path, body)

    def bodies(self, path: str) -> list[Any]:
        return [body for seen, body in self.received if seen == path]


def _sse(events: list[dict[str, Any]], done: bool = True, named: bool = False) -> bytes:
    out = b""
    for event in events:
        if named:
            out += b"event: " + event["type"].encode() + b"\n"
        out += b"data: " + orjson.dumps(event) + b"\n\n"
    return out + (b"data: [DONE]\n\n" if done else b"")


def _chat(body: dict[str, Any]) -> Response:
    model = body["model"]
    tools = body.get("tools")
    usage = {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}
    if tools:
        name = tools[0]["function"]["name"]
        message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": name, "arguments": '{"city": "Hanoi"}'}}]}
        finish = "tool_calls"
    else:
        message = {"role": "assistant", "content": "route engine answer",
                   "reasoning": "thinking it over"}
        finish = "stop"
    if not body.get("stream"):
        return JSONResponse({"id": "chatcmpl-r", "object": "chat.completion", "model": model,
                             "created": int(time.time()),
                             "choices": [{"index": 0, "message": message,
                                          "finish_reason": finish}], "usage": usage})
    chunks: list[dict[str, Any]] = []

    def chunk(delta: dict[str, Any], reason: str | None = None) -> None:
        chunks.append({"id": "chatcmpl-r", "object": "chat.completion.chunk", "model": model,
                       "choices": [{"index": 0, "delta": delta, "finish_reason": reason}]})

    if tools:
        call = message["tool_calls"][0]
        chunk({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_1",
                                                    "type": "function", "function": {
                                                        "name": call["function"]["name"],
                                                        "arguments": ""}}]})
        for piece in ('{"city": ', '"Hanoi"}'):
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
    else:
        chunk({"role": "assistant", "reasoning": "thinking it over"})
        for word in ("route ", "engine ", "answer"):
            chunk({"content": word})
    chunk({}, finish)
    if (body.get("stream_options") or {}).get("include_usage"):
        chunks.append({"id": "chatcmpl-r", "object": "chat.completion.chunk", "model": model,
                       "choices": [], "usage": usage})
    return Response(_sse(chunks), media_type="text/event-stream")


def _completions(body: dict[str, Any]) -> Response:
    usage = {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}
    if not body.get("stream"):
        return JSONResponse({"id": "cmpl-r", "object": "text_completion", "model": body["model"],
                             "choices": [{"index": 0, "text": " upon a time",
                                          "finish_reason": "length"}], "usage": usage})
    chunks = [{"id": "cmpl-r", "object": "text_completion", "model": body["model"],
               "choices": [{"index": 0, "text": word, "finish_reason": None}]}
              for word in (" upon", " a", " time")]
    chunks[-1]["choices"][0]["finish_reason"] = "length"
    if (body.get("stream_options") or {}).get("include_usage"):
        chunks.append({"id": "cmpl-r", "object": "text_completion", "model": body["model"],
                       "choices": [], "usage": usage})
    return Response(_sse(chunks), media_type="text/event-stream")


def _responses(body: dict[str, Any]) -> Response:
    text = f"native answer to {len(body.get('input') or [])} items"
    response = {"id": "resp_engine", "object": "response", "created_at": int(time.time()),
                "model": body["model"], "status": "completed",
                "output": [{"type": "message", "id": "msg_e", "role": "assistant",
                            "status": "completed", "content": [
                                {"type": "output_text", "text": text, "annotations": []}]}],
                "usage": {"input_tokens": 20, "output_tokens": 5, "total_tokens": 25}}
    if not body.get("stream"):
        return JSONResponse(response)
    item = response["output"][0]
    events = [
        {"type": "response.created", "response": {**response, "status": "in_progress",
                                                  "output": []}},
        {"type": "response.output_item.added", "output_index": 0,
         "item": {**item, "content": [], "status": "in_progress"}},
        {"type": "response.content_part.added", "item_id": "msg_e", "output_index": 0,
         "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}},
        {"type": "response.output_text.delta", "item_id": "msg_e", "output_index": 0,
         "content_index": 0, "delta": text},
        {"type": "response.output_text.done", "item_id": "msg_e", "output_index": 0,
         "content_index": 0, "text": text},
        {"type": "response.content_part.done", "item_id": "msg_e", "output_index": 0,
         "content_index": 0, "part": item["content"][0]},
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {"type": "response.completed", "response": response},
    ]
    for number, event in enumerate(events):
        event["sequence_number"] = number
    return Response(_sse(events, done=False, named=True), media_type="text/event-stream")


def _messages(body: dict[str, Any]) -> Response:
    message = {"id": "msg_engine", "type": "message", "role": "assistant",
               "model": body["model"], "content": [{"type": "text", "text": "native message"}],
               "stop_reason": "end_turn", "stop_sequence": None,
               "usage": {"input_tokens": 9, "output_tokens": 2}}
    if not body.get("stream"):
        return JSONResponse(message)
    events = [
        {"type": "message_start", "message": {**message, "content": [], "stop_reason": None,
                                              "usage": {"input_tokens": 9, "output_tokens": 0}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text",
                                                                      "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta",
                                                              "text": "native message"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
         "usage": {"output_tokens": 2}},
        {"type": "message_stop"},
    ]
    return Response(_sse(events, done=False, named=True), media_type="text/event-stream")


def route_engine(log: RouteLog) -> Starlette:
    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "fake", "object": "model"}]})

    async def handle(request: Request) -> Response:
        path = request.url.path
        if path == "/v1/audio/transcriptions":
            # Parsed by the standard library's MIME parser, not the gateway's own code.
            raw = await request.body()
            message = BytesParser(policy=default).parsebytes(
                b"content-type: " + request.headers["content-type"].encode() + b"\r\n\r\n" + raw)
            fields: dict[str, Any] = {}
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                data = part.get_payload(decode=True)
                if part.get_filename():
                    fields.update(bytes=len(data), filename=part.get_filename())
                else:
                    fields[str(name)] = data.decode()
            log.received.append((path, fields))
            return JSONResponse({"text": f"{fields['bytes']} bytes heard",
                                 "usage": {"type": "duration", "seconds": 1}})
        body = orjson.loads(await request.body())
        log.received.append((path, body))
        model = body.get("model")
        if path == "/v1/chat/completions":
            return _chat(body)
        if path == "/v1/completions":
            return _completions(body)
        if path == "/v1/responses":
            return _responses(body)
        if path == "/v1/messages":
            return _messages(body)
        if path == "/v1/embeddings":
            inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
            return JSONResponse({"object": "list", "model": model, "data": [
                {"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]}
                for i in range(len(inputs))],
                "usage": {"prompt_tokens": 5 * len(inputs), "total_tokens": 5 * len(inputs)}})
        if path == "/v1/rerank":
            return JSONResponse({"id": "rerank-r", "model": model, "usage": {"total_tokens": 12},
                                 "results": [{"index": i, "relevance_score": 1.0 / (i + 1)}
                                             for i in range(len(body["documents"]))]})
        if path == "/v1/score":
            return JSONResponse({"id": "score-r", "object": "list", "model": model,
                                 "data": [{"index": 0, "object": "score", "score": 0.9}],
                                 "usage": {"prompt_tokens": 6, "total_tokens": 6}})
        if path == "/tokenize":
            return JSONResponse({"tokens": [1, 2, 3], "count": 3, "max_model_len": 4096})
        if path == "/detokenize":
            return JSONResponse({"prompt": "a b c"})
        return JSONResponse({"error": {"message": "no such route"}}, status_code=404)

    paths = ["/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/messages",
             "/v1/embeddings", "/v1/rerank", "/v1/score", "/tokenize", "/detokenize",
             "/v1/audio/transcriptions"]
    return Starlette(routes=[Route("/v1/models", models),
                             *[Route(path, handle, methods=["POST"]) for path in paths]])
