"""Variants in a real browser (Playwright driving Debian's chromium, the app on the emulator):
Variants = 4 shows the cost x 4 before sending, the four answers side by side, "Use this" on
v1c marks it, and the next edit replays v1c only. Screenshots go to ``test-artifacts/``."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.app_process import running_app
from tests.test_browser import ARGS, ARTIFACTS, CHROMIUM, TIMEOUT_MS, images_in_chat, photo  # noqa: F401


def test_four_variants_side_by_side_use_this_and_the_next_edit(tmp_path: Path, emulator, photo: Path) -> None:  # noqa: F811
    assert CHROMIUM.exists(), (
        "Debian's chromium is missing: `make test` installs it (apt-get install chromium)"
    )
    ARTIFACTS.mkdir(exist_ok=True)
    with running_app(tmp_path / "data", emulator.url) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        page = browser.new_context(viewport={"width": 1500, "height": 1300}).new_page()
        page.goto(url)
        page.wait_for_selector("#box textarea")
        number = page.locator("#variants input[type=number]")
        number.fill("4")
        number.press("Enter")
        page.wait_for_function(
            "() => document.querySelector('#variants-cost').innerText.includes('4 variants: up to')",
            timeout=TIMEOUT_MS,
        )
        page.locator("#box input[type=file]").set_input_files(str(photo))
        page.wait_for_selector("#box img", timeout=TIMEOUT_MS)
        page.fill("#box textarea", "make the sky stormy")
        page.keyboard.press("Enter")
        images_in_chat(page, 5)  # the photo and four variants
        page.wait_for_function(
            "() => document.querySelectorAll('#variants-grid img').length >= 4", timeout=TIMEOUT_MS
        )
        chat = page.locator("#chat").inner_text()
        assert all(f"v1{letter}" in chat for letter in "abcd")
        assert page.locator("#variant-pick input:checked").evaluate("e => e.value") in ("1", "v1a")
        page.locator("#variants-grid").scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "browser-variants-grid.png"), full_page=True)

        page.locator("#variant-pick label", has_text="v1c").click()
        page.wait_for_function(
            "() => [...document.querySelectorAll('#variants-grid *')].some(e => e.innerText"
            " && e.innerText.startsWith('v1c') && e.innerText.includes('used next'))",
            timeout=TIMEOUT_MS,
        )
        page.screenshot(path=str(ARTIFACTS / "browser-variants-use-this.png"), full_page=True)

        number.fill("1")
        number.press("Enter")
        emulator.clear_requests()
        page.fill("#box textarea", "now darker")
        page.keyboard.press("Enter")
        images_in_chat(page, 6)
        page.screenshot(path=str(ARTIFACTS / "browser-variants-next-edit.png"), full_page=True)
        browser.close()

    contents = emulator.requests()[-1]["body"]["contents"]
    assert len([c for c in contents if c["role"] == "model"]) == 1  # v1c only, not all four
