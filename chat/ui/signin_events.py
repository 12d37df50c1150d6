"""Handlers of the sign-in question (chat/ui/signin.py says what is asked, and when)."""

from __future__ import annotations

import gradio as gr
from gradio.blocks import Block

from chat.errors import RetouchError
from chat.sharing.access import Actor, account_owner_id, browser_owner_id
from chat.sharing.library import ConversationLibrary
from chat.ui.events import Handlers, PageUpdate, log_refusal
from chat.ui.signin import MAX_REMEMBERED, SignIn, answered_accounts

__all__ = ["SignInHandlers"]


class SignInHandlers:
    def __init__(
        self,
        page: Handlers,
        library: ConversationLibrary,
        signin: SignIn,
        *,
        status: Block,
        gallery: list[Block],
    ) -> None:
        """``status`` and ``gallery`` (the list's components) are the page's, which the answer updates."""
        self._page = page
        self._library = library
        self._ui = signin
        self._status = status
        self._gallery = gallery

    @property
    def outputs(self) -> list[Block]:
        return [self._ui.box, self._ui.question, self._ui.answered, self._status, *self._gallery]

    async def on_ask(self, browser: object, answered: object, profile: gr.OAuthProfile | None) -> PageUpdate:
        """After the page loads: ask, if a signed-in account has not answered here and this browser
        owns conversations of its own."""
        account, remembered = account_owner_id(profile), answered_accounts(answered)
        hidden: PageUpdate = {self._ui.box: gr.Group(visible=False)}
        if account is None or account in remembered:
            return hidden
        count = await self._library.count_owned(browser_owner_id(browser))
        if not count:
            return hidden
        name = profile.get("preferred_username") if profile else None
        whose = f" (**{name}**)" if isinstance(name, str) else ""
        many = "conversation" if count == 1 else f"{count} conversations"
        return {
            self._ui.box: gr.Group(visible=True),
            self._ui.question: (
                f"This browser has {'a ' if count == 1 else ''}{many} from before you signed in. "
                f"Add {'it' if count == 1 else 'them'} to your account{whose}, so they are listed "
                "wherever you sign in? Otherwise they stay with this browser, listed when you are signed out."
            ),
        }

    async def on_add(self, browser: object, answered: object, profile: gr.OAuthProfile | None) -> PageUpdate:
        account = account_owner_id(profile)
        update = self._answered(account, answered)
        if account is None:
            return {**update, self._status: "Sign in first to add them to your account."}
        try:
            moved = await self._library.adopt(account, browser_owner_id(browser))
        except RetouchError as exc:
            log_refusal("adopt", exc)
            return {**update, self._status: exc.user_message()}
        gallery = await self._page.gallery(Actor(account))
        added = "1 conversation" if moved == 1 else f"{moved} conversations"
        return {**update, **gallery, self._status: f"Added {added} to your account."}

    async def on_later(self, answered: object, profile: gr.OAuthProfile | None) -> PageUpdate:
        return self._answered(account_owner_id(profile), answered)

    def _answered(self, account: str | None, answered: object) -> PageUpdate:
        """The question hidden and, for a signed-in account, not asked again in this browser."""
        remembered = answered_accounts(answered)
        if account is not None and account not in remembered:
            remembered = [*remembered, account][-MAX_REMEMBERED:]
        return {self._ui.box: gr.Group(visible=False), self._ui.answered: remembered}
