"""Variants on the page: their labels (v3a, v3b…), the newest batch side by side, "Use this".

Several answers to one message made at once are turns of their own (chat.domain ``Turn.variant``);
they share one version number and a letter each. The chat lists them one under another, as any
answer, and the grid under the chat shows the newest batch side by side, each captioned, with
one "Use this" choice per variant that came: the picked one is what the next edit builds on.
Pure functions, except ``build_variants`` (the components); the pick's handler is chat/ui/events.py's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from chat.domain import MAX_VARIANTS, Conversation, ImagePart, Role, Turn, latest_answers
from chat.errors import PROVIDER_NAMES

__all__ = [
    "LETTERS",
    "USE_THIS",
    "VariantPanel",
    "answered_by",
    "batch",
    "build_variants",
    "caption",
    "panel_update",
    "variants_option",
    "estimate",
    "grid",
    "in_use",
    "labels",
    "pick_choices",
]

USE_THIS = "Use this variant for the next edit"
LETTERS = "abcdefgh"[:MAX_VARIANTS]


def labels(conversation: Conversation) -> dict[int, str]:
    """Each answer's version label by turn index: "v2" for a lone answer with an image, "v3a",
    "v3b"… for variants (a failed variant keeps its letter, so the others keep theirs). A batch
    takes a number if any of its variants brought an image; answers without one take none."""
    found: dict[int, str] = {}
    number = 0
    turns = conversation.turns
    index = 0
    while index < len(turns):
        group = _batch_at(turns, index)
        shown = [
            n
            for n in group
            if turns[n].role is Role.ASSISTANT and not turns[n].failed and turns[n].shown_image() is not None
        ]
        if shown:
            number += 1
        if turns[index].variant is None:
            if shown:
                found[index] = f"v{number}"
        elif shown:
            found |= {n: f"v{number}{_letter(turns[n])}" for n in group}
        index = group[-1] + 1
    return found


def in_use(conversation: Conversation) -> set[int]:
    """The indexes of the answers the next edit builds on, one per message at most (what is replayed:
    ``latest_answers``): a variant picked before a newer answer to its message is no longer one."""
    kept = {id(turn) for turn in latest_answers(conversation.turns)}
    return {
        n
        for n, turn in enumerate(conversation.turns)
        if turn.role is Role.ASSISTANT and not turn.failed and id(turn) in kept
    }


def batch(conversation: Conversation) -> list[int]:
    """The turn indexes of the newest batch of variants, if the conversation ends with one."""
    turns = conversation.turns
    if not turns or turns[-1].role is not Role.ASSISTANT or turns[-1].variant is None:
        return []
    start = len(turns) - 1
    while start > 0 and turns[start].variant not in (None, 0) and turns[start - 1].role is Role.ASSISTANT:
        start -= 1
    return list(range(start, len(turns)))


def answered_by(turn: Turn) -> str:
    """Who made an answer, for its captions: "Gemini gemini-…", or what a quick edit did, "crop … (local)"."""
    if turn.local:
        return f"{turn.model} (local)"
    return " ".join(
        x for x in (turn.provider and PROVIDER_NAMES.get(turn.provider, turn.provider), turn.model) if x
    )


def caption(turn: Turn, label: str, used: bool) -> str:
    """ "v3a · ✓ used next · Gemini gemini-…" (the mark first: a narrow tile cuts the end), or
    "v3c failed: <reason>"."""
    if turn.error is not None:
        return f"{label} failed: {turn.error.message}"
    return " \u00b7 ".join(x for x in (label, "\u2713 used next" if used else "", answered_by(turn)) if x)


def grid(
    conversation: Conversation | None, image_path: Callable[[ImagePart], str | Path]
) -> list[tuple[str, str]]:
    """The newest batch's images side by side, each with its caption (failed ones are in the chat)."""
    if conversation is None:
        return []
    names, used = labels(conversation), in_use(conversation)
    shown = []
    for index in batch(conversation):
        turn = conversation.turns[index]
        if (image := turn.shown_image()) is not None and not turn.failed:
            shown.append((str(image_path(image)), caption(turn, names.get(index, ""), index in used)))
    return shown


def pick_choices(conversation: Conversation | None) -> tuple[list[tuple[str, int]], int | None]:
    """The newest batch's variants that came, as (label, turn index), and the picked one."""
    if conversation is None:
        return [], None
    names = labels(conversation)
    came = [n for n in batch(conversation) if not conversation.turns[n].failed and n in names]
    used = in_use(conversation)
    picked = next((n for n in came if n in used), None)
    return [(names[n], n) for n in came], picked


def estimate(worst_usd: float, variants: int) -> str:
    """What the next send could cost (every variant's worst case), before it is sent:
    "4 variants: up to ≈ $0.54"."""
    count = f"{variants} variants" if variants > 1 else "1 answer"
    return f"{count}: up to \u2248 ${worst_usd:.2f}"


def _batch_at(turns: tuple[Turn, ...], index: int) -> list[int]:
    """The turns of the batch starting at ``index`` (itself only, unless it is variant 0 of several)."""
    end = index + 1
    if turns[index].role is Role.ASSISTANT and turns[index].variant is not None:
        while end < len(turns) and turns[end].role is Role.ASSISTANT and turns[end].variant not in (None, 0):
            end += 1
    return list(range(index, end))


def _letter(turn: Turn) -> str:
    return LETTERS[turn.variant or 0]


@dataclass(frozen=True)
class VariantPanel:
    """Under the chat: the newest variants side by side, and which one the next edit uses."""

    box: gr.Group
    gallery: gr.Gallery
    use: gr.Radio


def build_variants() -> VariantPanel:
    with gr.Group(visible=False, elem_id="variants-box") as box:
        gallery = gr.Gallery(
            label="Variants",
            elem_id="variants-grid",
            columns=MAX_VARIANTS,
            height=240,
            object_fit="contain",
            allow_preview=True,
            interactive=False,
        )
        use = gr.Radio([], label=USE_THIS, elem_id="variant-pick")
    return VariantPanel(box, gallery, use)


def panel_update(
    panel: VariantPanel, conversation: Conversation | None, image_path: Callable[[ImagePart], str | Path]
) -> dict[Any, Any]:
    """The panel for ``conversation``: shown only when it ends with a batch of variants."""
    choices, picked = pick_choices(conversation)
    return {
        panel.box: gr.Group(visible=bool(choices)),
        panel.gallery: grid(conversation, image_path),
        panel.use: gr.Radio(choices=choices, value=picked),
    }


def variants_option() -> tuple[gr.Slider, gr.Markdown]:
    """The Variants option (1–4) and, beside it, what the next send could cost at most."""
    slider = gr.Slider(
        1, MAX_VARIANTS, value=1, step=1, label="Variants (answers at once, side by side)", elem_id="variants"
    )
    # What the page sends goes to parse_options as it came, like every option: Gradio's own check
    # fails on a null (a TypeError before any handler runs, which the page would take for a full
    # queue), while parse_options says "Variants must be between 1 and 4." or takes null as 1.
    slider.preprocess = _as_sent  # type: ignore[method-assign]
    cost = gr.Markdown(elem_id="variants-cost")
    return slider, cost


def _as_sent(payload: Any) -> Any:
    return payload
