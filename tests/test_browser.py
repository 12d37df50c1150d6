"""In a real browser (Playwright driving Debian's chromium): edit, reload, share read-only.

Screenshots are kept in ``test-artifacts/`` for a human to look at.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from playwright.sync_api import Page, Route, sync_playwright

from tests.app_process import running_app

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 30_000


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    image = Image.new("RGB", (800, 600), (135, 190, 235))
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, 400, 800, 600], fill=(90, 90, 90))
    draw.rectangle([300, 330, 480, 420], fill=(200, 30, 30))
    path = tmp_path / "street.jpg"
    image.save(path, quality=92)
    return path


def images_in_chat(page: Page, at_least: int) -> None:
    page.wait_for_function(
        f"() => document.querySelectorAll('#chat img').length >= {at_least}", timeout=TIMEOUT_MS
    )


def send(page: Page, text: str, images_after: int) -> None:
    page.fill("#box textarea", text)
    page.keyboard.press("Enter")
    images_in_chat(page, images_after)


def test_edit_reload_and_open_a_read_only_share_link(tmp_path, emulator, photo):
    assert CHROMIUM.exists(), (
        "Debian's chromium is missing: `make test` installs it (apt-get install chromium)"
    )
    ARTIFACTS.mkdir(exist_ok=True)
    with running_app(tmp_path / "data", emulator.url) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        owner = browser.new_context(viewport={"width": 1500, "height": 1100}).new_page()
        owner.goto(url)
        owner.wait_for_selector("#box textarea")
        owner.locator("#box input[type=file]").set_input_files(str(photo))
        owner.wait_for_selector("#box img", timeout=TIMEOUT_MS)  # the attachment preview
        send(owner, "make the sky stormy", images_after=2)
        send(owner, "now remove the car", images_after=3)
        assert "?c=" in owner.url

        owner.reload()
        images_in_chat(owner, 3)
        assert "now remove the car" in owner.locator("#chat").inner_text()
        owner.screenshot(path=str(ARTIFACTS / "browser-owner-after-reload.png"))

        # "My conversations" opens a conversation from its tile (the tile ids are kept in the page).
        owner.click("#new-conversation")
        owner.wait_for_function(
            "() => document.querySelectorAll('#chat img').length === 0", timeout=TIMEOUT_MS
        )
        owner.locator("#conversations img").first.click()
        images_in_chat(owner, 3)

        owner.click("#share-box button")
        owner.click("#share-view")
        owner.wait_for_function(
            "() => document.querySelector('#share-links').innerText.includes('?s=')", timeout=TIMEOUT_MS
        )
        link = re.search(r"(http\S+\?s=[\w-]+)", owner.locator("#share-links").inner_text()).group(1)

        teammate = browser.new_context(viewport={"width": 1500, "height": 1100}).new_page()
        teammate.goto(link)
        images_in_chat(teammate, 3)
        teammate.screenshot(path=str(ARTIFACTS / "browser-read-only-share.png"))
        assert "now remove the car" in teammate.locator("#chat").inner_text()
        assert not teammate.locator("#box").is_visible()
        assert teammate.locator("#readonly-banner").is_visible()
        assert not teammate.locator("#owner-tools").is_visible()
        for writers_only in ("#keys-box", "#painter-box", "#turn-options"):
            assert not teammate.locator(writers_only).is_visible(), writers_only
        assert teammate.locator("#versions-box").is_visible()  # the history's versions, to compare
        assert teammate.locator("#duplicate").is_visible()
        teammate.click("#duplicate")  # a copy of one's own: everything to edit it is back
        teammate.wait_for_selector("#turn-options", state="visible", timeout=TIMEOUT_MS)
        assert teammate.locator("#keys-box").is_visible() and teammate.locator("#box").is_visible()

        # A failure is a clear sentence in the chat; markup in a prompt is shown, never run.
        dialogs: list[str] = []
        owner.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        owner.fill(
            "#box textarea", "<img src=x onerror=alert(1)> warmer [fault:gemini:503] [fault:openai:503]"
        )
        owner.keyboard.press("Enter")
        owner.wait_for_function(
            "() => document.querySelector('#chat').innerText.includes('Tried OpenAI too')", timeout=TIMEOUT_MS
        )
        owner.screenshot(path=str(ARTIFACTS / "browser-failure-message.png"))
        chat_text = owner.locator("#chat").inner_text()
        assert "Gemini is unavailable right now" in chat_text and "Traceback" not in chat_text
        assert dialogs == []
        browser.close()


def test_rotate_in_the_versions_panel_adds_a_local_version_at_once(tmp_path, emulator, photo):
    """Quick edit: one click on Rotate right makes "v2 · rotate 90° right (local)", shown in the
    versions list and the chat, without a model call."""
    ARTIFACTS.mkdir(exist_ok=True)
    with running_app(tmp_path / "data", emulator.url) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        page = browser.new_context(viewport={"width": 1500, "height": 1100}).new_page()
        page.goto(url)
        page.wait_for_selector("#box textarea")
        page.locator("#box input[type=file]").set_input_files(str(photo))
        page.wait_for_selector("#box img", timeout=TIMEOUT_MS)
        send(page, "make the sky stormy", images_after=2)
        emulator.clear_requests()

        page.click("#versions-box button")  # open the Versions panel
        page.click("#rotate-right")
        images_in_chat(page, 3)
        page.wait_for_function(
            "() => document.querySelector('#chat').innerText.includes('rotate 90\u00b0 right (local)')",
            timeout=TIMEOUT_MS,
        )
        page.locator("#version-choice input").click()
        options = page.locator("[role=option]")
        options.last.wait_for(timeout=TIMEOUT_MS)
        labels = options.all_inner_texts()
        page.screenshot(path=str(ARTIFACTS / "browser-quick-edit-rotate.png"))
        page.keyboard.press("Escape")
        # the chosen one (the new version) is ticked
        assert labels[-1].split("\n")[-1] == "v2 \u00b7 rotate 90\u00b0 right (local)", labels
        assert emulator.requests() == []  # no model was asked
        newest = page.locator("#chat img").last
        box = newest.evaluate("img => [img.naturalWidth, img.naturalHeight]")
        assert box[0] < box[1]  # the 800×600 answer, now upright-portrait

        page.click("#quick-undo")  # "Undo: edit from v1": one click, a new branch from v1
        page.wait_for_function(
            "() => document.querySelector('#status').innerText.includes('starts from v1')", timeout=TIMEOUT_MS
        )
        page.wait_for_function(  # the branch's chat: v1 only
            "() => !document.querySelector('#chat').innerText.includes('rotate')", timeout=TIMEOUT_MS
        )
        assert emulator.requests() == []
        browser.close()


def test_the_box_opens_once_the_page_has_loaded(tmp_path, emulator):
    """A message typed before the page's load event answered was answered, then drawn over by the
    late load's empty view and owned by another fresh browser id: gone from the chat and from the
    list. The load's requests are held here (a slow link), so the box must wait for them."""
    with running_app(tmp_path / "data", emulator.url) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        held: list[Route] = []  # the page's unqueued events (its load among them), not answered yet

        def hold(route: Route) -> None:
            if holding:
                held.append(route)
            else:
                route.continue_()

        holding = True
        page.route("**/run/predict*", hold)
        with page.expect_request("**/run/predict*"):
            page.goto(url)
        page.wait_for_selector("#box textarea")
        assert page.locator("#box textarea").is_disabled()
        holding = False
        for route in held:
            route.continue_()
        send(page, "a red kite over the sea", images_after=1)
        page.wait_for_function("() => document.querySelector('#conversations img')", timeout=TIMEOUT_MS)
        images_in_chat(page, 1)  # still there once every load event has answered
        browser.close()
