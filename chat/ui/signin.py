"""Hugging Face sign-in on a Space: the button, and the question asked once after signing in.

Signed in, a visitor's conversations belong to their account (``hf:<OpenID subject>``,
chat/ui/owner.py ``page_owner``), so every device they sign in on lists the same ones; signed out,
the browser's own id owns them, as before. The conversations this browser made before signing in
are not moved silently: the first time an account signs in here (and each time until it answers)
the page asks "Add them" or "Not now". The answer is remembered in this browser, per account
(an encrypted ``gr.BrowserState``); "Add them" moves them in one UPDATE.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

__all__ = ["MAX_REMEMBERED", "SignIn", "build_signin", "answered_accounts"]

MAX_REMEMBERED = 20  # accounts this browser remembers an answer for (a shared computer has several)


@dataclass(frozen=True)
class SignIn:
    button: gr.LoginButton
    box: gr.Group  # the question: add this browser's conversations to the account?
    question: gr.Markdown
    add: gr.Button
    later: gr.Button
    answered: gr.BrowserState  # the accounts that answered it in this browser


def build_signin(secret: str) -> SignIn:
    """Only on a Space with ``hf_oauth`` (a LoginButton is what makes Gradio add the OAuth routes)."""
    button = gr.LoginButton(elem_id="sign-in", size="sm")
    with gr.Group(visible=False, elem_id="claim-box") as box:
        question = gr.Markdown()
        with gr.Row():
            add = gr.Button("Add them", elem_id="claim-add", variant="primary", size="sm")
            later = gr.Button("Not now", elem_id="claim-later", size="sm")
    answered = gr.BrowserState([], storage_key="retouch-signed-in", secret=secret)
    return SignIn(button, box, question, add, later, answered)


def answered_accounts(answered: object) -> list[str]:
    """The accounts that answered, as the browser sent them: only strings, at most ``MAX_REMEMBERED``."""
    if not isinstance(answered, list):
        return []
    return [a for a in answered if isinstance(a, str) and len(a) <= 100][-MAX_REMEMBERED:]
