"""Hugging Face sign-in, offline: the page's handlers with Gradio's OAuth profile injected
(``gr.OAuthProfile``, as Gradio builds it from the signed session cookie on a Space)."""

from __future__ import annotations

import gradio as gr
import pytest

from chat.config import Settings
from chat.sharing.access import ACCOUNT_PREFIX, account_owner_id
from chat.sharing.library import ConversationLibrary
from chat.ui.events import Handlers
from chat.ui.files import FileMaker
from chat.ui.layout import build_layout
from chat.ui.library_events import LibraryHandlers
from chat.ui.signin_events import SignInHandlers
from tests.chat.ui.test_events import CONFIG, MATE, OWNER, submit
from tests.fakes import FakeRequest, reply_with_image
from tests.pictures import png


def profile(**claims: str) -> gr.OAuthProfile:
    """As Gradio builds it from the session's OpenID userinfo (it requires these four claims)."""
    user = claims.get("preferred_username", "someone")
    return gr.OAuthProfile(
        {"name": user.title(), "profile": f"https://huggingface.co/{user}", "picture": "", **claims}
    )


ALICE = profile(sub="65a1f0c2e4b0aa11", preferred_username="alice")
BOB = profile(sub="65a1f0c2e4b0bb22", preferred_username="bob")
PHONE = "phone-cccccccccccccccccccc"
SPACE_OAUTH = {
    "OAUTH_CLIENT_ID": "client",
    "OAUTH_CLIENT_SECRET": "secret",
    "OAUTH_SCOPES": "openid profile",
    "OPENID_PROVIDER_URL": "https://huggingface.co",
}  # Alice's other device: another browser id


@pytest.fixture
def signed(service, library: ConversationLibrary, tmp_path, monkeypatch):
    monkeypatch.setenv("SYSTEM", "spaces")  # the button is made on a Space only (Settings.sign_in)
    monkeypatch.setenv("SPACE_ID", "team/retouch")
    for name, value in SPACE_OAUTH.items():  # what a Space with hf_oauth sets (Gradio reads them at import)
        monkeypatch.setattr(f"gradio.oauth.{name}", value)
    with gr.Blocks():
        ui = build_layout(
            CONFIG.default_model, CONFIG.default_openai_model, browser_secret="s" * 32, sign_in=True
        )
    files = FileMaker(service.image_path, tmp_path / "files")
    page = Handlers(service, library, CONFIG, ui, files)
    assert ui.signin is not None
    signin = SignInHandlers(page, library, ui.signin)
    return ui, page, LibraryHandlers(page, service, library, files), signin


async def titles(ui, page: Handlers, browser: str, profile: gr.OAuthProfile | None) -> list[str]:
    view = await page.on_load(browser, FakeRequest(), profile)
    return [title for _, title in view[ui.library.gallery]]


async def edit(page: Handlers, provider, text: str, browser: str, profile: gr.OAuthProfile | None = None):
    provider.queue.append(reply_with_image(png((9, 9, 9))))
    return (await submit(page, text, owner=browser, profile=profile))[-1]


def test_the_sign_in_button_is_only_on_a_space_with_oauth():
    space = {"SYSTEM": "spaces", "SPACE_ID": "team/retouch", **SPACE_OAUTH}
    assert Settings().sign_in(space)
    assert not Settings().sign_in({})  # a laptop, Docker: nobody to sign in with
    assert not Settings().sign_in(
        {"SYSTEM": "spaces", "SPACE_ID": "team/retouch"}
    )  # a Space without hf_oauth
    with gr.Blocks():
        assert build_layout("m", "gpt-image-2", browser_secret="s" * 32).signin is None


def test_an_account_owner_id_comes_only_from_a_profile():
    assert account_owner_id(ALICE) == ACCOUNT_PREFIX + "65a1f0c2e4b0aa11"
    assert account_owner_id(profile(preferred_username="carol")) == "hf:carol"
    assert account_owner_id(None) is None
    assert account_owner_id(profile(sub="../x y", preferred_username="x y")) is None
    with gr.Blocks():
        ui = build_layout("m", "gpt-image-2", browser_secret="s" * 32)
    forged = ui.owner.preprocess("hf:65a1f0c2e4b0aa11")  # a browser cannot claim to be an account
    assert not forged.startswith(ACCOUNT_PREFIX)


async def test_signed_in_the_account_owns_on_every_device_and_two_users_never_see_each_other(
    signed, provider
):
    ui, page, _, _ = signed
    done = await edit(page, provider, "alice's kite", OWNER, ALICE)
    await edit(page, provider, "bob's boat", MATE, BOB)
    assert await titles(ui, page, OWNER, ALICE) == ["alice's kite"]
    assert await titles(ui, page, PHONE, ALICE) == ["alice's kite"]  # another device, same account
    assert await titles(ui, page, MATE, BOB) == ["bob's boat"]
    assert await titles(ui, page, OWNER, BOB) == ["bob's boat"]  # Bob on Alice's computer sees his own only
    # Alice's conversation opens on her phone; Bob is refused it.
    url = FakeRequest({"c": done[ui.conversation_id]})
    assert (await page.on_load(PHONE, url, ALICE))[ui.chatbot] == done[ui.chatbot]
    assert "belongs to someone else" in (await page.on_load(MATE, url, BOB))[ui.status]


async def test_signed_in_the_browser_keeps_its_own_id_and_signing_out_shows_the_browsers_list(
    signed, provider
):
    ui, page, _, _ = signed
    await edit(page, provider, "before signing in", OWNER)
    view = await page.on_load(OWNER, FakeRequest(), ALICE)
    assert ui.owner not in view  # the account id is never written into the browser
    await edit(page, provider, "signed in", OWNER, ALICE)
    assert await titles(ui, page, OWNER, ALICE) == ["signed in"]
    assert await titles(ui, page, OWNER, None) == ["before signing in"]  # signed out: the browser's own
    assert (await page.on_load(OWNER, FakeRequest(), None))[ui.owner] == OWNER


async def test_first_sign_in_asks_to_add_the_browsers_conversations_and_not_now_is_remembered(
    signed, provider
):
    ui, page, _, signin = signed
    await edit(page, provider, "one", OWNER)
    await edit(page, provider, "two", OWNER)
    asked = await signin.on_ask(OWNER, [], ALICE)
    assert asked[ui.signin.box].visible is True
    assert "2 conversations from before you signed in" in asked[ui.signin.question]
    assert "**alice**" in asked[ui.signin.question]
    assert (await signin.on_ask(OWNER, [], None))[ui.signin.box].visible is False  # signed out: no question

    later = await signin.on_later([], ALICE)
    assert later[ui.signin.box].visible is False and later[ui.signin.answered] == [account_owner_id(ALICE)]
    assert (await signin.on_ask(OWNER, later[ui.signin.answered], ALICE))[ui.signin.box].visible is False
    assert await titles(ui, page, OWNER, ALICE) == []  # nothing moved
    # Bob signing in on the same browser is asked for himself.
    assert (await signin.on_ask(OWNER, later[ui.signin.answered], BOB))[ui.signin.box].visible is True


async def test_add_them_moves_the_browsers_conversations_into_the_account(signed, provider, library):
    ui, page, _, signin = signed
    await edit(page, provider, "from this browser", OWNER)
    await edit(page, provider, "someone else's", MATE)
    added = await signin.on_add(OWNER, [], ALICE)
    assert added[ui.status] == "Added 1 conversation to your account."
    assert [title for _, title in added[ui.library.gallery]] == ["from this browser"]
    assert await titles(ui, page, PHONE, ALICE) == ["from this browser"]
    assert await titles(ui, page, OWNER, None) == []  # they are the account's now, not the browser's
    assert await titles(ui, page, MATE, None) == ["someone else's"]
    assert (await signin.on_ask(OWNER, [], ALICE))[
        ui.signin.box
    ].visible is False  # nothing left to ask about
    signed_out = await signin.on_add(OWNER, [], None)
    assert "Sign in first" in signed_out[ui.status] and await library.count_owned(MATE) == 1


async def test_a_tampered_answer_list_is_read_as_strings_only(signed, provider):
    ui, page, _, signin = signed
    await edit(page, provider, "one", OWNER)
    for junk in (None, "hf:x", {"a": 1}, [1, None, "x" * 500]):
        assert (await signin.on_ask(OWNER, junk, ALICE))[ui.signin.box].visible is True
    assert (await signin.on_ask("garbage", [], ALICE))[
        ui.signin.box
    ].visible is False  # a fresh browser id owns none


async def test_once_added_the_newest_of_them_opens_the_one_open_when_signing_in(signed, provider):
    ui, page, _, signin = signed
    done = await edit(page, provider, "open while signing in", OWNER)
    url = FakeRequest({"c": done[ui.conversation_id]})
    signed_in = await page.on_load(OWNER, url, ALICE)
    assert signed_in[ui.chatbot] == [] and "still this browser\u2019s" in signed_in[ui.status]
    added = await signin.on_add(OWNER, [], ALICE)
    assert added[ui.chatbot] == done[ui.chatbot] and added[ui.conversation_id] == done[ui.conversation_id]
    assert added[ui.status] == "Added 1 conversation to your account."
    # Someone else's conversation in the URL is refused as ever, signed in or not.
    assert "belongs to someone else" in (await page.on_load(MATE, url, BOB))[ui.status]


async def test_the_accounts_other_device_watches_its_conversation_and_a_stranger_is_refused(signed, provider):
    ui, page, _, _ = signed
    done = await edit(page, provider, "watched", OWNER, ALICE)
    conversation_id = done[ui.conversation_id]
    watching = await page.on_tick(PHONE, conversation_id, "", "", "", "", ALICE)
    assert watching[ui.seen] and not str(watching[ui.changed]).startswith("refused")
    stranger = await page.on_tick(PHONE, conversation_id, "", "", "", "", BOB)
    assert str(stranger[ui.changed]).startswith("refused")
    assert "belongs to someone else" in (await page.on_changed(PHONE, conversation_id, "", BOB))[ui.status]
