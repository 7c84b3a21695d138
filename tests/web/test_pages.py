"""The web pages in a real headless Chromium (Debian's, driven by Playwright): sign-in and what
each key sees, both languages, the playground against the real embedded engine (streaming,
stop, images, the code it shows, run as is), the admin console (keys, usage, live replicas),
a phone's width and labels for every control."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

from tests.conftest import MASTER_KEY, GatewayFactory, fault_models
from tests.support.fault_engine import EngineLog
from tests.support.keys import key_with
from tests.support.route_engine import RouteLog, route_engine
from tests.support.servers import serve_app
from tests.support.tram_up import TramUp
from tram.app import create_app
from tram.config import Settings, parse_config
from tram.web import STATIC

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
# A 2×2 PNG.
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP8z8DAwMDA"
                       "xMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg==")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is not installed: run scripts/setup.sh"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield launched
        launched.close()


def _page(browser: Browser, locale: str = "en-US", **options: Any) -> Page:
    context = browser.new_context(locale=locale, **options)
    context.set_default_timeout(15_000)
    return context.new_page()


def _sign_in(page: Page, url: str, key: str) -> None:
    page.goto(url + "/")
    page.fill("#signin-key", key)
    page.keyboard.press("Enter")


def test_sign_in_language_and_what_each_key_sees(browser: Browser, embedded: TramUp) -> None:
    page = _page(browser, locale="vi-VN")
    page.goto(embedded.url + "/")
    expect(page.locator("#signin-title")).to_have_text("Đăng nhập")  # the browser prefers vi
    assert page.evaluate("document.documentElement.lang") == "vi"
    _sign_in(page, embedded.url, "sk-wrong")
    expect(page.locator("#signin-error")).to_contain_text("Incorrect API key provided.")
    _sign_in(page, embedded.url, MASTER_KEY)
    expect(page.locator("#tab-console")).to_be_visible()
    expect(page.locator("#who")).to_have_text("Đã đăng nhập: master key")
    # The key: in this tab's session only; never in the URL, localStorage or the page.
    assert page.evaluate("sessionStorage.getItem('tram.key')") == MASTER_KEY
    assert MASTER_KEY not in page.url
    assert MASTER_KEY not in page.evaluate("JSON.stringify(localStorage)")
    assert MASTER_KEY not in page.content()
    page.select_option("#lang", "en")
    expect(page.locator("#tab-playground")).to_have_text("Playground")
    expect(page.locator("#pg-input")).to_have_attribute("placeholder", re.compile("Enter sends"))
    page.reload()  # the session survives a reload, the language choice too
    expect(page.locator("#tab-console")).to_have_text("Console")
    page.click("#signout")
    expect(page.locator("#signin")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('tram.key')") is None

    virtual = key_with(embedded.url, AUTH, name="web-user")["Authorization"].split()[1]
    other = _page(browser, locale="en-GB")
    _sign_in(other, embedded.url, virtual)
    expect(other.locator("#who")).to_have_text("Signed in: web-user")
    expect(other.locator("#playground")).to_be_visible()
    expect(other.locator("#my-usage")).to_be_visible()  # its own usage
    expect(other.locator("#tab-console")).to_be_hidden()  # no console for a virtual key


def test_every_string_is_in_both_languages(browser: Browser, embedded: TramUp) -> None:
    page = _page(browser)
    page.goto(embedded.url + "/")
    keys = page.evaluate("""async () => {
        const { STRINGS } = await import('/ui/i18n.js');
        return [Object.keys(STRINGS.vi).sort(), Object.keys(STRINGS.en).sort()];
    }""")
    assert keys[0] == keys[1] and len(keys[0]) > 80
    used = set(re.findall(r'data-i18n(?:-placeholder|-aria-label)?="([^"]+)"',
                          (STATIC / "index.html").read_text()))
    for script in STATIC.glob("*.js"):
        used |= set(re.findall(r'\bt\(\s*"([^"]+)"', script.read_text()))
    assert used <= set(keys[0]), used - set(keys[0])
    assert _untranslated_text(STATIC / "index.html") == set()


def _untranslated_text(path: Any) -> set[str]:
    """Text in the page outside an element that names its string (data-i18n)."""
    neutral = {"Trạm", "curl", "Python (openai)", "Tiếng Việt", "English", "0.7"}
    found: set[str] = set()

    class Scan(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.stack: list[bool] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag not in ("input", "meta", "link", "br", "img"):
                self.stack.append(any(name == "data-i18n" for name, _ in attrs))

        def handle_endtag(self, tag: str) -> None:
            if tag not in ("input", "meta", "link", "br", "img") and self.stack:
                self.stack.pop()

        def handle_data(self, data: str) -> None:
            text = data.strip()
            if text and not any(self.stack) and text not in neutral:
                found.add(text)

    Scan().feed(path.read_text())
    return found


def test_playground_streams_and_shows_tokens_speed_and_runnable_code(
        browser: Browser, embedded: TramUp) -> None:
    page = _page(browser)
    _sign_in(page, embedded.url, MASTER_KEY)
    page.fill("#pg-system", "You are terse.")
    page.fill("#pg-max-tokens", "24")
    page.fill("#pg-input", "Name a colour.")
    page.keyboard.press("Enter")
    answer = page.locator(".message.assistant .answer").last
    expect(answer).not_to_be_empty()
    stats = page.locator(".message.assistant .stats").last
    expect(stats).to_contain_text("tokens/s")
    assert 1 <= int(stats.get_attribute("data-tokens") or 0) <= 24
    page.fill("#pg-input", "And another?")
    page.click("#pg-send")
    expect(page.locator(".message.assistant .stats").nth(1)).to_contain_text("tokens/s")
    python = page.locator("#pg-python").text_content() or ""
    curl = page.locator("#pg-curl").text_content() or ""
    assert "And another?" in curl and "You are terse." in python, curl + python
    assert MASTER_KEY not in python + curl  # the code names the key, never holds it
    ran = subprocess.run([sys.executable, "-c", python], check=False, capture_output=True,
                         text=True,
                         timeout=60, env={**os.environ, "TRAM_API_KEY": MASTER_KEY})
    assert ran.returncode == 0 and ran.stdout.strip(), ran.stderr[-2000:]


@pytest.fixture
def fault_site(gateway: GatewayFactory, fault_engine_server: tuple[str, EngineLog]
               ) -> Iterator[str]:
    engine = fault_engine_server[0]
    models = [*fault_models(engine, first_byte=2, idle=2, total=30),
              {"name": "vl-stream", "vision": True, "image_fetch": "engine",
               "upstreams": [{"url": engine, "served_name": "stream"}]}]
    with gateway(models=models) as url:
        yield url


def test_stop_cancels_the_engine_request(browser: Browser, fault_site: str,
                                         engine_log: EngineLog) -> None:
    page = _page(browser)
    _sign_in(page, fault_site, MASTER_KEY)
    page.select_option("#pg-model", "m-slow-stream")
    page.fill("#pg-input", "Talk for a while.")
    page.click("#pg-send")
    expect(page.locator(".message.assistant .answer").last).to_contain_text("t2")
    page.click("#pg-stop")
    expect(page.locator(".message.assistant .stats").last).to_have_text("Stopped.")
    deadline = time.monotonic() + 5
    while not engine_log.cancelled and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(engine_log.cancelled) == 1 and engine_log.finished == []
    expect(page.locator("#pg-send")).to_be_enabled()


def test_images_by_file_paste_and_url_reach_the_model(browser: Browser, fault_site: str,
                                                      engine_log: EngineLog) -> None:
    page = _page(browser)
    _sign_in(page, fault_site, MASTER_KEY)
    page.select_option("#pg-model", "vl-stream")
    page.set_input_files("#pg-file", files=[{"name": "dot.png", "mimeType": "image/png",
                                             "buffer": PNG}])
    expect(page.locator("#pg-images img")).to_have_attribute("alt", "dot.png")
    page.fill("#pg-image-url", "https://example.com/cat.jpg")
    page.click("#pg-add-url")
    expect(page.locator("#pg-images .url-chip")).to_contain_text("example.com/cat.jpg")
    page.fill("#pg-input", "What is in these?")
    page.click("#pg-send")
    expect(page.locator(".message.assistant .answer").last).to_have_text("t0 t1 t2 t3 t4 ")
    parts = engine_log.received[-1]["messages"][-1]["content"]
    assert parts[0] == {"type": "text", "text": "What is in these?"}
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert parts[2]["image_url"]["url"] == "https://example.com/cat.jpg"
    assert page.locator("#pg-images figure").count() == 0  # sent: the tray is empty again


def test_console_keys_usage_and_live_replicas(browser: Browser, embedded: TramUp) -> None:
    httpx.post(embedded.url + "/v1/chat/completions", headers=AUTH, timeout=60, json={
        "model": "qwen-text", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]})
    page = _page(browser)
    polls: list[str] = []
    page.on("request", lambda request: polls.append(request.url)
            if request.url.endswith("/admin/models") else None)
    _sign_in(page, embedded.url, MASTER_KEY)
    page.click("#tab-console")
    page.click("#key-create summary")
    page.fill("#key-name", "console-billing")
    page.fill("#key-owner", "team-a")
    page.fill("#key-rpm", "60")
    page.click("#key-form button[type=submit]")
    secret = page.locator("#key-secret-value")
    expect(secret).to_have_text(re.compile(r"^sk-"))
    key = secret.text_content() or ""
    assert httpx.get(embedded.url + "/v1/models",
                     headers={"Authorization": f"Bearer {key}"}).status_code == 200
    row = page.locator("#keys-table tbody tr", has_text="console-billing")
    expect(row).to_contain_text("rpm=60")
    page.fill("#key-search", "no-such-key")
    expect(page.locator("#keys-table tbody tr")).to_have_count(0)
    page.fill("#key-search", "console-bill")
    row.get_by_role("button", name="Edit key console-billing").click()
    page.fill("#keys-table input[name=rpm]", "120")
    page.click("#keys-table button[type=submit]")
    expect(row).to_contain_text("rpm=120")
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Revoke").click()
    expect(row).to_contain_text("revoked")
    assert httpx.get(embedded.url + "/v1/models",
                     headers={"Authorization": f"Bearer {key}"}).status_code == 401
    expect(page.locator("#usage-chart svg rect").first).to_be_attached()
    expect(page.locator("#usage-models tbody tr", has_text="qwen-text")).to_be_visible()
    expect(page.locator("#usage-keys tbody tr", has_text="master key")).to_be_visible()
    expect(page.locator("#models-table tbody tr", has_text="qwen-text")).to_contain_text("healthy")
    page.wait_for_timeout(4500)
    assert len(polls) >= 3  # the replicas table keeps itself up to date


def test_batches_and_their_progress_for_each_key(browser: Browser, gateway: GatewayFactory,
                                                fault_engine_server: tuple[str, EngineLog]
                                                ) -> None:
    from tests.support.batches import chat_lines, start_batch

    slow = {"name": "slow", "upstreams": [{"url": fault_engine_server[0],
                                           "served_name": "delay-json"}]}
    with gateway(models=[slow], batches={"poll_interval": 0.2, "max_concurrency": 1}) as url:
        made = httpx.post(url + "/admin/keys", headers=AUTH, json={"name": "nightly"}).json()
        owner = {"Authorization": f"Bearer {made['key']}"}
        batch = start_batch(url, owner, chat_lines(12, "slow", delay=0.25))
        page = _page(browser)
        _sign_in(page, url, made["key"])
        page.click("#tab-batches")
        row = page.locator(f"#batches-table tr[data-batch-id='{batch['id']}']")
        expect(row).to_contain_text("in progress")
        expect(row).to_contain_text("/v1/chat/completions")
        expect(row.locator("progress")).to_have_attribute("max", "12")
        expect(page.locator("#batches-all-wrap")).to_be_hidden()  # its own batches only
        expect(row).to_contain_text("12/12 done · 0 failed", timeout=30_000)  # refreshed live
        expect(row).to_contain_text("completed")
        page.select_option("#lang", "vi")
        expect(row).to_contain_text("đã xong")

        master = _page(browser)
        _sign_in(master, url, MASTER_KEY)
        master.click("#tab-batches")
        expect(master.locator("#batches-empty")).to_be_visible()  # the master key made none
        master.check("#batches-all")  # an administrator sees every key's
        every = master.locator(f"#batches-table tr[data-batch-id='{batch['id']}']")
        expect(every).to_contain_text(made["id"])
        expect(master.locator("#batches-key-col")).to_be_visible()


@pytest.mark.parametrize("view", ["playground", "batches", "console"])
def test_a_phone_width_and_a_label_for_every_control(browser: Browser, embedded: TramUp,
                                                    view: str) -> None:
    page = _page(browser, viewport={"width": 375, "height": 812}, is_mobile=True)
    _sign_in(page, embedded.url, MASTER_KEY)
    page.click(f"#tab-{view}")
    expect(page.locator(f"#{view}")).to_be_visible()
    page.wait_for_timeout(500)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, select, textarea')]
        .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
        .map((el) => el.id || el.name)""")
    assert unlabelled == []
    # The keyboard alone: the first control of the view takes focus from the tab.
    page.focus(f"#tab-{view}")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.tagName") in ("BUTTON", "SELECT", "INPUT",
                                                                "TEXTAREA", "SUMMARY", "A")


def test_thinking_is_asked_for_and_the_reasoning_shown_folded(browser: Browser,
                                                              settings: Settings) -> None:
    log = RouteLog()
    with serve_app(route_engine(log)) as engine:
        models = [{"name": "qwen-think", "upstreams": [{"url": engine + "/v1",
                                                        "served_name": "qwen3"}]}]
        with serve_app(create_app(settings, parse_config({"models": models}, "t"))) as url:
            page = _page(browser)
            _sign_in(page, url, MASTER_KEY)
            page.check("#pg-thinking")
            page.fill("#pg-input", "Why is the sky blue?")
            page.click("#pg-send")
            answer = page.locator(".message.assistant").last
            expect(answer.locator(".answer")).to_have_text("route engine answer")
            reasoning = answer.locator("details.reasoning")
            expect(reasoning).to_be_visible()
            assert reasoning.get_attribute("open") is None  # folded until opened
            expect(reasoning.locator("p")).to_have_text("thinking it over")
            reasoning.locator("summary").click()
            expect(reasoning.locator("p")).to_be_visible()
    sent = log.bodies("/v1/chat/completions")[-1]
    assert sent["chat_template_kwargs"] == {"enable_thinking": True}


def test_a_tab_chosen_while_the_playground_loads_stays_chosen(browser: Browser,
                                                              embedded: TramUp) -> None:
    page = _page(browser)
    held: list[Route] = []
    page.route("**/v1/models", lambda route: held.append(route))  # noqa: PLW0108 - a bound builtin is refused
    _sign_in(page, embedded.url, MASTER_KEY)
    page.click("#tab-batches")
    expect(page.locator("#batches")).to_be_visible()
    page.wait_for_timeout(200)
    assert held, "the playground asks for its models at sign-in"
    held[0].continue_()
    expect(page.locator("#pg-model option")).not_to_have_count(0)  # the playground loaded
    expect(page.locator("#batches")).to_be_visible()
    expect(page.locator("#playground")).to_be_hidden()
