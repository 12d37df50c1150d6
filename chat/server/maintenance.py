"""Housekeeping: image files and rows that nothing refers to any more.

An image is written before the row that refers to it, so a crash (or a refused turn) can
leave a file with no row; deleting a conversation leaves image rows no part uses. Both are
swept, but only when older than a grace period, so a turn being written right now is safe.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine

from storage import BlobStore, session_scope
from storage import repository as repo

__all__ = ["SweepReport", "sweep_orphans"]

log = logging.getLogger("retouch.maintenance")
GRACE_S = 3600.0


@dataclass(frozen=True)
class SweepReport:
    files_removed: int
    rows_removed: int


def sweep_orphans(
    engine: Engine, blobs: BlobStore, *, grace_s: float = GRACE_S, now: float | None = None
) -> SweepReport:
    now = time.time() if now is None else now
    cutoff = datetime.fromtimestamp(now, UTC) - timedelta(seconds=grace_s)
    with session_scope(engine) as session:
        unused = repo.unreferenced_images(session=session, created_before=cutoff)
        for sha, _mime in unused:
            repo.delete_image(session=session, sha256=sha)
        known = repo.image_shas(session=session)
    for sha, mime in unused:
        blobs.delete(sha, mime)
    files = 0
    for sha, path in blobs.files():
        if sha not in known and path.stat().st_mtime < now - grace_s:
            path.unlink(missing_ok=True)
            files += 1
    report = SweepReport(files_removed=files + len(unused), rows_removed=len(unused))
    if report.files_removed or report.rows_removed:
        log.info(
            "swept %d image files and %d image rows nothing referred to",
            report.files_removed,
            report.rows_removed,
        )
    return report
