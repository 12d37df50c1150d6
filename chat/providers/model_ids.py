"""What a model id may look like, whichever provider it is for (checked before any request).

Each provider's models and what they accept are in its own package (``chat.providers.<name>.catalog``).
"""

from __future__ import annotations

import re
from typing import TypeGuard

__all__ = ["MODEL_ID_MAX_CHARS", "MODEL_ID_RULE", "is_model_id"]

# --- model ids ------------------------------------------------------------------------------
# Gemini puts the id into the URL path (``models/{id}:generateContent``) and OpenAI into the
# body. Every id either provider has used (gemini-3.1-flash-image, gemini-nano-banana-2.1,
# gemini-2.0-flash-exp-image-generation, gpt-image-2.5-sunburst-2026-09-08, chatgpt-image-latest,
# dall-e-3) is lowercase words and numbers joined by single dots, dashes or underscores. Nothing
# else is admitted, so an id can never carry "/", "..", "%", ":", "?", "#", a space or a newline
# into a URL, and unknown but well-formed ids (newer releases) still pass.
MODEL_ID_MAX_CHARS = 64
_MODEL_ID = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")
MODEL_ID_RULE = (
    "lowercase letters and digits joined by single dots, dashes or underscores, "
    f"at most {MODEL_ID_MAX_CHARS} characters, e.g. gemini-3.1-flash-image or gpt-image-2"
)


def is_model_id(value: object) -> TypeGuard[str]:
    """Whether ``value`` is shaped like a model id (``MODEL_ID_RULE``), whole string, no trimming."""
    return isinstance(value, str) and len(value) <= MODEL_ID_MAX_CHARS and bool(_MODEL_ID.fullmatch(value))
