"""In a real browser (Playwright driving Debian's chromium): a running turn's progress, Stop, Retry, drafts.

- The real app process on the emulator, whose answer is held (a queued ``slow`` fault): the pending
  bubble names the model and its elapsed time ticks in the page; Stop leaves the message and a
  stopped answer, the box stays usable, the chat's Retry answers.
- Drafts: the real UI (``build_ui``) launched in this process on a provider that reports two
  drafts and waits between them: each draft is shown, labelled "Draft n of 2", and the final image
  replaces it.
- Real streamed drafts: the app process on the emulator with ``gemini-3-pro-image`` (streaming on,
  as by default), whose answer drips (a queued ``drip`` fault): the thoughts in a "Thinking" box,
  the thought image the emulator sent shown as a draft, then the final image in its place; the
  stored turn has that one image as its version, the draft none.

Screenshots are kept in ``test-artifacts/`` for a human to look at.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import gradio as gr
import pytest
from playwright.sync_api import Page, sync_playwright
from pydantic import SecretStr

from chat.conversation.service import ChatService
from chat.domain import (
    GenerationOptions,
    ImageData,
    ImagePart,
    Phase,
    Progress,
    ProgressSink,
    ProviderReply,
    Turn,
)
from chat.sharing.library import ConversationLibrary
from chat.ui import build_ui
from storage import DiskBlobStore
from tests.app_process import free_port, running_app
from tests.chat.ui.test_events import CONFIG
from tests.fakes import FakeProvider, migrated_engine, reply_with_image, single_try
from tests.pictures import png
from tests.test_browser import ARGS, ARTIFACTS, CHROMIUM, TIMEOUT_MS

pytestmark = pytest.mark.system
MODEL = "gemini-3-pro-image"


def chat_has(page: Page, text: str) -> None:
    page.wait_for_function(
        "(text) => document.querySelector('#chat').innerText.includes(text)", arg=text, timeout=TIMEOUT_MS
    )


def elapsed_seconds(page: Page) -> int:
    return int(page.locator("#chat .retouch-elapsed").first.inner_text().split()[0])


@pytest.fixture
def browser_page() -> Iterator[Page]:
    assert CHROMIUM.exists(), (
        "Debian's chromium is missing: `make test` installs it (apt-get install chromium)"
    )
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield browser.new_context(viewport={"width": 1500, "height": 1000}).new_page()
        browser.close()


def test_the_pending_bubble_ticks_stop_keeps_the_message_and_retry_answers(tmp_path, emulator, browser_page):
    page = browser_page
    with running_app(tmp_path / "data", emulator.url) as url:
        page.goto(url)
        page.wait_for_selector("#box textarea")
        assert not page.locator("#stop").is_visible()
        emulator.queue_faults("slow:60")  # the first answer is held a minute: Stop ends it
        page.fill("#box textarea", "a lighthouse at dusk")
        page.keyboard.press("Enter")
        chat_has(page, "Editing with gemini-3.1-flash-image")
        page.wait_for_selector("#stop", state="visible", timeout=TIMEOUT_MS)
        first = elapsed_seconds(page)
        # The seconds go on in the page (nothing new came from the server meanwhile).
        page.wait_for_function(
            f"() => parseInt(document.querySelector('#chat .retouch-elapsed').innerText) >= {first + 2}",
            timeout=TIMEOUT_MS,
        )
        page.screenshot(path=str(ARTIFACTS / "browser-progress-pending.png"))

        page.click("#stop")
        chat_has(page, "You stopped this answer")
        page.wait_for_selector("#stop", state="hidden", timeout=TIMEOUT_MS)
        text = page.locator("#chat").inner_text()
        assert "a lighthouse at dusk" in text and "Editing with" not in text
        page.screenshot(path=str(ARTIFACTS / "browser-progress-stopped.png"))

        page.locator("#chat button[aria-label='Retry']").last.click()
        page.wait_for_function("() => document.querySelectorAll('#chat img').length >= 1", timeout=TIMEOUT_MS)
        chat_has(page, "v1 \u00b7 Gemini")
        assert not page.locator("#stop").is_visible()
        # The box is usable again: a second message is answered too.
        page.fill("#box textarea", "now warmer light")
        page.keyboard.press("Enter")
        page.wait_for_function("() => document.querySelectorAll('#chat img').length >= 2", timeout=TIMEOUT_MS)
        page.screenshot(path=str(ARTIFACTS / "browser-progress-retried.png"))


class TwoDrafts(FakeProvider):
    """Reports thinking, then a draft each time the test says so, then the final answer."""

    def __init__(self) -> None:
        super().__init__()
        self.next = threading.Semaphore(0)  # released by the test thread, awaited on Gradio's loop
        self.drafts = [
            ImageData(png((220, 60, 60), (320, 240)), "image/png", thought=True),
            ImageData(png((60, 160, 220), (320, 240)), "image/png", thought=True),
        ]

    async def reply(
        self,
        history: Sequence[Turn],
        options: GenerationOptions,
        load_image: Callable[[ImagePart], bytes],
        *,
        api_key: SecretStr | None = None,
        progress: ProgressSink | None = None,
    ) -> ProviderReply:
        assert progress is not None
        thoughts = "Composing a lighthouse on a cliff"
        progress(Progress("gemini", Phase.THINKING, MODEL, thoughts=thoughts))
        for count in (1, 2):
            await asyncio.to_thread(self.next.acquire)
            drafts = tuple(self.drafts[:count])
            progress(
                Progress("gemini", Phase.DRAFT, MODEL, thoughts=thoughts, drafts=drafts, drafts_expected=2)
            )
        await asyncio.to_thread(self.next.acquire)
        return reply_with_image(png((40, 140, 70), (320, 240)), text="Here is your lighthouse.")


@pytest.fixture
def drafting_app(tmp_path: Path) -> Iterator[tuple[str, TwoDrafts]]:
    provider = TwoDrafts()
    engine = migrated_engine(tmp_path / "data")
    blobs = DiskBlobStore(tmp_path / "data" / "images")
    service = ChatService(engine=engine, blobs=blobs, policy=single_try(provider))
    library = ConversationLibrary(engine=engine, blobs=blobs, gate=service.gate)
    demo: gr.Blocks = build_ui(service, library, CONFIG)
    demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        yield demo.local_url, provider
    finally:
        for _ in range(3):
            provider.next.release()  # a provider left waiting lets its worker thread go
        demo.close()
        engine.dispose()


def test_drafts_are_labelled_and_the_final_image_replaces_them(drafting_app, browser_page):
    url, provider = drafting_app
    page = browser_page
    page.goto(url)
    page.wait_for_selector("#box textarea")
    page.wait_for_load_state("networkidle")  # the page's load events done: the box is wired
    page.fill("#box textarea", "a lighthouse")
    page.keyboard.press("Enter")
    chat_has(page, "Gemini is thinking")
    chat_has(page, "Thinking")

    for count in (1, 2):
        provider.next.release()
        label = f"Draft {count} of 2 \u2014 the final image replaces it"
        # Gradio 6.31's chat drops an image's alt text (alt=""), so the caption under it says what it is.
        sha = hashlib.sha256(provider.drafts[count - 1].data).hexdigest()
        page.wait_for_selector(f"#chat img[src*='draft-{sha}']", timeout=TIMEOUT_MS)
        chat_has(page, f"Gemini: draft {count} of 2")
        chat_has(page, label)
        assert page.locator("#chat img").count() == 1  # the newest draft only
        page.screenshot(path=str(ARTIFACTS / f"browser-draft-{count}.png"))

    provider.next.release()
    chat_has(page, "Here is your lighthouse.")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#chat img')].some(i => !i.src.includes('draft-'))",
        timeout=TIMEOUT_MS,
    )
    text = page.locator("#chat").inner_text()
    assert "Draft" not in text and "Gemini is thinking" not in text
    assert page.locator("#chat img").count() == 1
    page.screenshot(path=str(ARTIFACTS / "browser-draft-final.png"))


def test_a_streamed_pro_answer_shows_thinking_then_its_draft_then_the_final_image(
    tmp_path, emulator, browser_page
):
    page = browser_page
    with running_app(tmp_path / "data", emulator.url, GEMINI_MODEL=MODEL) as url:
        page.goto(url)
        page.wait_for_selector("#box textarea")
        page.wait_for_load_state("networkidle")
        emulator.queue_faults("drip:1")  # a second between chunks: each phase stays on screen a while
        page.fill("#box textarea", "a lighthouse on a cliff")
        page.keyboard.press("Enter")
        chat_has(page, "Gemini is thinking")
        chat_has(page, "Thinking")
        # The emulator's first thought piece, in the box (in the DOM; the screenshot may catch the box mid-opening).
        page.locator("#chat").get_by_text("Planning the edit").first.wait_for(timeout=TIMEOUT_MS)
        assert page.locator("#chat img").count() == 0
        page.screenshot(path=str(ARTIFACTS / "browser-stream-thinking.png"))

        page.wait_for_selector("#chat img[src*='draft-']", timeout=TIMEOUT_MS)
        chat_has(page, "Draft 1 \u2014 the final image replaces it")
        chat_has(page, "Gemini: draft 1")
        (request,) = emulator.requests()
        assert request["path"].endswith(f"{MODEL}:streamGenerateContent") and request["query"] == {
            "alt": "sse"
        }
        (sent,) = request["drafts"]  # Pro sends one thought image: the one the page shows
        assert f"draft-{sent['sha256']}" in page.locator("#chat img").first.get_attribute("src")
        assert page.locator("#chat img").count() == 1
        page.screenshot(path=str(ARTIFACTS / "browser-stream-draft.png"))

        page.wait_for_selector("#stop", state="hidden", timeout=TIMEOUT_MS)
        chat_has(page, "v1 \u00b7 Gemini")
        assert emulator.requests()[0]["stream"] == "complete"
        final_only(page)
        page.screenshot(path=str(ARTIFACTS / "browser-stream-final.png"))

        page.reload()  # the stored turn, as it opens again: the final image is its one version
        page.wait_for_selector("#chat img", timeout=TIMEOUT_MS)
        chat_has(page, "Thinking")
        chat_has(page, "keeping the composition")  # the stored thoughts, whole
        final_only(page)
        page.screenshot(path=str(ARTIFACTS / "browser-stream-reopened.png"))


def final_only(page: Page) -> None:
    """The answer's image alone, as v1: no draft, no second version, nothing pending."""
    page.wait_for_function(
        "() => document.querySelector('#summary').innerText.includes('1 version')", timeout=TIMEOUT_MS
    )
    text = page.locator("#chat").inner_text()
    assert "Draft" not in text and "is thinking" not in text and "v2" not in text
    images = page.locator("#chat img")
    assert images.count() == 1 and "draft-" not in images.first.get_attribute("src")
