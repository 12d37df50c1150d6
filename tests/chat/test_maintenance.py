"""Sweeping image files and rows nothing refers to, never what a turn is writing right now."""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from chat.config import Settings
from chat.conversation.service import Attachment
from chat.domain import Conversation
from chat.server.maintenance import MIN_GRACE_S, SweepReport, grace_for, sweep_orphans
from chat.sharing.access import Actor
from storage import DiskBlobStore, locks, session_scope
from storage import repository as repo
from tests.chat.test_service import OPTIONS
from tests.fakes import FakeProvider, collect, make_library, make_service, migrated_engine, reply_with_image
from tests.pictures import png
from tests.s3 import blob_store

pytestmark = pytest.mark.both_databases

OWNER = Actor("owner-" + "a" * 20)
NOW = datetime(2026, 12, 2, tzinfo=UTC)


async def kept_and_deleted(tmp_path, engine, blobs) -> tuple[Conversation, Conversation]:
    """Two of OWNER's conversations, each a photo and its answer, the second then deleted: its
    two images are what a sweep may take once they are old, the first's are in use."""
    provider = FakeProvider()
    service = make_service(tmp_path, provider, engine=engine, blobs=blobs)
    library = make_library(tmp_path, engine, service, blobs=blobs)
    provider.queue += [reply_with_image(png((1, 1, 1))), reply_with_image(png((2, 2, 2)))]
    kept = await collect(
        service.send(OWNER, None, "keep", [Attachment("a.png", png((3, 3, 3)))], options=OPTIONS)
    )
    doomed = await collect(
        service.send(OWNER, None, "drop", [Attachment("b.png", png((4, 4, 4)))], options=OPTIONS)
    )
    await library.delete(OWNER, doomed[-1].id)
    return kept[-1], doomed[-1]


async def test_orphans_go_and_everything_in_use_stays(tmp_path):
    engine = migrated_engine(tmp_path)
    blobs = DiskBlobStore(tmp_path / "images")
    kept, doomed = await kept_and_deleted(tmp_path, engine, blobs)
    crash_leftover = blobs.put(png((5, 5, 5)), "image/png").sha256  # written, then the process died
    fresh = blobs.put(png((6, 6, 6)), "image/png").sha256  # a turn being written right now
    old = time.time() - 7200
    os.utime(blobs.path(crash_leftover, "image/png"), (old, old))

    first = sweep_orphans(engine, blobs, grace_s=3600)  # now: only the crash leftover is old enough
    assert not blobs.exists(crash_leftover, "image/png")
    assert blobs.exists(fresh, "image/png")
    assert first.rows_removed == 0

    later = sweep_orphans(engine, blobs, grace_s=3600, now=time.time() + 3 * 3600)

    in_use = [p.sha256 for t in kept.turns for p in t.images()]
    assert in_use and all(blobs.exists(sha, "image/png") for sha in in_use)
    doomed_images = [p.sha256 for t in doomed.turns for p in t.images()]
    assert not any(blobs.exists(sha, "image/png") for sha in doomed_images)
    assert later.rows_removed == len(doomed_images) == 2
    assert not blobs.exists(fresh, "image/png")  # hours later, still unreferenced: gone too


def test_a_sweep_while_another_replica_sweeps_skips_and_removes_nothing(tmp_path):
    sweeping = migrated_engine(tmp_path)  # the other replica, on the same database
    engine = migrated_engine(tmp_path)
    blobs = DiskBlobStore(tmp_path / "images")
    leftover = blobs.put(png((5, 5, 5)), "image/png").sha256
    old = time.time() - 7200
    os.utime(blobs.path(leftover, "image/png"), (old, old))

    with locks.exclusive(sweeping, locks.SWEEP):
        skipped = sweep_orphans(engine, blobs, grace_s=3600)
    assert skipped == SweepReport(files_removed=0, rows_removed=0, skipped=True)
    assert blobs.exists(leftover, "image/png")

    assert sweep_orphans(engine, blobs, grace_s=3600) == SweepReport(files_removed=1, rows_removed=0)
    assert not blobs.exists(leftover, "image/png")


def test_the_grace_is_an_hour_or_the_longest_turn_if_longer():
    assert grace_for(Settings(_env_file=None).longest_turn_s) == MIN_GRACE_S == 3600  # 1500 s by default
    slow = Settings(_env_file=None, request_timeout_s=900, openai_timeout_s=900, retry_max_total_s=300)
    assert grace_for(slow.longest_turn_s) == 3 * (900 + 900) + 300


# --- on object storage ------------------------------------------------------------------------

LATER = 3 * 3600  # seconds ahead: what the sweep sees as old (moto cannot date an object back)


async def test_on_s3_orphans_go_and_everything_in_use_stays(tmp_path, s3, s3_bucket):
    engine = migrated_engine(tmp_path)
    blobs = blob_store(s3, s3_bucket, tmp_path / "cache")
    kept, doomed = await kept_and_deleted(tmp_path, engine, blobs)
    crash_leftover = blobs.put(png((5, 5, 5)), "image/png").sha256  # written, then the process died

    assert sweep_orphans(engine, blobs, grace_s=3600) == SweepReport(files_removed=0, rows_removed=0)
    report = sweep_orphans(engine, blobs, grace_s=3600, now=time.time() + LATER)

    in_use = [p.sha256 for t in kept.turns for p in t.images()]
    assert in_use and all(blobs.exists(sha, "image/png") for sha in in_use)
    doomed_images = [p.sha256 for t in doomed.turns for p in t.images()]
    assert not any(blobs.exists(sha, "image/png") for sha in [*doomed_images, crash_leftover])
    assert report == SweepReport(files_removed=3, rows_removed=2)


class Aged:
    """The S3 store with every object listed as put ``LATER`` seconds ago (moto dates them now),
    so a sweep at the real time finds the objects old and the rows a turn writes young."""

    def __init__(self, inner) -> None:
        self._inner = inner

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def stored(self):
        return [replace(blob, modified=blob.modified - LATER) for blob in self._inner.stored()]


class SweepDuring:
    """The S3 store, with another replica's sweep run at one moment of a turn's write:
    ``when="put"`` right after a put found the image stored already (before the turn records its
    row), ``when="exists"`` once the writer checks the object again (its row recorded)."""

    def __init__(self, inner, engine, when: str) -> None:
        self._inner, self._engine, self._when = inner, engine, when
        self.reports: list[SweepReport] = []

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def _sweep(self) -> None:
        self.reports.append(sweep_orphans(self._engine, Aged(self._inner), grace_s=3600))

    def put(self, data, mime_type):
        put = self._inner.put(data, mime_type)
        if not put.young and self._when == "put" and not self.reports:
            self._sweep()
        return put

    def exists(self, sha256, mime_type):
        if self._when == "exists" and not self.reports:
            self._sweep()
        return self._inner.exists(sha256, mime_type)


@pytest.mark.parametrize("when", ["put", "exists"])
async def test_a_turn_storing_an_old_orphan_again_while_a_sweep_runs_keeps_its_object(
    tmp_path, s3, s3_bucket, when
):
    """Write-once: the second put cannot make the orphan young. Swept before the turn's row is
    in, the object is put again; swept after, the row keeps it. Either way the turn's image is there."""
    engine = migrated_engine(tmp_path)
    inner = blob_store(s3, s3_bucket, tmp_path / "cache")
    orphan = png((7, 7, 7))
    sha = inner.put(orphan, "image/png").sha256  # an old orphan: stored, no row refers to it
    blobs = SweepDuring(inner, engine, when)
    provider = FakeProvider()
    provider.queue.append(reply_with_image(png((8, 8, 8))))
    service = make_service(tmp_path, provider, engine=engine, blobs=blobs)

    [*_, stored] = await collect(
        service.send(OWNER, None, "again", [Attachment("o.png", orphan)], options=OPTIONS)
    )

    assert [p.sha256 for p in stored.turns[0].images()] == [sha]
    removed = {"put": 1, "exists": 0}[when]
    assert [r.files_removed for r in blobs.reports] == [removed]
    assert inner.exists(sha, "image/png")
    assert sweep_orphans(engine, Aged(inner), grace_s=3600).files_removed == 0


def test_the_sweep_holds_only_images_without_a_row(tmp_path):
    engine = migrated_engine(tmp_path)
    with_row, without = png((1, 2, 3)), png((3, 2, 1))
    shas = [hashlib.sha256(data).hexdigest() for data in (with_row, without)]
    with session_scope(engine) as session:
        repo.save_image(
            session=session, sha256=shas[0], mime_type="image/png", width=1, height=1, size_bytes=1, now=NOW
        )
    with session_scope(engine) as session:
        assert repo.hold_missing_image(session=session, sha256=shas[0]) is False
        assert repo.hold_missing_image(session=session, sha256=shas[1]) is True
        repo.release_missing_image(session=session, sha256=shas[1])
    with session_scope(engine, read_only=True) as session:
        assert repo.image_shas(session=session) == {shas[0]}
