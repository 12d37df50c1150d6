"""A stranger against the real app: nobody else's conversations, files, links or limits.

A victim makes conversations through the documented API; then every event registered on the
Blocks (walked from ``/config``, not listed by hand) is called with null and garbage inputs,
the image store is asked for by path, a read-only token tries to own a fork, and rotating
keys and forwarded addresses tries to reset the rate limit. Logs and the database are read
for what must never be in them.
"""

from __future__ import annotations

import io
import os
import secrets
import sqlite3
import stat
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from tests.app_process import ROOT, AppRun, app_run
from tests.hostile.events import Event, call, events
from tests.pictures import png

VICTIM = "victim-" + "v" * 20
TITLE = "Quartz-heron secret plans"
GARBAGE: tuple[object, ...] = (None, "", "garbage", 12345, [], {"x": 1}, "' OR 1=1 --", "*")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile-data")


@pytest.fixture(scope="module")
def app(data_dir: Path, emulator_url: str) -> Iterator[AppRun]:
    with app_run(data_dir, emulator_url, RETOUCH_RATE_PER_MINUTE="100") as run:
        yield run


@pytest.fixture(scope="module")
def victim(app: AppRun, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two conversations of the victim's with an uploaded photo, an answer and a share link."""
    photo = tmp_path_factory.mktemp("photo") / "street.png"
    photo.write_bytes(png((200, 30, 90), (96, 64)))
    client = Client(app.url, verbose=False, download_files=False)
    first = client.predict(
        "", f"{TITLE}: make the sky stormy", [handle_file(str(photo))], key=VICTIM, api_name="/send"
    )
    second = client.predict("", f"{TITLE} two", key=VICTIM, api_name="/send")
    token = client.predict(first["conversation_id"], "view", key=VICTIM, api_name="/share")
    shas = {image["sha256"] for c in (first, second) for t in c["turns"] for image in t["images"]}
    assert len(shas) >= 3
    return {"client": client, "conversations": [first, second], "token": token, "shas": shas}


def secrets_of(victim: dict) -> list[str]:
    """What no stranger may see: titles, texts, ids, image hashes (file URLs carry them too)."""
    found = [TITLE, VICTIM, victim["token"], *victim["shas"]]
    for conversation in victim["conversations"]:
        found.append(conversation["conversation_id"])
    return found


def payloads(event: Event) -> Iterator[tuple[list[object], object]]:
    """Every input at once set to each garbage value, with and without select-style event data."""
    for value in GARBAGE:
        data = [value] * len(event.inputs)
        yield data, None
        yield data, {"index": 0, "value": None, "selected": True}


def test_every_event_called_with_garbage_shows_nothing_of_another_owner(app: AppRun, victim: dict):
    found = events(app.url)
    assert len(found) >= 20  # the walk covers the whole UI and API, not a list kept by hand
    hidden = secrets_of(victim)
    before = len(app.log)
    for event in found:
        for data, event_data in payloads(event):
            result = call(app.url, event, data, event_data=event_data)
            leaked = [secret for secret in hidden if secret in result.raw]
            assert not leaked, (
                f"event {event.fn_index} ({event.trigger}, {event.api_name}) with {data[:1]}: {leaked}"
            )
    # Garbage is refused by our code without a crash: any traceback left is Gradio's own
    # (JS-only events called on the server, payloads its components cannot preprocess).
    ours = [
        line for line in app.log[before:] if f'File "{ROOT}/chat' in line or f'File "{ROOT}/storage' in line
    ]
    assert not ours, ours[:5]


def test_no_conversation_is_ever_stored_without_an_owner(app: AppRun, victim: dict, data_dir: Path):
    submit = next(e for e in events(app.url) if e.trigger == "submit")
    text = {"text": "an unowned turn?", "files": []}
    for owner in (None, "", 42, "short"):
        inputs = [text, "", "", owner] + [None] * (len(submit.inputs) - 4)
        call(app.url, submit, inputs)
    with sqlite3.connect(data_dir / "retouch.sqlite3") as db:
        unowned = db.execute("select count(*) from conversation where owner_id is null").fetchone()[0]
        owners = {row[0] for row in db.execute("select owner_id from conversation")}
    assert unowned == 0
    assert VICTIM in owners and all(owner and len(owner) >= 16 for owner in owners)
    # The victim's list is still exactly theirs.
    listed = victim["client"].predict(VICTIM, api_name="/conversations")
    assert {c["conversation_id"] for c in listed} >= {c["conversation_id"] for c in victim["conversations"]}


def test_the_image_store_is_not_served_by_path(app: AppRun, victim: dict, data_dir: Path):
    for sha in victim["shas"]:
        master = data_dir / "images" / sha[:2] / f"{sha}.png"
        if not master.exists():
            continue
        for path in (str(master), str(master.resolve()), f"/data/images/{sha[:2]}/{sha}.png"):
            response = httpx.get(f"{app.url}gradio_api/file={path}")
            assert response.status_code == 403, path
    client = victim["client"]
    [first, _] = victim["conversations"]
    # The owner still gets every image, through the access-checked /image endpoint.
    downloader = Client(app.url, verbose=False)
    sha = first["turns"][-1]["image_sha256"]
    got = downloader.predict(first["conversation_id"], sha, key=VICTIM, api_name="/image")
    assert Path(got).stat().st_size > 0
    with pytest.raises(AppError):
        client.predict(first["conversation_id"], sha, key="stranger-" + "s" * 20, api_name="/image")


def test_gradios_copies_are_private(app: AppRun, victim: dict):
    runtime = Path(tempfile.gettempdir()) / f"retouch-{os.getuid()}"
    for folder in (runtime / "gradio", runtime / "files"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        mine = [p for p in folder.rglob("*") if p.stat().st_mtime >= app_started(app)]
        assert mine, folder
        for path in mine:
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode & 0o077 == 0, f"{path} is {oct(mode)}"


def app_started(app: AppRun) -> float:
    return Path(f"/proc/{app.process.pid}").stat().st_mtime


def test_a_share_token_never_owns_a_fork(app: AppRun, victim: dict):
    client, token = victim["client"], victim["token"]
    conversation_id = victim["conversations"][0]["conversation_id"]
    with pytest.raises(AppError, match="share link cannot own"):
        client.predict(conversation_id, -1, key=token, api_name="/fork")
    with pytest.raises(AppError, match="share link cannot own"):
        client.predict("", "a new conversation owned by a link?", key=token, api_name="/send")
    mate = "teammate-" + secrets.token_hex(10)
    copy = client.predict(conversation_id, -1, key=token, owner_key=mate, api_name="/fork")
    assert [c["conversation_id"] for c in client.predict(mate, api_name="/conversations")] == [
        copy["conversation_id"]
    ]
    assert client.predict(token, api_name="/conversations") == []
    assert client.predict(conversation_id, token, key=VICTIM, api_name="/revoke") is True
    with pytest.raises(AppError):
        client.predict(copy["conversation_id"], key=token, api_name="/conversation")
    assert client.predict(copy["conversation_id"], key=mate, api_name="/conversation")["turns"]


def test_expected_refusals_log_one_line_and_never_a_token(app: AppRun, victim: dict):
    client, token = victim["client"], victim["token"]
    before = len(app.log)
    for key in ("x" * 20, token):
        with pytest.raises(AppError):
            client.predict(victim["conversations"][1]["conversation_id"], key=key, api_name="/conversation")
    with pytest.raises(AppError):
        client.predict("", "hi", key="short", api_name="/send")
    logged = "".join(app.log[before:])
    assert "Traceback" not in logged
    assert logged.count("refused") == 3
    assert token not in app.log_text() and VICTIM not in app.log_text()


# --- rate limits that rotation cannot reset ------------------------------------------------------


def test_rotating_api_keys_from_one_address_meets_the_limit(tmp_path: Path, emulator_url: str):
    with app_run(tmp_path / "data", emulator_url, RETOUCH_RATE_PER_MINUTE="3") as run:
        client = Client(run.url, verbose=False, download_files=False)
        for n in range(3):
            client.predict("", "a fox", key=f"rotating-key-{n:08d}", api_name="/send")
        with pytest.raises(AppError, match="3 edits in the last minute"):
            client.predict("", "a fox", key="rotating-key-99999999", api_name="/send")


def submit_as(run: AppRun, owner: str, forwarded_for: str) -> str:
    submit = next(e for e in events(run.url) if e.trigger == "submit")
    inputs = [{"text": "a fox", "files": []}, "", "", owner] + [None] * (len(submit.inputs) - 4)
    result = call(run.url, submit, inputs, headers={"X-Forwarded-For": forwarded_for})
    return result.raw


def test_rotating_forwarded_for_in_the_ui_meets_the_limit(tmp_path: Path, emulator_url: str):
    with app_run(tmp_path / "data", emulator_url, RETOUCH_RATE_PER_MINUTE="3") as run:
        answers = [submit_as(run, f"rotating-owner-{n:06d}", f"203.0.113.{n}") for n in range(4)]
    assert all("edits in the last minute" not in a for a in answers[:3])
    assert "3 edits in the last minute" in answers[3]


def test_behind_a_trusted_proxy_the_right_most_untrusted_hop_counts(tmp_path: Path, emulator_url: str):
    with app_run(
        tmp_path / "data", emulator_url, RETOUCH_RATE_PER_MINUTE="2", RETOUCH_TRUSTED_PROXIES="127.0.0.1"
    ) as run:
        # The client forges the left part; the proxy appended the address it saw on the right.
        spoofed = [
            submit_as(run, f"spoofing-owner-{n:06d}", f"198.51.100.{n}, 203.0.113.7") for n in range(3)
        ]
        other = submit_as(run, "another-visitor-0001", "203.0.113.8")
    assert "2 edits in the last minute" in spoofed[2]
    assert "edits in the last minute" not in other


def test_exports_the_database_and_the_log_hold_no_key_owner_or_token(
    app: AppRun, victim: dict, data_dir: Path
):
    client, token = victim["client"], victim["token"]
    own_key = "visitor-own-gemini-key-Zq7"
    sent = client.predict("", "a lighthouse", key=VICTIM, gemini_key=own_key, api_name="/send")
    export = next(e for e in events(app.url) if e.api_name == "on_export")
    found = []
    for conversation_id in (sent["conversation_id"], victim["conversations"][0]["conversation_id"]):
        result = call(app.url, export, [VICTIM, conversation_id, ""])
        [file, status] = result.last
        assert result.error is None and "Exported" in str(status)
        data = httpx.get(file["value"]["url"] if "value" in file else file["url"]).raise_for_status().content
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            found += [archive.read(name) for name in archive.namelist()]
    assert len(found) >= 6 and any(b"a lighthouse" in entry for entry in found)  # README, transcript, images
    stored = b"".join(p.read_bytes() for p in data_dir.rglob("*") if p.is_file() and "images" not in p.parts)
    for secret in (own_key, VICTIM, token, "test-key"):
        assert not any(secret.encode() in entry for entry in found), secret
    for secret in (own_key, "test-key"):
        assert secret.encode() not in stored, secret
        assert secret not in app.log_text(), secret
