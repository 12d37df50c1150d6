"""The Gradio UI, built by a factory: nothing happens at import."""

from __future__ import annotations

import gradio as gr

from chat.service import ChatService
from chat.ui.events import Handlers
from chat.ui.layout import build_layout

__all__ = ["build_ui"]

# Put ?c=<id> in the address bar so a reload (or a copied link) reopens the conversation.
SET_URL_JS = """(id) => {
  const url = new URL(window.location.href);
  if (id) { url.searchParams.set('c', id); } else { url.searchParams.delete('c'); }
  window.history.replaceState(null, '', url);
  return [];
}"""


def build_ui(
    service: ChatService,
    *,
    default_model: str,
    key_configured: bool,
    model_concurrency: int,
    max_upload_bytes: int,
) -> gr.Blocks:
    handlers = Handlers(
        service, default_model=default_model, key_configured=key_configured, max_upload_bytes=max_upload_bytes
    )
    with gr.Blocks(title="Retouch", delete_cache=(3600, 3600)) as demo:
        ui = build_layout(default_model)
        model_call = {
            "concurrency_limit": model_concurrency,
            "concurrency_id": "model",
            "api_visibility": "private",
        }
        quick = {"queue": False, "api_visibility": "private"}

        demo.load(handlers.on_load, None, [ui.chatbot, ui.conversation_id, ui.status], **quick)
        ui.box.submit(
            handlers.on_submit,
            [ui.box, ui.conversation_id, *ui.options],
            [ui.chatbot, ui.conversation_id, ui.box, ui.status],
            **model_call,
        ).then(None, [ui.conversation_id], None, js=SET_URL_JS, **quick)
        ui.chatbot.retry(
            handlers.on_retry, [ui.conversation_id, *ui.options], [ui.chatbot, ui.status], **model_call
        )
        # The chat's own "Clear" button starts a new conversation too; the old one stays stored.
        for start_new in (ui.new_button.click, ui.chatbot.clear):
            start_new(
                handlers.on_new, None, [ui.chatbot, ui.conversation_id, ui.box, ui.status], **quick
            ).then(None, [ui.conversation_id], None, js=SET_URL_JS, **quick)
        ui.model.change(handlers.on_model_change, [ui.model], [ui.aspect_ratio, ui.image_size], **quick)

        gr.api(
            handlers.api_send, api_name="send", concurrency_limit=model_concurrency, concurrency_id="model"
        )
        gr.api(
            handlers.api_retry, api_name="retry", concurrency_limit=model_concurrency, concurrency_id="model"
        )
        gr.api(handlers.api_conversation, api_name="conversation", concurrency_limit=None)
        gr.api(handlers.api_image, api_name="image", concurrency_limit=None)
    return demo
