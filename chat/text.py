"""One-line texts other people see (titles): no control characters, no bidi overrides.

A title travels into other browsers (shared links), file names and logs. Control characters
(U+0000-U+001F, U+007F-U+009F) can forge log lines or break layouts; the bidi embedding,
override and isolate characters (U+202A-U+202E, U+2066-U+2069) make a title read differently
from what it is ("gpj.exe" shown as "exe.jpg"). Both go; runs of whitespace become one space.
"""

from __future__ import annotations

import re

__all__ = ["one_line"]

_UNSAFE = re.compile("[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]")


def one_line(text: str) -> str:
    """``text`` as a single safe line: unsafe characters become spaces, whitespace is collapsed."""
    return " ".join(_UNSAFE.sub(" ", text).split())
