"""In a real browser (Playwright driving Debian's chromium): a read-only share link's page watches
the owner's turn live, without reloading: first the working bubble, then the answer, within 2 s
of the owner's page showing it.

Both pages record in the page when they first showed each state (one browser, one clock), so
the delay is measured where a person would see it. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, sync_playwright

from tests.app_process import running_app
from tests.test_browser import ARGS, ARTIFACTS, CHROMIUM, TIMEOUT_MS, images_in_chat, send

pytestmark = pytest.mark.system

#: Polls the chat every 50 ms and keeps the first time (ms since the epoch) it showed a working
#: bubble and at least ``images`` images: one clock for both pages of the browser. Run again, it
#: starts over (bench/live_view.py records one turn after another).
RECORD_JS = """(images) => {
  if (window.retouchRecorder) { clearInterval(window.retouchRecorder); }
  window.retouchSeen = {};
  const started = Date.now();
  window.retouchRecorder = setInterval(() => {
    const chat = document.querySelector('#chat');
    if (!chat) { return; }
    const now = Date.now();
    if (!window.retouchSeen.working && chat.innerText.includes('Your message is saved')) {
      window.retouchSeen.working = now;
    }
    if (!window.retouchSeen.answer && chat.querySelectorAll('img').length >= images) {
      window.retouchSeen.answer = now;
    }
  }, 50);
  return started;
}"""


def seen(page: Page, what: str) -> float:
    page.wait_for_function(f"() => window.retouchSeen && window.retouchSeen.{what}", timeout=TIMEOUT_MS)
    return float(page.evaluate(f"() => window.retouchSeen.{what}"))


def test_a_view_link_shows_the_owners_new_turn_working_then_answered_within_2_s(tmp_path, emulator):
    assert CHROMIUM.exists(), (
        "Debian's chromium is missing: `make test` installs it (apt-get install chromium)"
    )
    ARTIFACTS.mkdir(exist_ok=True)
    with running_app(tmp_path / "data", emulator.url) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        owner = browser.new_context(viewport={"width": 1500, "height": 1000}).new_page()
        owner.goto(url)
        owner.wait_for_selector("#box textarea")
        send(owner, "a lighthouse at dusk", images_after=1)
        owner.click("#share-box button")
        owner.click("#share-view")
        owner.wait_for_function(
            "() => document.querySelector('#share-links').innerText.includes('?s=')", timeout=TIMEOUT_MS
        )
        link = re.search(r"(http\S+\?s=[\w-]+)", owner.locator("#share-links").inner_text()).group(1)

        watcher = browser.new_context(viewport={"width": 1500, "height": 1000}).new_page()
        failed: list[str] = []  # an event the server refused (a tick whose return Gradio rejects: a 500)
        watcher.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        watcher.goto(link)
        images_in_chat(watcher, 1)
        for page in (owner, watcher):
            page.evaluate(RECORD_JS, 2)
        emulator.queue_faults("slow:3")  # the answer takes 3 s: long enough to see the turn working
        owner.fill("#box textarea", "now warmer light")
        owner.keyboard.press("Enter")

        working = seen(watcher, "working")
        assert "now warmer light" in watcher.locator("#chat").inner_text()  # the message, before its answer
        watcher.screenshot(path=str(ARTIFACTS / "browser-live-watcher-working.png"))
        owner_answer, watcher_answer = seen(owner, "answer"), seen(watcher, "answer")
        watcher.screenshot(path=str(ARTIFACTS / "browser-live-watcher-answered.png"))
        delay_s = (watcher_answer - owner_answer) / 1000
        assert working < watcher_answer
        assert delay_s < 2.0, delay_s
        assert "Your message is saved" not in watcher.locator("#chat").inner_text()
        assert not watcher.locator("#box").is_visible()  # still the read-only view
        assert failed == []
        browser.close()
