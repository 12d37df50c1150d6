"""Sweeping image files and rows nothing refers to, never what a turn is writing right now."""

from __future__ import annotations

import os
import time

import pytest

from chat.config import Settings
from chat.conversation.service import Attachment
from chat.server.maintenance import MIN_GRACE_S, SweepReport, grace_for, sweep_orphans
from chat.sharing.access import Actor
from storage import DiskBlobStore, locks
from tests.chat.test_service import OPTIONS
from tests.fakes import FakeProvider, collect, make_library, make_service, migrated_engine, reply_with_image
from tests.pictures import png

pytestmark = pytest.mark.both_databases

OWNER = Actor("owner-" + "a" * 20)


async def test_orphans_go_and_everything_in_use_stays(tmp_path):
    engine = migrated_engine(tmp_path)
    blobs = DiskBlobStore(tmp_path / "images")
    provider = FakeProvider()
    service = make_service(tmp_path, provider, engine=engine)
    library = make_library(tmp_path, engine, service)
    provider.queue += [reply_with_image(png((1, 1, 1))), reply_with_image(png((2, 2, 2)))]
    kept = await collect(
        service.send(OWNER, None, "keep", [Attachment("a.png", png((3, 3, 3)))], options=OPTIONS)
    )
    doomed = await collect(
        service.send(OWNER, None, "drop", [Attachment("b.png", png((4, 4, 4)))], options=OPTIONS)
    )
    await library.delete(OWNER, doomed[-1].id)
    crash_leftover = blobs.put(png((5, 5, 5)), "image/png").sha256  # written, then the process died
    fresh = blobs.put(png((6, 6, 6)), "image/png").sha256  # a turn being written right now
    old = time.time() - 7200
    os.utime(blobs.path(crash_leftover, "image/png"), (old, old))

    first = sweep_orphans(engine, blobs, grace_s=3600)  # now: only the crash leftover is old enough
    assert not blobs.exists(crash_leftover, "image/png")
    assert blobs.exists(fresh, "image/png")
    assert first.rows_removed == 0

    later = sweep_orphans(engine, blobs, grace_s=3600, now=time.time() + 3 * 3600)

    in_use = [p.sha256 for t in kept[-1].turns for p in t.images()]
    assert in_use and all(blobs.exists(sha, "image/png") for sha in in_use)
    doomed_images = [p.sha256 for t in doomed[-1].turns for p in t.images()]
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
