"""Trạm's HTTP/1.1 protocol (tram/server) keeps the HTTP semantics clients rely on: keep-alive,
pipelining in order, chunked and streamed request bodies, `Expect: 100-continue`, HEAD, framing
chosen from the app's headers, `Connection: close` and HTTP/1.0, a closed keep-alive connection
when idle, an early answer that ends the connection, the app's crash answered in the OpenAI
shape, a disconnect seen by the app, and headers that would split a response refused. Driven
over real loopback sockets, byte for byte. And a server gets its bounds from its factory, or
does not start."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.support.raw_http import STILL_OPEN, connect, exchange, read_until_closed
from tests.support.servers import serve_app
from tram.config import ServerConfig
from tram.server import ConnectionGuard, gateway_config

seen: dict[str, Any] = {}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    path = scope["path"]
    if path == "/crash":
        raise RuntimeError("boom")
    if path == "/split":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"x-a", b"1\r\nset-cookie: evil")]})
        return
    if path == "/early":  # answers without reading the body
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"no"})
        return
    if path == "/wait-disconnect":
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                seen["disconnected"] = True
                return
            body += message["body"]
    if path == "/slow":
        await asyncio.sleep(1.2)
    if path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"one ", b"two ", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    answer = orjson.dumps({"method": scope["method"], "path": path,
                           "query": scope["query_string"].decode(), "size": len(body),
                           "body": body[:40].decode("latin-1")})
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", b"%d" % len(answer))]})
    await send({"type": "http.response.body", "body": answer})


class GuardedApp:
    """The app with the bounds a gateway would give it (a short head timeout here)."""

    connection_guard = ConnectionGuard(ServerConfig(head_timeout=0.6))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await app(scope, receive, send)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve_app(GuardedApp(), tram_server=True, timeout_keep_alive=1) as served:
        yield served


def _responses(raw: bytes) -> list[tuple[bytes, bytes]]:
    """(head, body) of each length-framed response in `raw`."""
    found = []
    while raw.startswith(b"HTTP/1.1"):
        head, _, rest = raw.partition(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        found.append((head, rest[:length]))
        raw = rest[length:]
    return found


def test_keep_alive_and_pipelined_requests_are_answered_in_order(url: str) -> None:
    sock = connect(url)
    sock.sendall(b"".join(
        b"POST /p/%d?x=%d HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nab%d" % (i, i, i)
        for i in range(5)) + b"GET /last HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    answers = _responses(read_until_closed(sock, 3))
    assert [orjson.loads(body)["path"] for _, body in answers] == \
        [f"/p/{i}" for i in range(5)] + ["/last"]
    assert [orjson.loads(body)["body"] for _, body in answers[:5]] == [f"ab{i}" for i in range(5)]
    assert orjson.loads(answers[0][1])["query"] == "x=0"
    assert b"connection: close" in answers[-1][0]
    assert b"date: " in answers[0][0]


def test_a_tight_pipeline_bound_still_delivers_every_body_in_order() -> None:
    # At most 2 requests and 8 KiB waiting per connection: reading pauses and resumes many
    # times over bodies of known length, chunked bodies and bare heads, all on one connection.
    tight = ConnectionGuard(ServerConfig(), max_pipelined=2, max_pipelined_bytes=8192)
    sizes = [0, 3 << 20, 5, 70_000, 0, 100_000, 1]
    requests = []
    for i, size in enumerate(sizes):
        body = bytes([97 + i]) * size
        if i % 3 == 2:  # chunked, in 10 KiB chunks
            chunks = b"".join(b"%x\r\n%b\r\n" % (len(body[j:j + 10240]), body[j:j + 10240])
                              for j in range(0, len(body), 10240))
            requests.append(b"POST /c%d HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked"
                            b"\r\n\r\n%b0\r\n\r\n" % (i, chunks))
        else:
            requests.append(b"POST /p%d HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%b"
                            % (i, size, body))
    requests += [b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n"] + \
        [b"GET /g%d HTTP/1.1\r\nHost: t\r\n\r\n" % i for i in range(500)]
    with serve_app(app, tram_server=True, guard=tight) as served:
        sock = connect(served)
        threading.Thread(target=sock.sendall, args=(b"".join(requests),), daemon=True).start()
        raw = b""
        sock.settimeout(10)
        while raw.count(b"HTTP/1.1 200") < len(requests) and (data := sock.recv(1 << 20)):
            raw += data
    answers = [orjson.loads(body) for _, body in _responses(raw)]
    assert [a["path"] for a in answers] == \
        [f"/{'c' if i % 3 == 2 else 'p'}{i}" for i in range(len(sizes))] + ["/slow"] + \
        [f"/g{i}" for i in range(500)]
    assert [a["size"] for a in answers[:len(sizes)]] == sizes
    assert all(a["body"] == chr(97 + i) * min(size, 40)
               for i, (a, size) in enumerate(zip(answers, sizes, strict=False)))


def test_bodies_chunked_large_or_after_100_continue_arrive_whole(url: str) -> None:
    sock = connect(url)
    sock.sendall(b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n")
    _, body = _responses(read_until_closed(sock, 0.5).removesuffix(STILL_OPEN))[0]
    assert orjson.loads(body)["body"] == "abcdefg"
    # A large body (past the read pause threshold) in many writes: every byte arrives.
    big = b"x" * (3 << 20)
    answer = httpx.post(url + "/big", content=big)
    assert answer.json()["size"] == len(big)
    # 100-continue: the interim answer comes before the body is sent.
    sock = connect(url)
    sock.sendall(b"POST /e HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                 b"Expect: 100-continue\r\n\r\n")
    sock.settimeout(3)
    assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
    sock.sendall(b"hello")
    assert b'"body":"hello"' in sock.recv(1000)


def test_head_streams_http10_and_framing(url: str) -> None:
    sock = connect(url)
    sock.sendall(b"HEAD /h HTTP/1.1\r\nHost: t\r\n\r\n")
    raw = read_until_closed(sock, 0.5)
    assert raw.startswith(b"HTTP/1.1 200") and raw.endswith(b"\r\n\r\n" + STILL_OPEN)
    # A response with no length is chunked; its parts arrive as they are sent.
    with httpx.stream("GET", url + "/stream") as streamed:
        assert streamed.headers["transfer-encoding"] == "chunked"
        assert b"".join(streamed.iter_raw()) == b"one two three"
    # HTTP/1.0 without keep-alive: answered, then closed.
    raw = exchange(url, b"GET /old HTTP/1.0\r\n\r\n", 3)
    assert raw.startswith(b"HTTP/1.1 200") and b"connection: close" in raw
    assert not raw.endswith(STILL_OPEN)


def test_idle_keep_alive_is_closed_and_an_early_answer_ends_the_connection(url: str) -> None:
    started = time.monotonic()
    raw = exchange(url, b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n", 4)
    assert raw.startswith(b"HTTP/1.1 200") and not raw.endswith(STILL_OPEN)
    assert 0.5 < time.monotonic() - started < 3.5  # timeout_keep_alive=1
    # Answered before the body came: the rest of the body cannot be told from a next request.
    raw = exchange(url, b"POST /early HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n"
                        b"GET /x", 3)
    assert raw.startswith(b"HTTP/1.1 413") and b"connection: close" in raw
    assert not raw.endswith(STILL_OPEN)


def test_crashes_bad_headers_and_disconnects(url: str) -> None:
    crashed = httpx.get(url + "/crash")
    assert crashed.status_code == 500
    assert crashed.json()["error"]["code"] == "internal_error"
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(url + "/split")  # closed, never a forged header
    sock = connect(url)
    sock.sendall(b"POST /wait-disconnect HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
    time.sleep(0.2)
    sock.close()
    deadline = time.monotonic() + 3
    while "disconnected" not in seen and time.monotonic() < deadline:
        time.sleep(0.02)
    assert seen.get("disconnected") is True
    assert httpx.get(url + "/still-serving").status_code == 200


def test_pipelined_answers_come_before_the_refusal_of_a_later_request(url: str) -> None:
    # A slow request and one with a body, then a malformed one: both answered, then the 400.
    sock = connect(url)
    sock.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\nPOST /p HTTP/1.1\r\nHost: t\r\n"
                 b"Content-Length: 2\r\n\r\nhi"
                 b"POST /bad HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n")
    raw = read_until_closed(sock, 5)
    assert not raw.endswith(STILL_OPEN)
    good, _, refusal = raw.partition(b"HTTP/1.1 400")
    assert [orjson.loads(body)["path"] for _, body in _responses(good)] == ["/slow", "/p"]
    assert b"invalid_http_request" in refusal
    # An HTTP/0.9 request line (no version) is refused, never answered 200.
    raw = exchange(url, b"GET /a\r\n\r\n", 3)
    assert raw.startswith(b"HTTP/1.1 400") and b"HTTP/0.9" in raw


def test_a_next_head_begun_during_an_answer_is_timed_from_the_answer(url: str) -> None:
    # The next request's head starts arriving while a slow answer (1.2 s) is still being
    # made, and never ends: the answer goes out whole; the head is refused only after its
    # timeout (0.6 s) counted from that answer, never in the middle of it.
    sock = connect(url)
    sock.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\nGET /next HTTP/1.1\r\nHo")
    started = time.monotonic()
    raw = read_until_closed(sock, 5)
    assert raw.startswith(b"HTTP/1.1 200") and b'"path":"/slow"' in raw
    second = raw.split(b"HTTP/1.1 ")[2]
    assert second.startswith(b"408") and b"request_timeout" in second
    assert time.monotonic() - started >= 1.7  # 1.2 s answer + 0.6 s for the head


class SmallHeads:
    """An app carrying a guard with a 4 KiB head limit (as a TramApp carries its own)."""

    connection_guard = ConnectionGuard(ServerConfig(max_head_bytes=4096))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await app(scope, receive, send)


BIG_HEAD = b"GET /a HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Pad: " + b"a" * 5000 + \
    b"\r\n\r\n"


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_server_is_handed_its_guard_or_does_not_start() -> None:
    # No guard given and none on the app: refused at start-up (it used to serve on defaults).
    with pytest.raises(TypeError, match="connection_guard"):
        gateway_config(app, ServerConfig()).load()
    with pytest.raises(RuntimeError, match="did not start"), serve_app(app, tram_server=True):
        pass
    # The guard handed over is the one applied (a 5000-byte head passes the default limit).
    with serve_app(app, tram_server=True, guard=SmallHeads.connection_guard) as served:
        assert exchange(served, BIG_HEAD).startswith(b"HTTP/1.1 431")
    with serve_app(GuardedApp(), tram_server=True) as served:
        assert exchange(served, BIG_HEAD).startswith(b"HTTP/1.1 200")
    # `tram up`'s gateway: the guard of the app it serves, handed over.
    up_app = SmallHeads()
    with serve_app(up_app, tram_server=True, guard=up_app.connection_guard) as served:
        assert exchange(served, BIG_HEAD).startswith(b"HTTP/1.1 431")
