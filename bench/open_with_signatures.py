"""What opening a conversation costs when its answers carry big thought signatures:
``python -m bench.open_with_signatures``.

Gemini 3 signatures are reported at 1-2 MB a part (gemini-api.md §4). A conversation of ten
answered turns, each with a signed text part and a signed image (1 MB of base64 each), is
loaded as a page shows it (``replayable=False``: the parts' provider metadata not read) and
whole, as a turn replays it. SQLite in a temporary folder; CPU and wall time per load, medians.
"""

from __future__ import annotations

import base64
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from chat.conversation.turns import NewConversation, NewImage, TurnWriter
from chat.domain import Conversation, ImagePart, ImageRole, Role, TextPart, Turn, frozen_metadata
from storage import DiskBlobStore, make_engine, migrate, session_scope
from storage import repository as repo
from tests.pictures import png

TURNS = 10
SIGNATURE_BYTES = 750_000  # 1 MB of base64


def main() -> None:
    folder = Path(tempfile.mkdtemp())
    engine = make_engine(f"sqlite:///{folder}/retouch.sqlite")
    migrate(engine)
    writer = TurnWriter(
        engine=engine, blobs=DiskBlobStore(folder / "images"), clock=lambda: datetime.now(UTC)
    )
    meta = frozen_metadata(
        {"gemini": {"thoughtSignature": base64.b64encode(os.urandom(SIGNATURE_BYTES)).decode()}}
    )
    conversation: Conversation | NewConversation = NewConversation(
        "c" * 22, "bench", "owner-of-the-bench-run"
    )
    for n in range(TURNS):
        image = NewImage.of(png((n, n, n)), "image/png")
        answer = ImagePart(image.sha256, "image/png", role=ImageRole.ANSWER, provider_metadata=meta)
        turns = [
            Turn(role=Role.USER, parts=(TextPart(f"edit {n}"),)),
            Turn(
                role=Role.ASSISTANT,
                parts=(TextPart("Done.", provider_metadata=meta), answer),
                provider="gemini",
            ),
        ]
        conversation = writer.append(conversation, turns, [image])
    for replayable in (False, True):
        cpu, wall = [], []
        for _ in range(7):
            started, used = time.perf_counter(), time.process_time()
            with session_scope(engine, read_only=True) as session:
                repo.get_conversation(session=session, conversation_id="c" * 22, replayable=replayable)
            wall.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - used) * 1000)
        what = "whole (replay)" if replayable else "to be shown"
        report = f"{what:>15}: {statistics.median(cpu):6.1f} ms CPU, {statistics.median(wall):6.1f} ms wall per load"
        print(report)  # noqa: T201 - the bench's report


if __name__ == "__main__":
    main()
