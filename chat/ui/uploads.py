"""Reading what Gradio received: only from its upload folder, never from a caller-chosen path."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from chat.conversation.service import Attachment
from chat.errors import InputError
from chat.media.images import describe_size

__all__ = ["file_path", "read_uploads", "upload_root"]


def upload_root() -> Path:
    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio").resolve()


def file_path(value: object) -> str:
    return value.get("path", "") if isinstance(value, dict) else str(getattr(value, "path", value))


def read_uploads(paths: Sequence[object], *, max_bytes: int) -> list[Attachment]:
    """Read uploaded files, refusing anything outside Gradio's upload folder or over the size limit."""
    root = upload_root()
    attachments = []
    for raw in paths:
        path = Path(file_path(raw)).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            raise InputError("That upload could not be found; please attach the file again.")
        size = path.stat().st_size
        if size > max_bytes:
            raise InputError(
                f"\u201c{path.name}\u201d is {describe_size(size)}; the limit is {describe_size(max_bytes)}. "
                "Please upload a smaller file."
            )
        attachments.append(Attachment(name=path.name, data=path.read_bytes()))
    return attachments
