"""The console's Sharing panel in a real headless Chromium (Debian's, driven by Playwright), in
front of a scripted saturated engine (a fault-injection stand-in: tests/support/held_engine.py)
at `max_in_flight: 1`: two keys contend, the panel shows the queue and each key's class,
weight and share, live, in both languages."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import MASTER_KEY
from tests.sharing.test_gateway_queue import chat, new_key
from tests.sharing.test_sharing_view import QUEUE, held_gateway, model_view
from tests.support.held_engine import HeldEngine
from tests.support.servers import serve_app

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is not installed: run scripts/setup.sh"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield launched
        launched.close()


def _console(browser: Browser, url: str) -> Page:
    context = browser.new_context(locale="en-US")
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto(url + "/")
    page.fill("#signin-key", MASTER_KEY)
    page.keyboard.press("Enter")
    page.click("#tab-console")
    return page


def test_the_panel_shows_contending_keys_shares_live(browser: Browser, tmp_path: Path) -> None:
    engine = HeldEngine()
    with serve_app(engine.app) as engine_url, \
            held_gateway(tmp_path, engine_url, queue={**QUEUE, "key_prompts": 3},
                         max_in_flight=1) as url:
        page = _console(browser, url)
        models = page.locator("#sharing-models tbody tr[data-model='m']")
        expect(models.locator("td")).to_have_text(["m", "1", "0", "0", "0"])  # max_in_flight
        expect(page.locator("#sharing-models tbody tr[data-model='free']")).to_contain_text(
            "unbounded")
        expect(page.locator("#sharing-empty")).to_be_visible()
        expect(page.locator("#sharing-settings")).to_contain_text("batch 0.5")
        expect(page.locator("#sharing-settings")).to_contain_text(
            "batch prompts: at most 2 at a time (8000 tokens/s)")
        expect(page.locator("#sharing-settings")).to_contain_text(
            "each key's prompts beside other keys: at most 3 at a time (8000 tokens/s)")

        heavy_id, heavy = new_key(url, "heavy", weight=3)
        bulk_id, bulk = new_key(url, "bulk", priority="batch")
        threads = [threading.Thread(target=chat, args=(url, headers, tag))
                   for headers, tag in ((AUTH, "blocker"), (heavy, "h"), (bulk, "b"))]
        threads[0].start()
        engine.wait_arrived(1)
        for thread in threads[1:]:
            thread.start()
        model_view(url, lambda view: sum(view["waiting"].values()) == 2)
        # Refreshed live: the queue fills without a reload.
        expect(models.locator("td")).to_have_text(["m", "1", "1", "1", "1"])
        heavy_row = page.locator(f"#sharing-keys tr[data-key-id='{heavy_id}']")
        expect(heavy_row.locator("td")).to_have_text(["m", "heavy", "interactive", "3", "0.0%",
                                                       "1"])
        expect(page.locator(f"#sharing-keys tr[data-key-id='{bulk_id}']")).to_contain_text(
            "batch")
        master = page.locator("#sharing-keys tr[data-key-id='master']")
        expect(master).to_contain_text("100.0%")
        expect(page.locator("#sharing-empty")).to_be_hidden()

        engine.release(3)
        for thread in threads:
            thread.join(30)
        expect(models.locator("td")).to_have_text(["m", "1", "0", "0", "0"])
        expect(heavy_row.locator("td").nth(4)).not_to_have_text("0.0%")  # its share now
        page.select_option("#lang", "vi")
        expect(page.locator("#sharing-title")).to_have_text("Chia sẻ")
        expect(page.locator(f"#sharing-keys tr[data-key-id='{bulk_id}']")).to_contain_text("lô")
        expect(page.locator("#sharing-models tbody tr[data-model='free']")).to_contain_text(
            "không giới hạn")
        expect(page.locator("#sharing-settings")).to_contain_text("prompt lô: tối đa 2 cùng lúc")
        expect(page.locator("#sharing-settings")).to_contain_text(
            "prompt của mỗi khoá khi có khoá khác: tối đa 3 cùng lúc")
