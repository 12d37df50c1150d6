"""Signing in with Hugging Face, in a real browser, through Gradio's own OAuth routes.

The app runs as on a Space with ``hf_oauth: true`` (``SYSTEM=spaces``, ``SPACE_ID`` and the
``OAUTH_*`` variables), but listening on loopback and pointed at tests/openid.py instead of
huggingface.co: the login redirect, the code exchange, the RS256 ID token and the session cookie
are the real ones. Alice edits anonymously, signs in, is asked whether to add that conversation,
adds it, finds it on her "phone" (another browser) too; Bob never sees it; after Logout the
first browser lists only its own (now none). Screenshots go to test-artifacts/.
"""

from __future__ import annotations

from playwright.sync_api import Browser, Page, sync_playwright

from tests.app_process import running_app
from tests.openid import run_openid_provider
from tests.test_browser import ARGS, ARTIFACTS, CHROMIUM, TIMEOUT_MS, images_in_chat, send

SIGN_IN = "Sign in with Hugging Face"


def open_page(browser: Browser, url: str) -> Page:
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    page.wait_for_selector("#sign-in")
    return page


def sign_in(page: Page, username: str) -> None:
    page.click("#sign-in")  # Gradio's button: /login/huggingface -> the provider -> /login/callback -> back
    page.wait_for_function(
        f"() => document.querySelector('#sign-in')?.innerText.includes('Logout ({username})')"
    )


def listed(page: Page) -> list[str]:
    return page.locator("#conversations .caption-label, #conversations figcaption").all_inner_texts()


def test_sign_in_claims_the_browsers_conversations_and_follows_the_account(tmp_path, emulator):
    ARTIFACTS.mkdir(exist_ok=True)
    with (
        run_openid_provider() as provider,
        running_app(
            tmp_path / "data",
            emulator.url,
            SYSTEM="spaces",
            SPACE_ID="team/retouch",
            RETOUCH_HOST="127.0.0.1",  # a Space listens on every interface; a test, on loopback only
            **provider.environment(),
        ) as url,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        laptop = open_page(browser, url)
        assert laptop.inner_text("#sign-in").strip() == SIGN_IN
        send(laptop, "a red kite over the sea", images_after=1)
        laptop.wait_for_function("() => document.querySelector('#conversations img')")

        provider.next_user("alice", sub="6560a1f0c2e4b0aa11aa11aa")
        sign_in(laptop, "alice")
        laptop.wait_for_selector("#claim-box", state="visible")
        question = laptop.inner_text("#claim-box")
        assert "a conversation from before you signed in" in question and "alice" in question
        assert "still this browser" in laptop.inner_text(
            "#status"
        )  # the URL's conversation is not the account's yet
        laptop.screenshot(path=str(ARTIFACTS / "signin-question.png"), full_page=True)
        assert not laptop.query_selector("#conversations img")  # signed in: the account's list, empty so far
        laptop.click("#claim-add")
        laptop.wait_for_function(
            "() => document.querySelector('#status')?.innerText.includes('Added 1 conversation')"
        )
        laptop.wait_for_selector("#claim-box", state="hidden")
        laptop.wait_for_function("() => document.querySelector('#conversations img')")
        images_in_chat(laptop, 1)  # the conversation that was open is open again, the account's now
        laptop.screenshot(path=str(ARTIFACTS / "signin-added.png"), full_page=True)

        phone = open_page(browser, url)  # Alice on another device: a browser of its own
        assert not phone.query_selector("#conversations img")
        sign_in(phone, "alice")
        phone.wait_for_function("() => document.querySelector('#conversations img')")
        assert phone.locator("#claim-box").is_hidden()  # this browser had nothing to add

        provider.next_user("bob", sub="6560a1f0c2e4b0bb22bb22bb")
        bob = open_page(browser, url)
        sign_in(bob, "bob")
        bob.wait_for_timeout(1000)  # the page has loaded its list by now: nothing may appear
        assert not bob.query_selector("#conversations img")

        laptop.click("#sign-in")  # "Logout (alice)"
        laptop.wait_for_function(
            f"() => document.querySelector('#sign-in')?.innerText.trim() === {SIGN_IN!r}"
        )
        laptop.wait_for_timeout(1000)
        assert not laptop.query_selector("#conversations img")  # it is the account's now, not this browser's
        laptop.screenshot(path=str(ARTIFACTS / "signin-signed-out.png"), full_page=True)
        browser.close()
