"""Components around the chat: my conversations, sharing, versions. No behaviour here."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import gradio as gr

__all__ = ["Library", "QuickEdits", "Versions", "build_library", "build_versions"]


def made_once(button: gr.UploadButton) -> gr.UploadButton:
    """``button`` with its API schema made once instead of three times at every new session.

    Gradio builds each session's state from every block's config at the session's first event
    (the pinned 6.x, ``state_holder.SessionState``), and asks an UploadButton for its schema
    three times there, each a new pydantic ``model_json_schema()``: 8 % of the app's CPU with 256
    new visitors at once (bench/RESULTS.md, issue 14 capacity). Set on the instance: a subclass
    of a Gradio component makes Gradio write a ``.pyi`` stub next to this module at import.
    """
    schema = button.api_info()
    # Each config gets its own copy, as Gradio's own call would give it.
    button.api_info = lambda: copy.deepcopy(schema)  # type: ignore[method-assign]  # see above
    return button


@dataclass(frozen=True)
class Library:
    """The left sidebar: this browser's conversations and what the owner can do with the open one."""

    search: gr.Textbox
    gallery: gr.Gallery
    ids: gr.JSON  # in the page, not in a replica's memory: a click still opens after a failover
    owner_tools: gr.Group
    title: gr.Textbox
    rename: gr.Button
    delete: gr.Button
    confirm_delete: gr.Button
    cancel_delete: gr.Button
    share_view: gr.Button
    share_continue: gr.Button
    links: gr.Markdown
    revoke_choice: gr.Dropdown
    revoke: gr.Button
    banner: gr.Markdown
    duplicate: gr.Button
    export: gr.Button
    export_file: gr.File
    import_zip: gr.UploadButton


@dataclass(frozen=True)
class QuickEdits:
    """Crop, rotate, flip and resize the chosen version: instant, free, no model (shown to writers only)."""

    box: gr.Group
    rotate_left: gr.Button
    rotate_right: gr.Button
    flip_horizontal: gr.Button
    flip_vertical: gr.Button
    crop_box: tuple[gr.Number, gr.Number, gr.Number, gr.Number]  # left, top, right, bottom
    crop_unit: gr.Radio
    crop: gr.Button
    width: gr.Number
    height: gr.Number
    resize: gr.Button
    undo: gr.Button  # shown while the newest version is a quick edit: "Edit from here" on the one before


@dataclass(frozen=True)
class Versions:
    """Every generated image is a numbered version: compare, download, branch from it, quick-edit it."""

    choice: gr.Dropdown
    slider: gr.ImageSlider
    download: gr.DownloadButton
    branch: gr.Button
    quick: QuickEdits


def build_library() -> Library:
    banner = gr.Markdown(visible=False, elem_id="readonly-banner")
    duplicate = gr.Button("Duplicate into my conversations", visible=False, elem_id="duplicate")
    search = gr.Textbox(placeholder="Search titles\u2026", show_label=False, elem_id="search")
    gallery = gr.Gallery(
        label="My conversations",
        elem_id="conversations",
        columns=2,
        height=360,
        allow_preview=False,
        show_label=True,
        object_fit="cover",
        interactive=False,
    )
    ids = gr.JSON([], visible=False, elem_id="conversation-ids")
    with gr.Group(visible=False, elem_id="owner-tools") as owner_tools:
        title = gr.Textbox(label="Title", elem_id="title", max_length=200)
        with gr.Row():
            rename = gr.Button("Rename", size="sm", elem_id="rename")
            delete = gr.Button("Delete\u2026", size="sm", variant="stop", elem_id="delete")
        with gr.Row():
            confirm_delete = gr.Button(
                "Yes, delete it", size="sm", variant="stop", visible=False, elem_id="confirm-delete"
            )
            cancel_delete = gr.Button("Keep it", size="sm", visible=False, elem_id="cancel-delete")
        with gr.Accordion("Share", open=False, elem_id="share-box"):
            with gr.Row():
                share_view = gr.Button("Read-only link", size="sm", elem_id="share-view")
                share_continue = gr.Button("Link teammates can continue", size="sm", elem_id="share-continue")
            links = gr.Markdown(elem_id="share-links")
            revoke_choice = gr.Dropdown(label="Revoke a link", choices=[], elem_id="revoke-choice")
            revoke = gr.Button("Revoke", size="sm", elem_id="revoke")
    with gr.Row():
        export = gr.Button("Export .zip", size="sm", elem_id="export")
        import_zip = made_once(
            gr.UploadButton("Import .zip", size="sm", file_types=[".zip"], elem_id="import")
        )
    export_file = gr.File(label="Export", visible=False, elem_id="export-file", interactive=False)
    return Library(
        search,
        gallery,
        ids,
        owner_tools,
        title,
        rename,
        delete,
        confirm_delete,
        cancel_delete,
        share_view,
        share_continue,
        links,
        revoke_choice,
        revoke,
        banner,
        duplicate,
        export,
        export_file,
        import_zip,
    )


def build_versions() -> Versions:
    with gr.Accordion("Versions", open=False, elem_id="versions-box"):
        choice = gr.Dropdown(label="Version", choices=[], elem_id="version-choice")
        slider = gr.ImageSlider(label="Before / after", type="filepath", elem_id="compare", max_height=360)
        with gr.Row():
            download = gr.DownloadButton("Download PNG", size="sm", elem_id="download-version")
            branch = gr.Button("Edit from here", size="sm", elem_id="branch")
        quick = _quick_edits()
    return Versions(choice, slider, download, branch, quick)


#: The quick edit controls' least width (px): two to a row fit the panel's narrow column.
NARROW = 60


def _quick_edits() -> QuickEdits:
    """Small and dense: the panel's column is narrow, and Gradio's default widths would stack each
    control on a row of its own."""
    with gr.Group(elem_id="quick-edit") as box:
        gr.Markdown("**Quick edit** of the version above: instant, free, no model; it becomes a new version.")
        with gr.Row():
            rotate_left = gr.Button("Rotate left", size="sm", elem_id="rotate-left", min_width=NARROW)
            rotate_right = gr.Button("Rotate right", size="sm", elem_id="rotate-right", min_width=NARROW)
        with gr.Row():
            flip_horizontal = gr.Button("Flip \u2194", size="sm", elem_id="flip-horizontal", min_width=NARROW)
            flip_vertical = gr.Button("Flip \u2195", size="sm", elem_id="flip-vertical", min_width=NARROW)
        with gr.Row():
            left = gr.Number(0, label="Crop: left", elem_id="crop-left", min_width=NARROW)
            top = gr.Number(0, label="top", elem_id="crop-top", min_width=NARROW)
        with gr.Row():
            right = gr.Number(100, label="right", elem_id="crop-right", min_width=NARROW)
            bottom = gr.Number(100, label="bottom", elem_id="crop-bottom", min_width=NARROW)
        crop_box = (left, top, right, bottom)
        with gr.Row(equal_height=True):
            crop_unit = gr.Radio(
                ["%", "px"], value="%", show_label=False, elem_id="crop-unit", min_width=NARROW
            )
            crop = gr.Button("Crop", size="sm", elem_id="crop", min_width=NARROW)
        with gr.Row():
            width = gr.Number(
                None, label="Resize: width", precision=0, elem_id="resize-width", min_width=NARROW
            )
            height = gr.Number(
                None, label="height (px)", precision=0, elem_id="resize-height", min_width=NARROW
            )
        gr.Markdown("A side left at 0 keeps the shape.")
        resize = gr.Button("Resize", size="sm", elem_id="resize")
        undo = gr.Button("Undo", size="sm", elem_id="quick-undo", visible=False)
    return QuickEdits(
        box,
        rotate_left,
        rotate_right,
        flip_horizontal,
        flip_vertical,
        crop_box,
        crop_unit,
        crop,
        width,
        height,
        resize,
        undo,
    )
