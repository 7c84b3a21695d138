"""The Batch API end to end with the openai client against real engines: `tram up` on the
embedded engine (SmolLM2 on llama-server, MiniLM embeddings), and real vLLM (its CPU build on
the scripted tiny Qwen3), where each line's request is a batch request (the hook the relay
reads to give it batch priority) and reaches vLLM itself."""

from __future__ import annotations

import time

import openai
import orjson
import pytest

from tests.conftest import MASTER_KEY
from tests.support.batches import chat_lines
from tests.support.tiny_qwen3 import ANSWER
from tests.support.tram_up import TramUp
from tram.routing.engine_load import parse_metrics

DONE = ("completed", "failed", "expired", "cancelled")


def _finish(client: openai.OpenAI, batch_id: str, timeout: float = 300) -> openai.types.Batch:
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in DONE:
            return batch
        assert time.monotonic() < deadline, batch
        time.sleep(0.25)


def _lines(client: openai.OpenAI, file_id: str | None) -> list[dict]:
    assert file_id is not None
    return [orjson.loads(line) for line in client.files.content(file_id).content.splitlines()]


def test_the_openai_client_batches_chat_and_embeddings_on_the_embedded_engine(
        embedded: TramUp) -> None:
    client = openai.OpenAI(base_url=embedded.url + "/v1", api_key=MASTER_KEY, max_retries=0)
    chat_file = client.files.create(file=("chat.jsonl", chat_lines(6, "qwen-text")),
                                    purpose="batch")
    texts = ["Trạm is a gateway", "A gateway in front of engines", "Phở bò"]
    embed_file = client.files.create(file=("embed.jsonl", b"".join(orjson.dumps({
        "custom_id": f"e{n}", "method": "POST", "url": "/v1/embeddings",
        "body": {"model": "all-minilm-l6-v2", "input": text}}) + b"\n"
        for n, text in enumerate(texts))), purpose="batch")
    chats = client.batches.create(input_file_id=chat_file.id, completion_window="24h",
                                  endpoint="/v1/chat/completions")
    embeds = client.batches.create(input_file_id=embed_file.id, completion_window="24h",
                                   endpoint="/v1/embeddings")
    chats, embeds = _finish(client, chats.id), _finish(client, embeds.id)
    assert chats.status == embeds.status == "completed"
    assert chats.request_counts is not None and chats.request_counts.completed == 6
    answers = _lines(client, chats.output_file_id)
    assert sorted(a["custom_id"] for a in answers) == [f"line-{n}" for n in range(6)]
    for answer in answers:
        body = answer["response"]["body"]
        assert answer["response"]["status_code"] == 200 and body["model"] == "qwen-text"
        assert body["choices"][0]["message"]["content"] and body["usage"]["completion_tokens"]
    vectors = {a["custom_id"]: a["response"]["body"]["data"][0]["embedding"]
               for a in _lines(client, embeds.output_file_id)}
    assert sorted(vectors) == ["e0", "e1", "e2"] and {len(v) for v in vectors.values()} == {384}

    # Cancelled while it runs: what ran is kept, the rest is in the error file.
    long_file = client.files.create(file=("long.jsonl", chat_lines(40, "qwen-text",
                                                                   max_tokens=48)),
                                    purpose="batch")
    long = client.batches.create(input_file_id=long_file.id, completion_window="24h",
                                 endpoint="/v1/chat/completions")
    assert client.batches.cancel(long.id).status in ("cancelling", "cancelled")
    long = _finish(client, long.id)
    assert long.status == "cancelled" and long.request_counts is not None
    assert long.request_counts.completed + long.request_counts.failed == 40
    unrun = _lines(client, long.error_file_id)
    assert unrun and {line["error"]["code"] for line in unrun} == {"batch_cancelled"}

    listed = {batch.id for batch in client.batches.list(limit=100)}
    assert {chats.id, embeds.id, long.id} <= listed
    files = {f.id: f.purpose for f in client.files.list()}
    assert files[chat_file.id] == "batch" and files[chats.output_file_id or ""] == "batch_output"


def _engine_requests(up: TramUp) -> float:
    key = up.engine_key("qwen-text")
    with up.engine_client("qwen-text", timeout=10,
                          headers={"Authorization": f"Bearer {key}"}) as engine:
        text = engine.get("/metrics").content
    assert parse_metrics(text) is not None
    return sum(float(line.rsplit(b" ", 1)[1]) for line in text.splitlines()
               if line.startswith(b"vllm:request_success_total"))


@pytest.mark.vllm
def test_a_batch_of_chat_lines_runs_on_real_vllm_as_batch_requests(vllm_up: TramUp) -> None:
    client = openai.OpenAI(base_url=vllm_up.url + "/v1", api_key=MASTER_KEY, max_retries=0)
    before = _engine_requests(vllm_up)
    uploaded = client.files.create(file=("chat.jsonl", chat_lines(4, "qwen-text")),
                                   purpose="batch")
    batch = _finish(client, client.batches.create(
        input_file_id=uploaded.id, completion_window="24h",
        endpoint="/v1/chat/completions").id, timeout=600)
    assert batch.status == "completed"
    answers = _lines(client, batch.output_file_id)
    assert [a["response"]["body"]["choices"][0]["message"]["content"].strip()
            for a in answers] == [ANSWER] * 4
    assert _engine_requests(vllm_up) - before == 4  # each line reached vLLM itself, once
    # Each line's request was a batch request: what the relay reads (RequestRecord.traffic)
    # is in the gateway's access line of that request.
    logged = {}
    for line in vllm_up.output:
        if line.startswith("{") and '"traffic"' in line:
            entry = orjson.loads(line)
            logged[entry["request_id"]] = entry
    for answer in answers:
        entry = logged[answer["response"]["request_id"]]
        assert (entry["traffic"], entry["batch_id"], entry["route"]) == ("batch", batch.id,
                                                                         "chat")
