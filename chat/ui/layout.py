"""Components only: what is on the page, no behaviour."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import gradio as gr
from gradio.components.image_editor import EditorData
from gradio.data_classes import FileData

from chat.conversation.options import AUTO
from chat.providers.gemini.catalog import GEMINI_MODELS, SAFETY_THRESHOLDS, gemini_model
from chat.providers.openai.catalog import OPENAI_FIXED_SIZES, OPENAI_MODELS
from chat.ui.owner import owner_state
from chat.ui.panels import Library, Versions, build_library, build_versions
from chat.ui.signin import SignIn, build_signin
from chat.ui.variants import VariantPanel, build_variants, variants_option

__all__ = ["Layout", "build_layout"]

ROUTES = [
    ("Gemini, then OpenAI if Gemini fails", "auto"),
    ("Gemini only", "gemini"),
    ("OpenAI only", "openai"),
]

# The chat fills the window's height, less what is above and below it (the intro, the status line,
# the caption and the message box); never so short that an image and its caption do not fit.
CHAT_HEIGHT = "max(360px, calc(100dvh - 300px))"
#: How often a page with a conversation open checks whether it changed elsewhere (a share link's
#: page, the owner's other tab, another replica): one SELECT a tick while nothing changes.
WATCH_INTERVAL_S = 1.0

INTRO = (
    "**Retouch** — upload a photo (or describe a new picture) and say what to change. "
    "Each edit builds on the whole conversation; reload any time, it is saved."
)


@dataclass(frozen=True)
class Layout:
    chatbot: gr.Chatbot
    summary: gr.Markdown
    box: gr.MultimodalTextbox
    conversation_id: gr.Textbox
    share_token: gr.Textbox
    owner: gr.BrowserState
    status: gr.Markdown
    new_button: gr.Button
    # Shown only to a visitor who may send (hidden on a read-only link): the keys, the painter,
    # and the options of the next turn (Variants with its cost, model, provider, budget).
    for_writers: tuple[gr.Accordion, gr.Accordion, gr.Column]
    painter: gr.ImageEditor
    options: Mapping[str, gr.components.Component]  # by the names parse_options takes
    library: Library
    versions: Versions
    keys: tuple[gr.Textbox, gr.Textbox]
    stop: gr.Button  # visible while a turn of this page runs (chat/ui/events.py)
    variants: VariantPanel
    variants_cost: gr.Markdown  # beside the Variants option: what the next send could cost at most
    signin: SignIn | None  # Hugging Face sign-in, on a Space with hf_oauth only (chat/ui/signin.py)
    # Watching the open conversation (chat/ui/events.py ``on_tick``): ticks while one is open and
    # this page runs no turn of its own. Hidden boxes in the page (no gr.State: that would open a
    # heartbeat stream per page): ``seen``, the stamp the page shows; ``changed`` and ``progressed``
    # take a new value when a tick saw the conversation, or only its running turn's progress,
    # change, and their change events render it.
    timer: gr.Timer
    seen: gr.Textbox
    changed: gr.Textbox
    progressed: gr.Textbox

    @property
    def model(self) -> gr.Dropdown:
        return cast(gr.Dropdown, self.options["model"])

    @property
    def aspect_ratio(self) -> gr.Dropdown:
        return cast(gr.Dropdown, self.options["aspect_ratio"])

    @property
    def image_size(self) -> gr.Dropdown:
        return cast(gr.Dropdown, self.options["image_size"])


def model_choices(model_id: str) -> tuple[list[str], list[str]]:
    """Aspect ratios and image sizes the model accepts, each with "auto" first (a non-text id: the conservative set)."""
    model = gemini_model(model_id if isinstance(model_id, str) else "")
    return [AUTO, *model.aspect_ratios], [AUTO, *model.image_sizes]


def build_layout(
    default_model: str,
    default_openai_model: str,
    *,
    browser_secret: str,
    ask_for_keys: bool = False,
    sign_in: bool = False,
) -> Layout:
    gr.Markdown(INTRO, elem_id="intro")
    status = gr.Markdown(elem_id="status")
    # The owner id lives in this browser only (encrypted with a fixed secret so it survives restarts).
    owner = owner_state(browser_secret)  # chat/ui/owner.py: always a checked owner id
    conversation_id = gr.Textbox(visible=False, elem_id="conversation-id")
    share_token = gr.Textbox(visible=False, elem_id="share-token")
    # "My conversations" in a sidebar: open beside the chat on a desktop, closed on a phone (chat/ui/style.py),
    # so the chat and the message box come first there; its toggle opens it over the page.
    with gr.Sidebar(label="My conversations", open=True, width=300, elem_id="library-sidebar"):
        signin = build_signin(browser_secret) if sign_in else None
        new_button = gr.Button("New conversation", elem_id="new-conversation", variant="primary")
        library = build_library()
    with gr.Row(elem_id="workspace"):
        with gr.Column(scale=4, elem_id="chat-column"):
            summary = gr.Markdown(elem_id="summary")
            chatbot = gr.Chatbot(
                elem_id="chat",
                height=CHAT_HEIGHT,
                label="Conversation",
                placeholder="Your edits appear here. Start with a photo and a sentence like \u201cmake the sky stormy\u201d.",
                buttons=["copy"],
            )
            variants = build_variants()
            with gr.Row(equal_height=True):
                box = gr.MultimodalTextbox(
                    elem_id="box",
                    # Opened by the page's load event (events.py ``_rights``): a message sent
                    # before it would be answered, then drawn over by the late load's empty view,
                    # and owned by another fresh browser id: lost to the visitor.
                    interactive=False,
                    file_types=["image"],
                    file_count="multiple",
                    sources=["upload"],
                    placeholder="Describe the edit, or attach a photo (PNG, JPEG, WebP)\u2026",
                    show_label=False,
                    max_plain_text_length=100_000,
                    scale=12,
                )
                stop = _stop_button()
        with gr.Column(scale=1, min_width=260, elem_id="panels"):
            keys_box, keys = _keys_panel(open_=ask_for_keys)
            painter_box, painter = _painter()
            versions = build_versions()
            with gr.Column(elem_id="turn-options") as turn_options:
                variants_slider, variants_cost = variants_option()
                options = {
                    **_options_panel(default_model),
                    **_openai_panel(default_openai_model),
                    "variants": variants_slider,
                }
    return Layout(
        chatbot,
        summary,
        box,
        conversation_id,
        share_token,
        owner,
        status,
        new_button,
        (keys_box, painter_box, turn_options),
        painter,
        options,
        library,
        versions,
        keys,
        stop,
        variants,
        variants_cost,
        signin,
        gr.Timer(WATCH_INTERVAL_S, active=False),
        gr.Textbox(visible=False, elem_id="watch-seen"),
        # In the page but not shown: Gradio's page runs a change event only for a component it holds.
        gr.Textbox(visible="hidden", elem_id="watch-changed"),
        gr.Textbox(visible="hidden", elem_id="watch-progressed"),
    )


def _stop_button() -> gr.Button:
    """Stop the running answer: the message stays, the turn is stored as stopped, Retry asks again."""
    return gr.Button("Stop", elem_id="stop", variant="stop", visible=False, scale=1, min_width=80)


def _keys_panel(*, open_: bool) -> tuple[gr.Accordion, tuple[gr.Textbox, gr.Textbox]]:
    """Bring your own key: used for your edits only, kept in this tab, never stored or logged."""
    with gr.Accordion("Your API keys (optional)", open=open_, elem_id="keys-box") as box:
        gr.Markdown(
            "Used for your edits only and kept in this browser tab: never saved, logged, exported or shared."
        )
        gemini = gr.Textbox(label="Gemini API key", type="password", elem_id="gemini-key", max_length=200)
        openai = gr.Textbox(label="OpenAI API key", type="password", elem_id="openai-key", max_length=200)
    return box, (gemini, openai)


def _painter() -> tuple[gr.Accordion, gr.ImageEditor]:
    """Paint over the current image to limit the next edit to that area."""
    with gr.Accordion("Paint the area to change (optional)", open=False, elem_id="painter-box") as box:
        gr.Markdown("The latest image appears here. Paint over what should change, then send your message.")
        editor = gr.ImageEditor(
            elem_id="painter",
            type="pil",
            image_mode="RGBA",
            sources=(),
            brush=gr.Brush(colors=["#ff00ff"], color_mode="fixed", default_size=40),
            eraser=gr.Eraser(default_size=40),
            layers=False,
            transforms=(),
            format="png",
            show_label=False,
            buttons=[],
        )
    # Set on the instance: a subclass of a Gradio component makes Gradio write a .pyi beside this module.
    editor.preprocess = _without_files_of_other_replicas(editor.preprocess)  # type: ignore[method-assign,assignment]
    return box, editor


def _without_files_of_other_replicas(preprocess: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """The painter's ``preprocess``, leaving out the images this process's file cache does not hold.

    The painter holds the latest image as a file of the replica that showed it; after a failover
    (a drain, a crash) the page sends that file's name to another replica, where Gradio's own
    preprocess fails to open it and the message is refused before any handler runs. Only the
    strokes matter (the service paints them on the conversation's stored image), and the strokes
    are uploaded with the message to the replica it reaches, so a missing background or
    composite is left out, and ``_painted`` takes the canvas size from the strokes. Gradio has
    refused any path outside its own cache folder before this runs, so only that folder is looked in.
    """

    def here(file: FileData | None) -> FileData | None:
        return file if file is None or (file.path and Path(file.path).is_file()) else None

    def preprocess_here(payload: Any) -> Any:
        if isinstance(payload, EditorData) and payload.id is None:
            payload = payload.model_copy(
                update={
                    "background": here(payload.background),
                    "composite": here(payload.composite),
                    "layers": [layer for layer in payload.layers if here(layer) is not None],
                }
            )
        return preprocess(payload)

    return preprocess_here


def _options_panel(default_model: str) -> dict[str, gr.components.Component]:
    models = list(GEMINI_MODELS)
    if default_model not in GEMINI_MODELS:
        models.insert(0, default_model)
    ratios, sizes = model_choices(default_model)
    with gr.Accordion("Options", open=False):
        model = gr.Dropdown(models, value=default_model, label="Model", allow_custom_value=True)
        aspect = gr.Dropdown(ratios, value=AUTO, label="Aspect ratio")
        size = gr.Dropdown(sizes, value=AUTO, label="Image size")
        safety = gr.Dropdown([AUTO, *SAFETY_THRESHOLDS], value=AUTO, label="Safety filter")
        with gr.Accordion("Sampling (leave empty for the model's defaults)", open=False):
            temperature = gr.Number(None, label="Temperature (0\u20132)", minimum=0, maximum=2)
            top_p = gr.Number(None, label="Top-p (0\u20131)", minimum=0, maximum=1)
            top_k = gr.Number(None, label="Top-k", minimum=1, precision=0)
            max_tokens = gr.Number(None, label="Max output tokens", minimum=1, precision=0)
            seed = gr.Number(None, label="Seed", minimum=0, precision=0)
            stops = gr.Textbox(label="Stop sequences (one per line)", lines=2)
    return {
        "model": model,
        "aspect_ratio": aspect,
        "image_size": size,
        "temperature": temperature,
        "top_p": top_p,
        "top_k": top_k,
        "max_output_tokens": max_tokens,
        "seed": seed,
        "stop_sequences": stops,
        "safety_threshold": safety,
    }


def _openai_panel(default_model: str) -> dict[str, gr.components.Component]:
    models = list(OPENAI_MODELS)
    if default_model not in OPENAI_MODELS:
        models.insert(0, default_model)
    with gr.Accordion("Provider and OpenAI fallback", open=False):
        route = gr.Radio(ROUTES, value="auto", label="Who answers")
        model = gr.Dropdown(models, value=default_model, label="OpenAI model", allow_custom_value=True)
        size = gr.Dropdown(
            list(OPENAI_FIXED_SIZES), value=AUTO, label="Size (or type WIDTHxHEIGHT)", allow_custom_value=True
        )
        quality = gr.Dropdown([AUTO, "low", "medium", "high", "xhigh", "max"], value=AUTO, label="Quality")
        background = gr.Dropdown([AUTO, "opaque", "transparent"], value=AUTO, label="Background")
        output_format = gr.Dropdown([AUTO, "png", "jpeg", "webp"], value=AUTO, label="Output format")
        compression = gr.Number(
            None, label="Compression (JPEG/WebP, 0\u2013100)", minimum=0, maximum=100, precision=0
        )
        fidelity = gr.Dropdown(
            [AUTO, "high", "low"], value=AUTO, label="Input fidelity (gpt-image-1.5 / 1-mini)"
        )
    budget = gr.Number(
        None, label="Budget for this conversation ($; 0 = no budget)", minimum=0, elem_id="budget"
    )
    return {
        "route": route,
        "openai_model": model,
        "openai_size": size,
        "openai_quality": quality,
        "openai_background": background,
        "openai_output_format": output_format,
        "openai_output_compression": compression,
        "openai_input_fidelity": fidelity,
        "budget_usd": budget,
    }
