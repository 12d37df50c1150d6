"""A full queue, as a visitor sees it in a real browser: told the app is busy, their message kept.

The app runs one model call at a time with room for one waiting (``RETOUCH_MODEL_CONCURRENCY=1``,
``RETOUCH_QUEUE_MAX_SIZE=1``); two slow turns sent through the API fill both. The visitor's
message then finds the queue full: Gradio refuses it (503) before any handler runs and its page
shows its own toast ("This application is currently busy. Please try again."); the submit's
``failure`` handler (not queued) says in the chat itself that the message was not taken and is
still in the box, which it is, so the same Enter once the queue has room sends it, answered as usual.
"""

from __future__ import annotations

import httpx
from playwright.sync_api import expect, sync_playwright

from chat.ui.events import NOT_TAKEN
from tests.app_process import running_app
from tests.test_browser import ARGS, ARTIFACTS, CHROMIUM, TIMEOUT_MS, images_in_chat

SLOW_S = 4
BUSY = "This application is currently busy"


def test_a_full_queue_says_busy_in_the_page_and_keeps_the_message(tmp_path, emulator):
    limits = {"RETOUCH_MODEL_CONCURRENCY": "1", "RETOUCH_QUEUE_MAX_SIZE": "1"}
    with (
        running_app(tmp_path / "data", emulator.url, **limits) as url,
        httpx.Client(base_url=url, timeout=60) as api,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.goto(url)
        page.wait_for_selector("#box textarea")

        # One turn in flight, one waiting: the queue is full.
        fillers = [
            api.post(
                "gradio_api/call/send",
                json={"data": ["", f"slow one {n} [fault:slow:{SLOW_S}]", None, None, None, "", "", ""]},
            )
            .raise_for_status()
            .json()["event_id"]
            for n in range(2)
        ]
        full = api.post(
            "gradio_api/call/send", json={"data": ["", "one too many", None, None, None, "", "", ""]}
        )
        assert full.status_code == 503, full.text

        message = "paint the boat red"
        page.fill("#box textarea", message)
        page.keyboard.press("Enter")
        expect(page.get_by_text(BUSY).first).to_be_visible(timeout=TIMEOUT_MS)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "browser-queue-full.png"))
        assert page.input_value("#box textarea") == message  # nothing lost
        expect(page.locator("#chat")).to_contain_text(NOT_TAKEN, timeout=TIMEOUT_MS)  # in the chat itself
        assert message not in page.locator("#chat").inner_text()

        for event_id in fillers:  # the queue drains: both slow turns are answered, one after the other
            answer = api.get(f"gradio_api/call/send/{event_id}", timeout=2 * SLOW_S + 30).text
            assert "event: complete" in answer, answer

        page.locator("#box textarea").press("Enter")  # the same message, sent as it was kept
        images_in_chat(page, 1)
        assert message in page.locator("#chat").inner_text()
        assert page.input_value("#box textarea") == ""
        browser.close()
