"""Handlers of the sign-in question (chat/ui/signin.py says what is asked, and when)."""

from __future__ import annotations

import gradio as gr
from gradio.blocks import Block

from chat.errors import RetouchError
from chat.sharing.access import Actor, account_owner_id, browser_owner_id
from chat.sharing.library import ConversationLibrary
from chat.ui.events import Handlers, PageUpdate, Show, Shown, log_refusal
from chat.ui.signin import MAX_REMEMBERED, SignIn, answered_accounts

__all__ = ["SignInHandlers"]


class SignInHandlers:
    def __init__(self, page: Handlers, library: ConversationLibrary, signin: SignIn) -> None:
        self._page = page
        self._library = library
        self._ui = signin

    @property
    def outputs(self) -> list[Block]:
        """The question's parts, and the page (an answer may reopen the conversation the URL names)."""
        return [self._ui.box, self._ui.question, self._ui.answered, *self._page.view_outputs]

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
        """Move them, then show the account's list with the newest of them open (most likely the one
        that was open when the visitor signed in: the URL no longer names it, as it was not theirs)."""
        account, own = account_owner_id(profile), browser_owner_id(browser)
        update = self._answered(account, answered)
        if account is None:
            status = "Sign in first to add them to your account."
            return {**update, **await self._page.view(Shown(Actor(own)), Show(0), status=status)}
        try:
            newest = await self._library.list(Actor(own), limit=1)
            moved = await self._library.adopt(account, own)
            opened = await self._page.opened(Actor(account), newest[0].id if newest else "")
        except RetouchError as exc:
            log_refusal("adopt", exc)
            return {
                **update,
                **await self._page.view(Shown(Actor(account)), Show(0), status=exc.user_message()),
            }
        added = "Added 1 conversation" if moved == 1 else f"Added {moved} conversations"
        return {**update, **await self._page.view(opened, status=f"{added} to your account.")}

    async def on_later(self, answered: object, profile: gr.OAuthProfile | None) -> PageUpdate:
        return self._answered(account_owner_id(profile), answered)

    def _answered(self, account: str | None, answered: object) -> PageUpdate:
        """The question hidden and, for a signed-in account, not asked again in this browser."""
        remembered = answered_accounts(answered)
        if account is not None and account not in remembered:
            remembered = [*remembered, account][-MAX_REMEMBERED:]
        return {self._ui.box: gr.Group(visible=False), self._ui.answered: remembered}
