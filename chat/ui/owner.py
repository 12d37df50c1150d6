"""Who owns what a page makes: the browser's owner id as a component (every event that reads it
gets a checked value), or the signed-in account, which wins over it (chat/ui/signin.py)."""

from __future__ import annotations

import gradio as gr

from chat.sharing.access import account_owner_id, browser_owner_id

__all__ = ["owner_state", "page_owner"]


def owner_state(secret: str) -> gr.BrowserState:
    """A ``gr.BrowserState`` whose value is always a well-formed owner id when a handler sees it.

    Any client can post any JSON as this input (null, a number, another visitor's guess), so
    the check is the component's ``preprocess``, which Gradio runs for every event that takes
    the state: missing or malformed becomes a fresh id (an empty list), never "no owner" and
    never "all". Handlers send the id back, so a browser whose stored id was damaged keeps the
    new one. (Set on the instance: Gradio writes a ``.pyi`` file next to any Component subclass.)
    """
    state = gr.BrowserState(None, storage_key="retouch-owner", secret=secret)
    state.preprocess = browser_owner_id  # type: ignore[method-assign, assignment]  # per instance: see above
    return state


def page_owner(browser_id: str, profile: gr.OAuthProfile | None) -> str:
    """The owner id a page's event acts as: the signed-in Hugging Face account's (the same on every
    device), else the browser's. ``profile`` is what Gradio read from the signed session cookie
    (``gr.OAuthProfile``, None when signed out or when sign-in is off), never a value the page sent."""
    return account_owner_id(profile) or browser_id
