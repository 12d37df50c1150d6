"""An image store outage mid-turn: a clear sentence, the user's message kept, nothing half-written.

A store that goes down on cue (``Switchable``) covers each moment of a turn; one test runs
the real S3 store against an endpoint where nothing listens.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chat.conversation.service import Attachment
from chat.domain import ImagePart, ImageRole
from chat.errors import StorageUnavailableError
from chat.server.maintenance import SweepReport, sweep_orphans
from chat.sharing.access import Actor
from chat.ui.files import FileMaker
from storage import DiskBlobStore, Put, session_scope
from storage import repository as repo
from storage.s3 import S3BlobStore, S3Location
from tests.app_process import free_port
from tests.chat.test_service import OPTIONS
from tests.fakes import FakeProvider, collect, make_service, migrated_engine, reply_with_image
from tests.pictures import png

OWNER = Actor("owner-" + "b" * 20)
SENTENCE = StorageUnavailableError("put").user_message()


class Switchable(DiskBlobStore):
    """The disk store, failing every call as an unreachable S3 would while ``down``."""

    down = False

    def _check(self, operation: str) -> None:
        if self.down:
            raise StorageUnavailableError(operation)

    def put(self, data: bytes, mime_type: str) -> Put:
        self._check("put")
        return super().put(data, mime_type)

    def read(self, sha256: str, mime_type: str) -> bytes:
        self._check("get")
        return super().read(sha256, mime_type)

    def local_path(self, sha256: str, mime_type: str) -> Path:
        self._check("get")
        return super().local_path(sha256, mime_type)


class FailsWhenCalled(FakeProvider):
    """The provider answers; by then (on its first call) the image store has gone down."""

    def __init__(self, blobs: Switchable) -> None:
        super().__init__()
        self._blobs = blobs

    async def reply(self, history, options, load_image, *, api_key=None, progress=None):
        reply = await super().reply(history, options, load_image, api_key=api_key, progress=progress)
        self._blobs.down = len(self.calls) == 1
        return reply


def stored_images(engine) -> set[str]:
    with session_scope(engine, read_only=True) as session:
        return repo.image_shas(session=session)


def conversations(engine) -> list[str]:
    with session_scope(engine, read_only=True) as session:
        return [c.id for c in repo.list_conversations(session=session, owner_id=OWNER.owner_id)]


async def test_a_message_whose_photo_cannot_be_stored_is_refused_and_nothing_is_written(tmp_path):
    engine = migrated_engine(tmp_path)
    blobs = Switchable(tmp_path / "images")
    provider = FakeProvider()
    service = make_service(tmp_path, provider, engine=engine, blobs=blobs)
    blobs.down = True

    with pytest.raises(StorageUnavailableError) as refused:
        await collect(
            service.send(OWNER, None, "edit", [Attachment("a.png", png((1, 1, 1)))], options=OPTIONS)
        )

    assert refused.value.user_message() == SENTENCE  # the UI shows it; the box keeps the message
    assert conversations(engine) == [] and stored_images(engine) == set()
    assert provider.calls == []


async def test_an_answer_whose_image_cannot_be_stored_is_a_failed_turn_after_the_kept_message(tmp_path):
    engine = migrated_engine(tmp_path)
    blobs = Switchable(tmp_path / "images")
    provider = FailsWhenCalled(blobs)
    provider.queue.append(reply_with_image(png((2, 2, 2))))
    service = make_service(tmp_path, provider, engine=engine, blobs=blobs)

    [stored, failed] = await collect(
        service.send(OWNER, None, "edit", [Attachment("a.png", png((1, 1, 1)))], options=OPTIONS)
    )

    assert [t.role.value for t in failed.turns] == ["user", "assistant"]
    assert failed.turns[0] == stored.turns[0]  # the message, with its photo, is kept
    answer = failed.turns[1]
    assert answer.error is not None and (answer.error.kind, answer.error.message) == ("storage", SENTENCE)
    assert (
        answer.provider == "gemini" and not answer.images()
    )  # who answered; no image row without its object
    assert stored_images(engine) == {p.sha256 for p in failed.turns[0].images()}

    blobs.down = False
    provider.queue.append(reply_with_image(png((2, 2, 2))))
    [*_, retried] = await collect(service.retry(OWNER, failed.id, options=OPTIONS))
    assert retried.turns[-1].status.value == "ok" and retried.turns[-1].images()


async def test_a_history_image_that_cannot_be_read_fails_the_turn_with_the_same_sentence(tmp_path):
    engine = migrated_engine(tmp_path)
    blobs = Switchable(tmp_path / "images")
    provider = FakeProvider()
    provider.queue.append(reply_with_image(png((2, 2, 2))))
    service = make_service(tmp_path, provider, engine=engine, blobs=blobs)
    [*_, first] = await collect(
        service.send(OWNER, None, "edit", [Attachment("a.png", png((1, 1, 1)))], options=OPTIONS)
    )
    blobs.down = True

    [*_, after] = await collect(service.send(OWNER, first.id, "and now brighter", options=OPTIONS))

    assert [t.text() for t in after.turns if t.role.value == "user"] == ["edit", "and now brighter"]
    assert after.turns[-1].error is not None and after.turns[-1].error.kind == "storage"


async def test_on_an_unreachable_s3_a_message_with_a_photo_is_refused_and_nothing_is_written(tmp_path):
    engine = migrated_engine(tmp_path)
    environ = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}", "AWS_ACCESS_KEY_ID": "k"}
    blobs = S3BlobStore.connect(
        S3Location("retouch-images"),
        tmp_path / "cache",
        environ={**environ, "AWS_SECRET_ACCESS_KEY": "s"},
        retries=0,
    )
    service = make_service(tmp_path, FakeProvider(), engine=engine, blobs=blobs)

    with pytest.raises(StorageUnavailableError):
        await collect(
            service.send(OWNER, None, "edit", [Attachment("a.png", png((1, 1, 1)))], options=OPTIONS)
        )
    assert conversations(engine) == [] and stored_images(engine) == set()


def test_pages_show_a_grey_tile_while_downloads_say_why(tmp_path):
    blobs = Switchable(tmp_path / "images")
    sha = blobs.put(png((3, 3, 3)), "image/png").sha256
    files = FileMaker(lambda part: blobs.local_path(part.sha256, part.mime_type), tmp_path / "files")
    part = ImagePart(sha, "image/png", role=ImageRole.INPUT)
    blobs.down = True

    assert files.image(part) == files.thumbnail(part) == str(tmp_path / "files" / "no-image.png")
    with pytest.raises(StorageUnavailableError):
        files.download(part)


def test_a_sweep_while_the_store_is_down_skips_the_files_and_still_starts(tmp_path):
    engine = migrated_engine(tmp_path)
    down = S3BlobStore.connect(
        S3Location("retouch-images"),
        tmp_path / "cache",
        environ={"AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"},
        retries=0,
    )

    assert sweep_orphans(engine, down, grace_s=3600) == SweepReport(files_removed=0, rows_removed=0)
