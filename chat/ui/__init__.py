"""The Gradio UI, built by a factory: nothing happens at import."""

from __future__ import annotations

from typing import Any, cast

import gradio as gr
from gradio.blocks import Block

from chat.conversation.service import ChatService
from chat.sharing.library import ConversationLibrary
from chat.ui.api import ApiHandlers, streamed
from chat.ui.events import Handlers, UIConfig
from chat.ui.files import FileMaker
from chat.ui.layout import build_layout
from chat.ui.library_events import LibraryHandlers
from chat.ui.progress import ELAPSED_JS
from chat.ui.signin_events import SignInHandlers

__all__ = ["UIConfig", "build_ui"]

# Keep the address bar on what is open: ?c=<id> for your own, ?s=<token> for a shared one,
# so a reload (or a copied link) reopens it.
SET_URL_JS = """(id, token) => {
  const url = new URL(window.location.href);
  url.searchParams.delete('c');
  url.searchParams.delete('s');
  if (token) { url.searchParams.set('s', token); } else if (id) { url.searchParams.set('c', id); }
  window.history.replaceState(null, '', url);
  return [];
}"""


#: Quick edits made at once by one process (page and API together): Pillow holds a core each.
QUICK_EDITS_AT_ONCE = 2


def build_ui(service: ChatService, library: ConversationLibrary, config: UIConfig) -> gr.Blocks:
    # Gradio's copies of what a page showed go after an hour unused (checked every 15 minutes).
    demo = gr.Blocks(title="Retouch", delete_cache=(900, 3600))
    with demo:  # not `as demo`: Blocks.__enter__ is untyped, so that name would be Any
        ui = build_layout(
            config.default_model,
            config.default_openai_model,
            browser_secret=config.browser_secret,
            ask_for_keys=not any(config.configured.values()),
            sign_in=config.sign_in,
        )
        files = FileMaker(service.image_path, config.files_dir)
        page = Handlers(service, library, config, ui, files)
        panels = LibraryHandlers(page, service, library, files)
        lib, view = ui.library, page.view_outputs
        model_call: dict[str, Any] = {
            "concurrency_limit": config.model_concurrency,
            "concurrency_id": "model",
            "api_visibility": "private",
        }
        quick: dict[str, Any] = {"queue": False, "api_visibility": "private"}
        set_url: dict[str, Any] = {
            "fn": None,
            "inputs": [ui.conversation_id, ui.share_token],
            "outputs": None,
            "js": SET_URL_JS,
            **quick,
        }

        loaded = demo.load(page.on_load, [ui.owner], [*view, ui.owner], **quick)
        loaded.then(**set_url)
        if ui.signin is not None:  # on a Space with hf_oauth: chat/ui/signin.py
            signin = SignInHandlers(page, library, ui.signin)
            answered = ui.signin.answered
            loaded.then(signin.on_ask, [ui.owner, answered], signin.outputs, **quick)
            added = ui.signin.add.click(signin.on_add, [ui.owner, answered], signin.outputs, **quick)
            added.then(**set_url)
            ui.signin.later.click(signin.on_later, [answered], signin.outputs, **quick)
        # A turn's inputs go by name; the options under the names parse_options takes.
        asker: dict[str, Block] = {
            "conversation_id": ui.conversation_id,
            "share_token": ui.share_token,
            "owner": ui.owner,
        }
        chosen_options = dict(ui.options)
        chosen = {"gemini_key": ui.keys[0], "openai_key": ui.keys[1], **chosen_options}
        # A turn's events also show and hide Stop; its elapsed time ticks in the page (chat/ui/progress.py).
        turn_outputs = [*view, ui.stop]
        demo.load(None, None, None, js=ELAPSED_JS, **quick)
        # Watching the open conversation (chat/ui/events.py on_tick): "once" never lets ticks pile up
        # behind a slow one, and no spinner covers the page each second. The tick only compares;
        # the change events of the two hidden boxes it sets render.
        watched = [ui.owner, ui.conversation_id, ui.share_token]
        silent: dict[str, Any] = {"show_progress": "hidden", **quick}
        stamps = [ui.seen, ui.changed, ui.progressed]
        ui.timer.tick(
            page.on_tick,
            [*watched, *stamps],
            stamps,
            trigger_mode="once",
            **silent,
        )
        ui.changed.change(page.on_changed, watched, page.watch_outputs, **silent)
        ui.progressed.change(page.on_progressed, watched, [ui.chatbot], **silent)
        submitted = ui.box.submit(
            page.on_submit,
            inputs_kwargs={"message": ui.box, **asker, "painter": ui.painter, **chosen},
            outputs=turn_outputs,
            **model_call,
        )
        submitted.then(**set_url)
        # A full queue refuses the message before on_submit runs (tests/test_queue_full.py).
        submitted.failure(page.on_not_taken, [ui.chatbot], [ui.chatbot], **quick)
        ui.chatbot.retry(page.on_retry, inputs_kwargs={**asker, **chosen}, outputs=turn_outputs, **model_call)
        ui.stop.click(page.on_stop, inputs_kwargs=asker, outputs=turn_outputs, **quick)
        # The chat's own "Clear" button starts a new conversation too; the old one stays stored.
        for start_new in (ui.new_button.click, ui.chatbot.clear):
            start_new(page.on_new, [ui.owner], view, **quick).then(**set_url)
        lib.gallery.select(page.on_open, [ui.owner, lib.ids], view, **quick).then(**set_url)
        ui.model.change(page.on_model_change, [ui.model], [ui.aspect_ratio, ui.image_size], **quick)
        # "Use this" on a variant (only a visitor's click: .input, not the page setting the choice).
        ui.variants.use.input(
            page.on_pick, [ui.owner, ui.conversation_id, ui.share_token, ui.variants.use], view, **quick
        )
        # Before sending: what the chosen options could cost at most, Variants counted.
        priced: dict[str, Any] = {"inputs_kwargs": chosen_options, "outputs": [ui.variants_cost], **quick}
        changes = [cast(Any, option).change for option in ui.options.values()]  # every option is an input
        # always_last: a change made while the estimate for the one before is computed is not dropped
        # (Gradio's default, "once", drops it: the model set, then Variants, left "1 answer: …").
        gr.on([demo.load, *changes], page.on_cost, trigger_mode="always_last", **priced)

        lib.search.change(panels.on_search, [ui.owner, lib.search], [lib.gallery, lib.ids], **quick)
        lib.rename.click(panels.on_rename, [ui.owner, ui.conversation_id, lib.title], view, **quick)
        confirm = [lib.confirm_delete, lib.cancel_delete]
        lib.delete.click(lambda: [gr.Button(visible=True)] * 2, None, confirm, **quick)
        lib.cancel_delete.click(lambda: [gr.Button(visible=False)] * 2, None, confirm, **quick)
        lib.confirm_delete.click(panels.on_delete, [ui.owner, ui.conversation_id], view, **quick).then(
            lambda: [gr.Button(visible=False)] * 2, None, confirm, **quick
        ).then(**set_url)
        lib.share_view.click(panels.on_share_view, [ui.owner, ui.conversation_id], view, **quick)
        lib.share_continue.click(panels.on_share_continue, [ui.owner, ui.conversation_id], view, **quick)
        lib.revoke.click(panels.on_revoke, [ui.owner, ui.conversation_id, lib.revoke_choice], view, **quick)
        # Imports and forks write a whole conversation in a worker thread: queued, one at a time.
        copies: dict[str, Any] = {
            "concurrency_limit": 1,
            "concurrency_id": "copy",
            "api_visibility": "private",
        }
        lib.duplicate.click(
            panels.on_duplicate, [ui.owner, ui.conversation_id, ui.share_token], view, **copies
        ).then(**set_url)
        ui.versions.branch.click(
            panels.on_fork, [ui.owner, ui.conversation_id, ui.share_token, ui.versions.choice], view, **copies
        ).then(**set_url)
        # Quick edits of the chosen version: Pillow in a worker thread, no model; a few at once, so a
        # burst of 4096-pixel resizes queues instead of taking every core.
        edits: dict[str, Any] = {
            "concurrency_limit": QUICK_EDITS_AT_ONCE,
            "concurrency_id": "quick-edit",
            "api_visibility": "private",
        }
        edited = [ui.owner, ui.conversation_id, ui.share_token, ui.versions.choice]
        quick_edits = ui.versions.quick
        for button, edit in (
            (quick_edits.rotate_left, {"kind": "rotate", "degrees": 270}),
            (quick_edits.rotate_right, {"kind": "rotate", "degrees": 90}),
            (quick_edits.flip_horizontal, {"kind": "flip", "direction": "horizontal"}),
            (quick_edits.flip_vertical, {"kind": "flip", "direction": "vertical"}),
        ):
            button.click(panels.fixed_edit(edit), edited, view, **edits)
        cropped = [*edited, *quick_edits.crop_box, quick_edits.crop_unit]
        quick_edits.crop.click(panels.on_crop, cropped, view, **edits)
        sized = [*edited, quick_edits.width, quick_edits.height]
        quick_edits.resize.click(panels.on_resize, sized, view, **edits)
        undo = [ui.owner, ui.conversation_id, ui.share_token]
        quick_edits.undo.click(panels.on_undo, undo, view, **copies).then(**set_url)
        ui.versions.choice.change(
            panels.on_version,
            [ui.owner, ui.conversation_id, ui.share_token, ui.versions.choice],
            [ui.versions.slider, ui.versions.download],
            **quick,
        )
        lib.export.click(
            panels.on_export,
            [ui.owner, ui.conversation_id, ui.share_token],
            [lib.export_file, ui.status],
            **quick,
        )
        lib.import_zip.upload(panels.on_import, [ui.owner, lib.import_zip], view, **copies).then(**set_url)

        api = ApiHandlers(
            service,
            library,
            default_model=config.default_model,
            default_openai_model=config.default_openai_model,
            max_upload_bytes=config.max_upload_bytes,
            proxies=config.proxies,
            files=files,
        )
        api_call: dict[str, Any] = {"concurrency_limit": config.model_concurrency, "concurrency_id": "model"}
        gr.api(streamed(api.send), api_name="send", **api_call)
        gr.api(streamed(api.retry), api_name="retry", **api_call)
        gr.api(api.stop, api_name="stop", concurrency_limit=None)  # never behind the model queue
        gr.api(api.pick, api_name="pick", concurrency_limit=None)
        gr.api(
            api.quick_edit,
            api_name="quick_edit",
            concurrency_limit=QUICK_EDITS_AT_ONCE,
            concurrency_id="quick-edit",
        )
        for name in ("conversation", "image", "share", "revoke", "conversations"):
            gr.api(getattr(api, name), api_name=name, concurrency_limit=None)
        gr.api(api.fork, api_name="fork", concurrency_limit=1, concurrency_id="copy")
    return demo
