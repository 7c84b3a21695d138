"""Images through the gateway's checks and pixel budget, and text while images are processed.

    python -m bench images [--seconds 8]

1. Images per second, one thread, for a 1 MP and a 12 MP JPEG (as data URLs): what the gateway
   does to each image (base64 decode and type check, header and structure check, downscale to
   the ~1 MP budget, JPEG encode), with Trạm's own code (Pillow); and the same resize and encode
   with pyvips when it is installed (`pip install pyvips pyvips-binary`), the alternative the
   library choice was measured against.
2. Text latency through `tram serve` (one worker, core 1; the benchmark fake engine on core 0):
   wrk at 8 connections alone, then again while 4 clients keep posting 12 MP images to a vision
   model, as data URLs and as URLs the gateway fetches (from a loopback server). Text must not
   stall: p99 within 2× of the text-only run.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.gateway import _start, _wait, stop_processes
from bench.loadgen import KEY, free_port, wrk

ROOT = Path(__file__).resolve().parents[1]
BUDGET = 1280 * 28 * 28


def _photo(width: int, height: int) -> bytes:
    """A JPEG with detail (noise and gradients), so encoders work as on a photo."""
    from PIL import Image

    noise = Image.effect_noise((width, height), 64).convert("RGB")
    gradient = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    buffer = io.BytesIO()
    Image.blend(noise, gradient, 0.5).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _per_second(work: Any, seconds: float = 3.0) -> float:
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        work()
        count += 1
    return count / (time.perf_counter() - started)


def _tram_path(url: str) -> None:
    from tram.config import VisionConfig
    from tram.vision.decode import prepare

    prepare(url, VisionConfig(max_image_bytes=64 * 1024 * 1024), BUDGET, "p")


def _pyvips_path(url: str) -> None:
    import pyvips  # type: ignore[import-not-found]

    data = base64.b64decode(url.split(",", 1)[1])
    image = pyvips.Image.new_from_buffer(data, "")
    scale = (BUDGET / (image.width * image.height)) ** 0.5
    image = pyvips.Image.thumbnail_buffer(data, int(image.width * scale))
    image.write_to_buffer(".jpg[Q=90]")


def throughput() -> list[str]:
    lines = ["| image | Trạm's path (Pillow) images/s | pyvips images/s | pyvips / Pillow |",
             "| --- | --- | --- | --- |"]
    for name, size in (("1 MP JPEG (1280×800)", (1280, 800)),
                       ("12 MP JPEG (4000×3000)", (4000, 3000))):
        url = "data:image/jpeg;base64," + base64.b64encode(_photo(*size)).decode()
        pillow = _per_second(lambda url=url: _tram_path(url))
        try:
            vips: float | None = _per_second(lambda url=url: _pyvips_path(url))
        except ImportError:
            vips = None
        lines.append(f"| {name} | {pillow:.1f} | {f'{vips:.1f}' if vips else 'not installed'} | "
                     f"{f'{vips / pillow:.2f}' if vips else '-'} |")
    return lines


def _image_server(photo: bytes) -> tuple[Any, threading.Thread, str]:
    """A loopback server of one 12 MP JPEG, for image requests by URL."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    app = Starlette(routes=[Route("/photo.jpg",
                                  lambda request: Response(photo, media_type="image/jpeg"))])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    return server, thread, f"http://127.0.0.1:{port}/photo.jpg"


def _post_images(url: str, image_url: str, stop: threading.Event, counts: list[int]) -> None:
    # Encoded once: the clients share core 0 with wrk, and encoding 9 MB of JSON per request
    # there would slow wrk and show up as gateway latency.
    body = orjson.dumps({"model": "vision", "max_tokens": 8, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "what is this?"},
                                     {"type": "image_url", "image_url": {"url": image_url}}]}]})
    with httpx.Client(timeout=60, headers={"Authorization": f"Bearer {KEY}",
                                           "Content-Type": "application/json"}) as client:
        while not stop.is_set():
            answer = client.post(url + "/v1/chat/completions", content=body)
            counts[0 if answer.status_code == 200 else 1] += 1


def text_under_image_load(seconds: float) -> list[str]:
    os.sched_setaffinity(0, {0})
    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="tram-images-") as tmp:
        try:
            engine_port, port = free_port(), free_port()
            processes.append(_start([sys.executable, "-m", "bench.fake_engine", "--port",
                                     str(engine_port)], "0", cwd=ROOT))
            engine = f"http://127.0.0.1:{engine_port}/v1"
            _wait(f"http://127.0.0.1:{engine_port}")
            (Path(tmp) / "tram.yaml").write_text(
                "vision: {max_image_bytes: 67108864, allow_private_addresses: true, "
                "fetch_cache_bytes: 0}\nserver: {max_body_bytes: 67108864}\n"
                f"models:\n  - {{name: bench, upstreams: [{{url: '{engine}', served_name: bench}}]}}\n"
                f"  - {{name: vision, vision: true, upstreams: [{{url: '{engine}', "
                "served_name: bench}]}\n")
            processes.append(_start([sys.executable, "-m", "tram", "serve", "--config",
                                     "tram.yaml", "--host", "127.0.0.1", "--port", str(port),
                                     "--log-level", "warning"], "1",
                                    env={**os.environ, "TRAM_MASTER_KEY": KEY}, cwd=tmp))
            url = f"http://127.0.0.1:{port}"
            _wait(url)
            wrk(url, 8, 1, "0")  # warm-up
            alone = wrk(url, 8, seconds, "0")
            photo = _photo(4000, 3000)
            server, thread, photo_url = _image_server(photo)
            rows = []
            for name, image_url in (
                    ("data URLs (a 9.2 MB request each)",
                     "data:image/jpeg;base64," + base64.b64encode(photo).decode()),
                    ("URLs the gateway fetches (6.8 MB each)", photo_url)):
                stop, counts = threading.Event(), [0, 0]
                clients = [threading.Thread(target=_post_images,
                                            args=(url, image_url, stop, counts))
                           for _ in range(4)]
                for client in clients:
                    client.start()
                time.sleep(1.0)
                loaded = wrk(url, 8, seconds, "0")
                stop.set()
                for client in clients:
                    client.join(60)
                rows.append((name, loaded, counts))
            server.should_exit = True
            thread.join(10)
        finally:
            stop_processes(processes)
    lines = ["| text requests (wrk, c=8) | req/s | p50 ms | p99 ms | p99 / alone | images "
             "answered (failed) |", "| --- | --- | --- | --- | --- | --- |",
             f"| alone | {alone.rps:,.0f} | {alone.p50_ms:.2f} | {alone.p99_ms:.2f} | 1.00 | - |"]
    for name, loaded, counts in rows:
        lines.append(f"| while 4 clients post 12 MP images as {name} | {loaded.rps:,.0f} | "
                     f"{loaded.p50_ms:.2f} | {loaded.p99_ms:.2f} | "
                     f"**{loaded.p99_ms / alone.p99_ms:.2f}×** | {counts[0]} ({counts[1]}) |")
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench images", description=__doc__)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args(argv)
    print(f"python -m bench images --seconds {args.seconds:g}\n")
    print("\n".join(throughput()))
    print()
    print("\n".join(text_under_image_load(args.seconds)))
    return 0
