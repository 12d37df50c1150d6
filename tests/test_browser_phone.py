"""Phones and the window's height, in Chromium: a 390x844 touch screen, and a desktop window.

On the phone the chat and the message box come first, the box reachable without scrolling,
"My conversations" closed until its toggle opens it (and closed again by a pick), the panels
under the chat, the painter at the full width. On the desktop the sidebar is open and the chat
takes the window's height. Screenshots go to test-artifacts/phone-*.png and desktop-*.png.
"""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, Page, sync_playwright

from tests.app_process import running_app
from tests.test_browser import ARGS, ARTIFACTS, CHROMIUM, TIMEOUT_MS, images_in_chat, photo, send

__all__ = ["photo"]  # the fixture, from tests/test_browser.py

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1500, "height": 1000}


def open_page(browser: Browser, url: str, viewport: dict[str, int], *, phone: bool) -> Page:
    context = browser.new_context(
        viewport=viewport, is_mobile=phone, has_touch=phone, device_scale_factor=2 if phone else 1
    )
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    page.wait_for_selector("#box textarea")
    return page


def sidebar_open(page: Page) -> bool:
    return bool(page.evaluate("() => document.querySelector('#library-sidebar').classList.contains('open')"))


def box_of(page: Page, selector: str) -> dict[str, float]:
    box = page.locator(selector).bounding_box()
    assert box is not None, selector
    return box


def test_on_a_phone_the_chat_and_the_box_come_first_and_the_panels_fold(
    tmp_path: Path, emulator, photo: Path
):
    ARTIFACTS.mkdir(exist_ok=True)
    with running_app(tmp_path / "data", emulator.url) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        page = open_page(browser, url, PHONE, phone=True)
        page.wait_for_function("() => !document.querySelector('#library-sidebar').classList.contains('open')")
        box = box_of(page, "#box")
        assert box["y"] + box["height"] <= PHONE["height"]  # the box is on the first screen, no scrolling
        assert box_of(page, "#chat")["y"] < box["y"]
        assert (
            page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
        )  # nothing sideways
        page.screenshot(path=str(ARTIFACTS / "phone-start.png"))

        page.locator("#box input[type=file]").set_input_files(str(photo))
        page.wait_for_selector("#box img")
        send(page, "make the sky stormy", images_after=2)
        box = box_of(page, "#box")
        assert box["y"] + box["height"] <= PHONE["height"]  # still on screen with an answer in the chat
        page.screenshot(path=str(ARTIFACTS / "phone-answered.png"))

        page.click("#library-sidebar .toggle-button")  # "My conversations" opens over the page
        page.wait_for_selector("#conversations .thumbnail-item")
        assert sidebar_open(page)
        page.wait_for_function(
            "() => document.querySelector('#library-sidebar').getBoundingClientRect().left >= 0"
        )
        page.screenshot(path=str(ARTIFACTS / "phone-conversations.png"))  # slid in: the list over the page
        page.click("#new-conversation")  # a pick closes it again: the new, empty chat shows
        page.wait_for_function("() => !document.querySelector('#library-sidebar').classList.contains('open')")
        page.click("#library-sidebar .toggle-button")
        page.click("#conversations .thumbnail-item")
        page.wait_for_function("() => !document.querySelector('#library-sidebar').classList.contains('open')")
        images_in_chat(page, 2)

        # The panels are under the chat; the painter opens at the full width with the latest image.
        panels = box_of(page, "#panels")
        assert panels["y"] >= box_of(page, "#box")["y"]
        page.click("#painter-box button.label-wrap")
        page.wait_for_selector("#painter canvas")
        painter = box_of(page, "#painter")
        # The page's width less the sidebar's toggle and the margins; the painter fills it.
        assert panels["width"] >= 0.8 * PHONE["width"] and painter["width"] >= 0.9 * panels["width"]
        page.locator("#painter").scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "phone-painter.png"))

        desk = open_page(browser, url, DESKTOP, phone=False)
        assert sidebar_open(desk)
        chat, desk_box = box_of(desk, "#chat"), box_of(desk, "#box")
        assert chat["height"] >= 0.6 * DESKTOP["height"]  # the window's height, not a fixed 640 px
        assert desk_box["y"] + desk_box["height"] <= DESKTOP["height"]
        desk.screenshot(path=str(ARTIFACTS / "desktop-window-height.png"))
        browser.close()
