"""Housekeeping: image files and rows that nothing refers to any more.

An image is written before the row that refers to it, so a crash (or a refused turn) can
leave a file with no row; deleting a conversation leaves image rows no part uses. Both are
swept, but only when older than a grace period, so a turn being written right now, on this
replica or another, is safe: the grace (``grace_for``) is an hour, or the longest a turn can
take if that is longer (``Settings.longest_turn_s``), which bounds the time from a turn writing
its files to committing its rows, and storing an image again makes its file and row young
(``BlobStore.put``, ``repository.save_image``). One replica sweeps at a time (``storage/locks.py``);
a replica starting while another sweeps skips its sweep rather than repeating it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.engine import Engine

from storage import BlobStore, locks, session_scope
from storage import repository as repo

__all__ = ["MIN_GRACE_S", "SweepReport", "grace_for", "sweep_orphans"]

log = logging.getLogger("retouch.maintenance")
MIN_GRACE_S = 3600.0


@dataclass(frozen=True)
class SweepReport:
    files_removed: int
    rows_removed: int
    skipped: bool = False  # another replica was sweeping


def grace_for(longest_turn_s: float) -> float:
    """How old an unreferenced file or row must be before it goes."""
    return max(MIN_GRACE_S, longest_turn_s)


def sweep_orphans(
    engine: Engine, blobs: BlobStore, *, grace_s: float = MIN_GRACE_S, now: float | None = None
) -> SweepReport:
    now = time.time() if now is None else now
    older_than = now - grace_s
    with locks.exclusive(engine, locks.SWEEP, wait=False) as ours:
        if not ours:
            log.info("another replica is sweeping unused images; this one skips its sweep")
            return SweepReport(files_removed=0, rows_removed=0, skipped=True)
        with session_scope(engine) as session:
            rows = repo.delete_unreferenced_images(
                session=session, created_before=datetime.fromtimestamp(older_than, UTC)
            )
            known = repo.image_shas(session=session)
        files = sum(
            blobs.remove_stale(path, older_than=older_than) for sha, path in blobs.files() if sha not in known
        )
    report = SweepReport(files_removed=files, rows_removed=rows)
    if report.files_removed or report.rows_removed:
        log.info(
            "swept %d image files and %d image rows nothing referred to",
            report.files_removed,
            report.rows_removed,
        )
    return report
