"""The Gradio UI, built by a factory: nothing happens at import."""

from __future__ import annotations

import gradio as gr

from chat.service import ChatService
from chat.ui.events import Handlers, UIConfig
from chat.ui.layout import build_layout

__all__ = ["UIConfig", "build_ui"]

# Put ?c=<id> in the address bar so a reload (or a copied link) reopens the conversation.
SET_URL_JS = """(id) => {
  const url = new URL(window.location.href);
  if (id) { url.searchParams.set('c', id); } else { url.searchParams.delete('c'); }
  window.history.replaceState(null, '', url);
  return [];
}"""


def build_ui(service: ChatService, config: UIConfig) -> gr.Blocks:
    handlers = Handlers(service, config)
    with gr.Blocks(title="Retouch", delete_cache=(3600, 3600)) as demo:
        ui = build_layout(config.default_model, config.default_openai_model)
        model_call = {
            "concurrency_limit": config.model_concurrency,
            "concurrency_id": "model",
            "api_visibility": "private",
        }
        quick = {"queue": False, "api_visibility": "private"}
        set_url = {"fn": None, "inputs": [ui.conversation_id], "outputs": None, "js": SET_URL_JS, **quick}

        demo.load(handlers.on_load, None, [ui.chatbot, ui.conversation_id, ui.status, ui.painter], **quick)
        ui.box.submit(
            handlers.on_submit,
            [ui.box, ui.conversation_id, ui.painter, *ui.options],
            [ui.chatbot, ui.conversation_id, ui.box, ui.status, ui.painter],
            **model_call,
        ).then(**set_url)
        ui.chatbot.retry(
            handlers.on_retry,
            [ui.conversation_id, *ui.options],
            [ui.chatbot, ui.status, ui.painter],
            **model_call,
        )
        # The chat's own "Clear" button starts a new conversation too; the old one stays stored.
        new_outputs = [ui.chatbot, ui.conversation_id, ui.box, ui.status, ui.painter]
        for start_new in (ui.new_button.click, ui.chatbot.clear):
            start_new(handlers.on_new, None, new_outputs, **quick).then(**set_url)
        ui.model.change(handlers.on_model_change, [ui.model], [ui.aspect_ratio, ui.image_size], **quick)

        api_call = {"concurrency_limit": config.model_concurrency, "concurrency_id": "model"}
        gr.api(handlers.api_send, api_name="send", **api_call)
        gr.api(handlers.api_retry, api_name="retry", **api_call)
        gr.api(handlers.api_conversation, api_name="conversation", concurrency_limit=None)
        gr.api(handlers.api_image, api_name="image", concurrency_limit=None)
    return demo
