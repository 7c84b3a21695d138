"""The Batch API on a live gateway (in this process) over the fault-injection engine: the
openai client's calls, OpenAI's file shapes, malformed lines, scoping, cancelling, budgets,
engine errors and revoked keys. The embedded engine and real vLLM run it in
test_batch_engines.py; restarts, kill -9 and two gateways in test_batch_durability.py."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from typing import Any

import httpx
import openai
import orjson
import pytest

from tests.conftest import GatewayFactory
from tests.support.batches import chat_lines, file_lines, start_batch, upload, wait_batch
from tests.support.fault_engine import EngineLog
from tests.support.keys import chat, key_with
from tests.support.servers import clean_env
from tram.config import Settings

FAST = {"poll_interval": 0.2, "adjust_interval": 0.05, "retry_seconds": 0.2}


def models(engine_url: str) -> list[dict[str, Any]]:
    served = {"slow": "delay-json", "echo": "echo", "bad": "error-400", "broken": "error-500"}
    return [{"name": name, "upstreams": [{"url": engine_url, "served_name": mode}]}
            for name, mode in served.items()]


@pytest.fixture
def batch_gateway(gateway: GatewayFactory, fault_engine_server: tuple[str, EngineLog]) -> Any:
    def run(**batches: Any) -> Any:
        return gateway(models=models(fault_engine_server[0]), batches={**FAST, **batches})
    return run


def made_key(url: str, auth: dict[str, str], **fields: object) -> tuple[str, dict[str, str]]:
    """A new virtual key: its id, and its request headers."""
    made = httpx.post(url + "/admin/keys", headers=auth, json={"name": "batcher", **fields})
    assert made.status_code == 201, made.text
    return made.json()["id"], {"Authorization": f"Bearer {made.json()['key']}"}


def _said(log: EngineLog) -> list[str]:
    """The line numbers the engine was asked, in order (each line says `say <n>`)."""
    return [body["messages"][0]["content"].split()[1] for body in log.received]


def test_the_openai_client_runs_a_batch_and_reads_its_files(
        batch_gateway: Any, auth: dict, engine_log: EngineLog) -> None:
    with batch_gateway() as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key=auth["Authorization"][7:])
        uploaded = client.files.create(file=("in.jsonl", chat_lines(12, "slow", delay=0.05)),
                                       purpose="batch")
        batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                      completion_window="24h", metadata={"job": "nightly"})
        assert batch.status == "in_progress" and batch.request_counts.total == 12
        while batch.status not in ("completed", "failed", "expired", "cancelled"):
            time.sleep(0.1)
            batch = client.batches.retrieve(batch.id)
        output = [orjson.loads(line) for line in
                  client.files.content(batch.output_file_id).content.splitlines()]
        listed = client.batches.list()
        files = client.files.list()
        usage = httpx.get(url + "/admin/usage?by=route", headers=auth).json()["data"]
        assert client.files.retrieve(uploaded.id).bytes == len(chat_lines(12, "slow", delay=0.05))
    assert batch.status == "completed" and batch.error_file_id is None
    assert batch.request_counts.completed == 12 and batch.request_counts.failed == 0
    assert batch.metadata == {"job": "nightly"} and batch.model == "slow"
    assert batch.completed_at and batch.in_progress_at and batch.finalizing_at
    assert batch.usage is not None and batch.usage.input_tokens == 12 * 7
    assert [line["custom_id"] for line in output] == [f"line-{n}" for n in range(12)]
    for line in output:
        assert line["id"].startswith("batch_req_") and line["error"] is None
        response = line["response"]
        assert response["status_code"] == 200 and response["request_id"]
        assert response["body"]["object"] == "chat.completion"
        assert response["body"]["model"] == "slow"  # the alias, as the client would see it
    assert sorted(_said(engine_log), key=int) == [str(n) for n in range(12)]  # each once
    assert [b.id for b in listed.data] == [batch.id]
    purposes = {f.id: f.purpose for f in files.data}
    assert purposes == {uploaded.id: "batch", batch.output_file_id: "batch_output"}
    assert usage == [{"route": "chat", "requests": 12, "prompt_tokens": 84,
                      "completion_tokens": 24, "total_tokens": 108, "errors": 0,
                      "estimated_requests": 0, "error_rate": 0.0}]


def test_malformed_lines_get_an_error_line_each_and_the_rest_run(
        batch_gateway: Any, auth: dict, engine_log: EngineLog) -> None:
    good = chat_lines(3, "echo")
    line = orjson.loads(good.splitlines()[0])
    bad = [b"{not json", b"[1, 2]", orjson.dumps({**line, "custom_id": ""}),
           orjson.dumps({**line, "custom_id": "line-1"}),  # a duplicate of a good line
           orjson.dumps({**line, "custom_id": "m", "method": "GET"}),
           orjson.dumps({**line, "custom_id": "u", "url": "/v1/embeddings"}),
           orjson.dumps({**line, "custom_id": "b", "body": "hi"}),
           orjson.dumps({**line, "custom_id": "s", "body": {**line["body"], "stream": True}})]
    content = good + b"\n" + b"\n".join(bad) + b"\n"
    with batch_gateway() as url:
        done = wait_batch(url, auth, start_batch(url, auth, content)["id"])
        errors = file_lines(url, auth, done["error_file_id"])
        output = file_lines(url, auth, done["output_file_id"])
    assert done["status"] == "completed"
    assert done["request_counts"] == {"total": 11, "completed": 3, "failed": 8}
    assert [e["line"] for e in done["errors"]["data"]] == list(range(5, 13))
    codes = [e["error"]["code"] for e in errors]
    assert codes == ["invalid_json_line", "invalid_json_line", "missing_custom_id",
                     "duplicate_custom_id", "invalid_method", "invalid_url", "invalid_body",
                     "invalid_body"]
    assert all(e["response"] is None and e["error"]["message"].startswith("Line ")
               for e in errors)
    assert [e["custom_id"] for e in errors][3:] == ["line-1", "m", "u", "b", "s"]
    assert [o["custom_id"] for o in output] == ["line-0", "line-1", "line-2"]
    assert len(engine_log.received) == 3


def test_a_file_without_a_runnable_line_fails_its_batch_with_the_reasons(
        batch_gateway: Any, auth: dict) -> None:
    with batch_gateway() as url:
        done = start_batch(url, auth, b"nope\n\n{}\n")
        errors = file_lines(url, auth, done["error_file_id"])
        empty = httpx.post(url + "/v1/batches", headers=auth, json={
            "input_file_id": upload(url, auth, b"\n\n")["id"],
            "endpoint": "/v1/chat/completions", "completion_window": "24h"})
    assert done["status"] == "failed" and done["failed_at"] and done["output_file_id"] is None
    assert done["request_counts"] == {"total": 2, "completed": 0, "failed": 2}
    assert [e["error"]["code"] for e in errors] == ["invalid_json_line", "missing_custom_id"]
    assert empty.status_code == 400 and empty.json()["error"]["code"] == "invalid_input_file"


def test_engine_errors_are_answers_in_the_error_file(batch_gateway: Any, auth: dict) -> None:
    content = chat_lines(2, "bad") + chat_lines(1, "broken", start=2) + \
        chat_lines(1, "nowhere", start=3) + chat_lines(1, "echo", start=4)
    with batch_gateway() as url:
        done = wait_batch(url, auth, start_batch(url, auth, content)["id"])
        errors = {e["custom_id"]: e for e in file_lines(url, auth, done["error_file_id"])}
    assert done["request_counts"] == {"total": 5, "completed": 1, "failed": 4}
    statuses = {cid: (e["response"]["status_code"], e["response"]["body"]["error"]["code"])
                for cid, e in errors.items()}
    assert statuses == {"line-0": (400, None), "line-1": (400, None),
                        "line-2": (502, "bad_gateway"), "line-3": (404, "model_not_found")}
    assert errors["line-0"]["response"]["body"]["error"]["message"] == "engine says 400"
    assert all(e["error"] is None for e in errors.values())


def test_files_and_batches_are_their_keys_only(batch_gateway: Any, auth: dict) -> None:
    with batch_gateway() as url:
        owner_id, owner = made_key(url, auth)
        other = key_with(url, auth)
        batch = start_batch(url, owner, chat_lines(2, "echo"))
        done = wait_batch(url, owner, batch["id"])
        file_id = batch["input_file_id"]
        for path in (f"/v1/files/{file_id}", f"/v1/files/{file_id}/content",
                     f"/v1/files/{done['output_file_id']}/content", f"/v1/batches/{batch['id']}"):
            for headers in (other, auth):  # the master key is another key here
                answer = httpx.get(url + path, headers=headers)
                assert answer.status_code == 404, (path, answer.text)
                assert answer.json()["error"]["type"] == "invalid_request_error"
        assert httpx.delete(f"{url}/v1/files/{file_id}", headers=other).status_code == 404
        assert httpx.post(f"{url}/v1/batches/{batch['id']}/cancel",
                          headers=other).status_code == 404
        used = httpx.post(url + "/v1/batches", headers=other, json={
            "input_file_id": file_id, "endpoint": "/v1/chat/completions",
            "completion_window": "24h"})
        listed = httpx.get(url + "/v1/batches", headers=other).json()
        files = httpx.get(url + "/v1/files", headers=other).json()
        admin = httpx.get(url + "/admin/batches", headers=auth).json()
        refused = httpx.get(url + "/admin/batches", headers=other)
        deleted = httpx.delete(f"{url}/v1/files/{file_id}", headers=owner).json()
    assert used.status_code == 404 and used.json()["error"]["param"] == "input_file_id"
    assert listed["data"] == [] and files["data"] == []
    assert [(b["id"], b["key_id"]) for b in admin["data"]] == [(batch["id"], owner_id)]
    assert refused.status_code == 403
    assert deleted == {"id": file_id, "object": "file", "deleted": True}


def test_cancel_runs_no_more_lines_and_keeps_every_result(
        batch_gateway: Any, auth: dict, engine_log: EngineLog) -> None:
    with batch_gateway(max_concurrency=2) as url:
        batch = start_batch(url, auth, chat_lines(30, "slow", delay=0.3))
        wait_until = time.monotonic() + 10
        while len(engine_log.received) < 3 and time.monotonic() < wait_until:
            time.sleep(0.05)
        cancelling = httpx.post(f"{url}/v1/batches/{batch['id']}/cancel", headers=auth).json()
        done = wait_batch(url, auth, batch["id"])
        again = httpx.post(f"{url}/v1/batches/{batch['id']}/cancel", headers=auth).json()
        output = file_lines(url, auth, done["output_file_id"])
        errors = file_lines(url, auth, done["error_file_id"])
        finished = start_batch(url, auth, chat_lines(1, "echo"))
        wait_batch(url, auth, finished["id"])
        late = httpx.post(f"{url}/v1/batches/{finished['id']}/cancel", headers=auth)
    assert cancelling["status"] in ("cancelling", "cancelled") and cancelling["cancelling_at"]
    assert done["status"] == "cancelled" and done["cancelled_at"] and again["status"] == "cancelled"
    ran = len(engine_log.received) - 1  # the last batch's one line
    assert 3 <= ran < 30
    assert len(output) == ran and all(o["response"]["status_code"] == 200 for o in output)
    assert len(errors) == 30 - ran
    assert {e["error"]["code"] for e in errors} == {"batch_cancelled"}
    assert {o["custom_id"] for o in output} | {e["custom_id"] for e in errors} == {
        f"line-{n}" for n in range(30)}
    assert done["request_counts"] == {"total": 30, "completed": ran, "failed": 30 - ran}
    assert late.status_code == 409 and late.json()["error"]["code"] == "conflict"


def test_a_key_out_of_budget_fails_its_remaining_lines_and_others_are_served(
        batch_gateway: Any, auth: dict) -> None:
    """Each answer costs 9 tokens (7 + 2); a budget of 40 is still open after four lines (36),
    so a fifth may start (a budget is overshot by at most what one request uses)."""
    with batch_gateway() as url:
        key_id, headers = made_key(url, auth, max_total_tokens=40)
        batch = start_batch(url, headers, chat_lines(10, "slow", delay=0.2))
        served: list[int] = []
        serving = threading.Thread(target=lambda: served.extend(
            chat(url, auth, "echo").status_code for _ in range(5)))
        serving.start()
        done = wait_batch(url, headers, batch["id"])
        serving.join()
        errors = file_lines(url, headers, done["error_file_id"])
        spent = httpx.get(f"{url}/admin/usage?by=key&key={key_id}", headers=auth).json()["data"]
    assert done["status"] == "completed"
    counts = done["request_counts"]
    assert 4 <= counts["completed"] <= 5 and counts["completed"] + counts["failed"] == 10
    assert len(errors) == counts["failed"]
    for error in errors:
        assert error["response"]["status_code"] == 429
        assert error["response"]["body"]["error"]["code"] == "insufficient_quota"
    assert served == [200] * 5
    assert spent[0]["requests"] == 10  # every line a usage row of the key, refused ones too
    assert spent[0]["errors"] == counts["failed"]
    assert spent[0]["prompt_tokens"] + spent[0]["completion_tokens"] <= 40 + 9


def test_a_revoked_key_fails_its_remaining_lines(batch_gateway: Any, auth: dict,
                                                 engine_log: EngineLog) -> None:
    with batch_gateway(max_concurrency=1) as url:
        key_id, headers = made_key(url, auth)
        batch = start_batch(url, headers, chat_lines(20, "slow", delay=0.2))
        while not engine_log.received:
            time.sleep(0.05)
        httpx.delete(f"{url}/admin/keys/{key_id}", headers=auth)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the key cannot read its batch any more
            found = httpx.get(f"{url}/admin/batches", headers=auth).json()["data"][0]
            assert found["id"] == batch["id"]
            if found["status"] == "completed":
                break
            time.sleep(0.1)
    assert found["status"] == "completed"
    counts = found["request_counts"]
    assert counts["completed"] < 20 and counts["completed"] + counts["failed"] == 20
    assert len(engine_log.received) == counts["completed"]


def test_batch_requests_are_checked(batch_gateway: Any, auth: dict) -> None:
    with batch_gateway() as url:
        file_id = upload(url, auth, chat_lines(1, "echo"))["id"]
        base = {"input_file_id": file_id, "endpoint": "/v1/chat/completions",
                "completion_window": "24h"}
        cases = [({**base, "endpoint": "/v1/images/generations"}, 400, "endpoint"),
                 ({**base, "completion_window": "1h"}, 400, "completion_window"),
                 ({**base, "input_file_id": "file-nope"}, 404, "input_file_id"),
                 ({**base, "metadata": {str(n): "v" for n in range(17)}}, 400, "metadata"),
                 ({k: v for k, v in base.items() if k != "endpoint"}, 400, "endpoint")]
        answers = [httpx.post(url + "/v1/batches", headers=auth, json=body)
                   for body, _, _ in cases]
        purpose = httpx.post(url + "/v1/files", headers=auth, data={"purpose": "fine-tune"},
                             files={"file": ("x.jsonl", b"{}")})
        no_file = httpx.post(url + "/v1/files", headers=auth, data={"purpose": "batch"},
                             files={"other": ("x.jsonl", b"{}")})
    for answer, (_, status, param) in zip(answers, cases, strict=True):
        assert answer.status_code == status, answer.text
        assert answer.json()["error"]["param"] == param
    assert purpose.status_code == 400 and purpose.json()["error"]["param"] == "purpose"
    assert no_file.status_code == 400 and no_file.json()["error"]["param"] == "file"


def _head(url: str, auth: dict[str, str], length: int) -> tuple[str, int, bytes]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port), (
        f"POST /v1/files HTTP/1.1\r\nhost: x\r\nauthorization: {auth['Authorization']}\r\n"
        f"content-type: multipart/form-data; boundary=b0undary\r\n"
        f"content-length: {length}\r\n\r\n").encode()


def test_a_100_mb_file_is_refused_before_its_body_is_read(batch_gateway: Any,
                                                           auth: dict) -> None:
    with batch_gateway() as url:
        host, port, head = _head(url, auth, 100 * 1024 * 1024)
        with socket.create_connection((host, port), timeout=10) as conn:
            conn.sendall(head + b"--b0undary\r\n")  # 100 MB announced, a few bytes sent
            answer = conn.recv(65536)
        client = openai.OpenAI(base_url=url + "/v1", api_key=auth["Authorization"][7:],
                               max_retries=0)
        with pytest.raises(openai.APIStatusError) as refused:
            client.files.create(file=("big.jsonl", b"x" * (100 * 1024 * 1024)),
                                purpose="batch")
        after = httpx.get(url + "/v1/files", headers=auth).json()["data"]
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    error = orjson.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
    assert error["code"] == "request_too_large" and "batches.max_file_bytes" in error["message"]
    assert "52428800 bytes (50 MiB)" in error["message"]
    assert refused.value.status_code == 413
    assert "batches.max_file_bytes" in refused.value.message
    assert after == []


def test_a_file_over_a_smaller_limit_is_refused_however_it_is_sent(batch_gateway: Any,
                                                                   auth: dict) -> None:
    with batch_gateway(max_file_bytes=4096) as url:
        at_limit = upload(url, auth, b"x" * 4096)
        over = httpx.post(url + "/v1/files", headers=auth, data={"purpose": "batch"},
                          files={"file": ("x.jsonl", b"x" * 4097)})

        def chunks() -> Any:  # no Content-Length: counted as it comes
            yield (b"--b0undary\r\ncontent-disposition: form-data; name=\"file\"; "
                   b"filename=\"x\"\r\n\r\n")
            for _ in range(100):
                yield b"x" * 4096

        chunked = httpx.post(url + "/v1/files", headers={
            **auth, "content-type": "multipart/form-data; boundary=b0undary"},
            content=chunks())
    assert at_limit["bytes"] == 4096 and at_limit["status"] == "processed"
    for answer in (over, chunked):
        assert answer.status_code == 413, answer.text
        assert "4096 bytes" in answer.json()["error"]["message"]


def test_tram_batches_lists_every_keys_batches_and_shows_one(
        batch_gateway: Any, auth: dict, settings: Settings) -> None:
    with batch_gateway() as url:
        key_id, headers = made_key(url, auth, name="nightly")
        done = wait_batch(url, headers, start_batch(url, headers, chat_lines(3, "echo") +
                                                    b"oops\n")["id"])

        def tram(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "tram", "batches", *args],
                                  env=clean_env(TRAM_DATA_DIR=str(settings.data_dir)),
                                  capture_output=True, text=True, check=False)

        listed = tram()
        mine = tram("list", "--key", "nightly", "--status", "completed")
        none = tram("list", "--status", "cancelled")
        shown = tram("show", done["id"])
        missing = tram("show", "batch_nope")
    assert listed.returncode == 0, listed.stderr
    [head, row] = listed.stdout.splitlines()
    assert head.split()[:4] == ["batch", "key", "status", "endpoint"]
    assert row.split()[:6] == [done["id"], key_id, "completed", "/v1/chat/completions",
                               "4/4", "1"]
    assert mine.stdout.splitlines()[1:] == [row]
    assert none.stdout.splitlines()[1:] == []
    shown_batch = orjson.loads(shown.stdout)
    assert shown_batch["request_counts"] == {"total": 4, "completed": 3, "failed": 1}
    assert shown_batch["key_id"] == key_id
    assert shown_batch["lines_by_state"] == {"succeeded": 3, "failed": 1}
    assert missing.returncode == 1 and "batch_nope" in missing.stderr
