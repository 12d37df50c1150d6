"""Housekeeping: image files and rows that nothing refers to any more.

An image is written before the row that refers to it, so a crash (or a refused turn) can
leave a file with no row; deleting a conversation leaves image rows no part uses. Both are
swept, but only when older than a grace period, so a turn being written right now, on this
replica or another, is safe: the grace (``grace_for``) is an hour, or the longest a turn can
take if that is longer (``Settings.longest_turn_s``), which bounds the time from a turn writing
its files to committing its rows, and storing an image again makes its file and row young
(``BlobStore.put``, ``repository.save_image``). One replica sweeps at a time (``storage/locks.py``);
a replica starting while another sweeps skips its sweep rather than repeating it.

Object storage is write-once (storage/s3.py): a turn storing an image whose object is already
there, and old, cannot make it young again, so the age alone cannot protect it. Each object is
therefore deleted in a transaction that holds its image's row (``repository.hold_missing_image``:
a placeholder, never committed) and only if no row was there: a turn recording that image's row
waits for the deletion and then finds the object gone, and puts it again (the turn writer
records the row first and checks the object after, chat/conversation/turns.py); a row committed
before it keeps the object. So a turn never commits a row whose object a sweep took, on either
database. The same holds on disk, where the file's time closes the race on its own as well.
An unreachable image store skips the file sweep (the rows are swept all the same).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.engine import Engine

from chat.errors import StorageUnavailableError
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
        files = _remove_unreferenced(engine, blobs, known, older_than)
    report = SweepReport(files_removed=files, rows_removed=rows)
    if report.files_removed or report.rows_removed:
        log.info(
            "swept %d image files and %d image rows nothing referred to",
            report.files_removed,
            report.rows_removed,
        )
    return report


def _remove_unreferenced(engine: Engine, blobs: BlobStore, known: set[str], older_than: float) -> int:
    """Stored images with no row, last put before ``older_than``, each deleted while its row is held."""
    removed = 0
    try:
        for blob in blobs.stored():
            if blob.sha256 in known or blob.modified >= older_than:
                continue
            with session_scope(engine) as session:
                if repo.hold_missing_image(session=session, sha256=blob.sha256):
                    removed += blobs.remove(blob, older_than=older_than)
                    repo.release_missing_image(session=session, sha256=blob.sha256)
    except StorageUnavailableError:
        log.warning("the image store did not answer: unused images stay until the next sweep")
    return removed
