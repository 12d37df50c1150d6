"""A running call's progress -> what the page shows while it runs, and what API callers read.

Pure functions over the domain's cumulative ``Progress`` snapshots (chat/domain.py): the pending
bubble says where the call is in words ("Gemini is thinking…", "Gemini: draft 1 of 2", "Gemini
failed: …. Asking OpenAI…"), with the model and the time so far, the thoughts so far (collapsed, as a
stored turn's "Thinking" is), the answer's text so far and the newest draft, labelled as a draft.
Nothing here is stored: the answer, once stored, replaces all of it (chat/ui/render.py renders it).

The elapsed time ticks in the browser (``ELAPSED_JS``), so the server renders only when the call
shows something new. Gradio's Chatbot sanitizer drops ``data-*`` attributes but keeps ``class``
(checked in chromium against gradio 6.31), so the seconds at render time travel in a class name
(``retouch-elapsed-12``), and the page adds the seconds since it first saw that element: no clock
of the server's is compared with the browser's.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from chat.domain import Phase, Progress
from chat.errors import PROVIDER_NAMES
from chat.ui.variants import LETTERS

__all__ = [
    "ELAPSED_CLASS",
    "ELAPSED_JS",
    "draft_label",
    "elapsed_html",
    "phase_line",
    "progress_json",
    "progress_messages",
    "turn_progress_json",
    "turn_progress_messages",
]

Message = dict[str, Any]
ELAPSED_CLASS = "retouch-elapsed"

#: Run once per page (a js-only load event): ticks every elapsed-time element once a second.
ELAPSED_JS = """() => {
  if (window.retouchElapsed) { return []; }
  const seen = new WeakMap();
  window.retouchElapsed = setInterval(() => {
    const now = Date.now();
    for (const element of document.querySelectorAll('.retouch-elapsed')) {
      const match = /retouch-elapsed-(\\d+)/.exec(element.className);
      if (!match) { continue; }
      if (!seen.has(element)) { seen.set(element, now); }
      const seconds = Number(match[1]) + Math.floor((now - seen.get(element)) / 1000);
      const text = seconds + ' s';
      if (element.textContent !== text) { element.textContent = text; }
    }
  }, 1000);
  return [];
}"""


def elapsed_html(seconds: float) -> str:
    """ "12 s" in a span the page keeps ticking (``ELAPSED_JS``)."""
    whole = max(0, int(seconds))
    return f'<span class="{ELAPSED_CLASS} {ELAPSED_CLASS}-{whole}">{whole} s</span>'


def _name(provider: str) -> str:
    return PROVIDER_NAMES.get(provider, provider)


def draft_label(progress: Progress) -> str:
    """ "Draft 1 of 2" ("Draft 1" when the call did not say how many)."""
    count = len(progress.drafts)
    return f"Draft {count} of {progress.drafts_expected}" if progress.drafts_expected else f"Draft {count}"


def phase_line(progress: Progress | None, working_model: str) -> str:
    """Where the call is, in words: "Gemini is thinking…", "Gemini: draft 1 of 2", …"""
    if progress is None:
        return f"Editing with {working_model}\u2026"
    name = _name(progress.provider)
    match progress.phase:
        case Phase.WAITING:
            return f"Asked {name}, waiting for its answer\u2026"
        case Phase.THINKING:
            return f"{name} is thinking\u2026"
        case Phase.WRITING:
            return f"{name} is writing\u2026"
        case Phase.DRAFT:
            return f"{name}: {draft_label(progress).lower()}"
        case Phase.FINAL:
            return f"{name}: final image, finishing\u2026"
        case Phase.RETRYING:
            return progress.note or f"{name} failed: trying again\u2026"
        case Phase.FALLING_BACK:
            why = progress.note.rstrip(". ") or "the first provider failed"
            return f"{why}. Asking {name}\u2026"
    return f"{name} is working\u2026"


def progress_messages(
    progress: Progress | None, *, working_model: str, elapsed_s: float, draft_path: str | None = None
) -> list[Message]:
    """The thoughts so far (collapsed), the pending bubble (phase, model, elapsed time, the answer's
    text so far), and the newest draft, captioned (``draft_path``: its staged file, chat/ui/files.py)."""
    messages: list[Message] = []
    if progress is not None and progress.thoughts:
        messages.append(
            {"role": "assistant", "content": progress.thoughts, "metadata": {"title": "Thinking"}}
        )
    words = [html.escape(phase_line(progress, working_model), quote=False)]
    if progress is not None:  # before anything arrives, the phase line names the model already
        words.append(html.escape(progress.model or working_model))
    title = " \u00b7 ".join([*words, elapsed_html(elapsed_s)])
    text = progress.text if progress is not None and progress.text else ""
    messages.append(
        {
            "role": "assistant",
            "content": text or "This usually takes 10\u201360 seconds. Your message is saved.",
            "metadata": {"title": title, "status": "pending"},
        }
    )
    if progress is not None and progress.drafts and draft_path is not None:
        # A message of its own: Gradio splits a list of contents into messages that each repeat
        # the metadata box, and drops an image's alt text inside one.
        label = f"{draft_label(progress)} \u2014 the final image replaces it"
        messages.append(
            {"role": "assistant", "content": [{"path": draft_path, "alt_text": label}, f"*{label}*"]}
        )
    return messages


def turn_progress_messages(
    progress: Sequence[Progress | None],
    *,
    working_model: str,
    elapsed_s: float,
    draft_paths: Sequence[str | None] = (),
) -> list[Message]:
    """``progress_messages`` for a turn's calls: one call as above; variants as one pending bubble
    with a line per variant ("b: Gemini: draft 1") and each variant's newest draft, captioned with its
    letter (``draft_paths``: one staged file, or None, per call)."""
    if len(progress) <= 1:
        only = progress[0] if progress else None
        path = draft_paths[0] if draft_paths else None
        return progress_messages(only, working_model=working_model, elapsed_s=elapsed_s, draft_path=path)
    title = " \u00b7 ".join(
        [f"Making {len(progress)} variants", html.escape(working_model), elapsed_html(elapsed_s)]
    )
    lines = [
        f"**{LETTERS[index]}**: {html.escape(phase_line(each, working_model), quote=False)}"
        for index, each in enumerate(progress)
    ]
    messages: list[Message] = [
        {
            "role": "assistant",
            "content": "\n\n".join(lines),
            "metadata": {"title": title, "status": "pending"},
        }
    ]
    for index, (each, path) in enumerate(zip(progress, draft_paths, strict=False)):
        if each is not None and each.drafts and path is not None:
            label = (
                f"Variant {LETTERS[index]}: {draft_label(each).lower()} \u2014 the final image replaces it"
            )
            messages.append(
                {"role": "assistant", "content": [{"path": path, "alt_text": label}, f"*{label}*"]}
            )
    return messages


def turn_progress_json(
    progress: Sequence[Progress | None], *, working_model: str, elapsed_s: float
) -> dict[str, Any]:
    """``progress_json`` of the first call, and with variants each call's under ``variants``."""
    first = progress_json(progress[0] if progress else None, working_model=working_model, elapsed_s=elapsed_s)
    if len(progress) <= 1:
        return first
    each = [progress_json(p, working_model=working_model, elapsed_s=elapsed_s) for p in progress]
    return {**first, "variants": each}


def progress_json(progress: Progress | None, *, working_model: str, elapsed_s: float) -> dict[str, Any]:
    """What an API caller reads of a running call: no image bytes, no signatures."""
    return {
        "phase": progress.phase.value if progress else Phase.WAITING.value,
        "provider": progress.provider if progress else None,
        "model": (progress.model if progress else "") or working_model,
        "elapsed_s": round(max(0.0, elapsed_s), 1),
        "text": progress.text if progress else "",
        "thoughts": progress.thoughts if progress else "",
        "drafts": len(progress.drafts) if progress else 0,
        "drafts_expected": progress.drafts_expected if progress else None,
        "note": progress.note if progress else "",
        "line": phase_line(progress, working_model),
    }
