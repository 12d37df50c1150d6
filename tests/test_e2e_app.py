"""End to end: the real app process on the emulator, driven through gradio_client.

New conversation -> 3 turns -> restart the app -> a 4th turn that replays all earlier
contents byte for byte (signatures included), read back from SQLite after the restart.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from tests.app_process import running_app
from tests.emulator import read_provenance
from tests.pictures import png

FULL_REPLAY = (
    "0"  # this test proves exact replay of everything; the default bounds images (chat/providers/context.py)
)


def test_three_turns_restart_fourth_turn_replays_history(tmp_path, emulator):
    photo = tmp_path / "street.png"
    photo.write_bytes(png((90, 140, 200), (320, 240)))
    data_dir = tmp_path / "data"

    with running_app(data_dir, emulator.url, RETOUCH_KEEP_IMAGES=FULL_REPLAY) as url:
        client = Client(url, verbose=False, download_files=False)
        first = client.predict("", "make the sky stormy", [handle_file(str(photo))], None, api_name="/send")
        conversation_id, key = first["conversation_id"], first["owner_key"]
        client.predict(conversation_id, "now remove the car", key=key, api_name="/send")
        third = client.predict(conversation_id, "warmer light", key=key, api_name="/send")
    assert [t["status"] for t in third["turns"]] == ["ok"] * 6
    before_restart = emulator.requests()
    assert [len(r["body"]["contents"]) for r in before_restart] == [1, 3, 5]

    with running_app(data_dir, emulator.url, RETOUCH_KEEP_IMAGES=FULL_REPLAY) as url:
        client = Client(url, verbose=False, download_files=False)
        reopened = client.predict(conversation_id, key=key, api_name="/conversation")
        assert reopened == third
        fourth = client.predict(conversation_id, "add a rainbow", key=key, api_name="/send")
        downloader = Client(url, verbose=False)  # downloads file outputs, as an API user would
        image_path = downloader.predict(
            conversation_id, fourth["turns"][-1]["image_sha256"], key=key, api_name="/image"
        )
        image_bytes = Path(image_path).read_bytes()

    assert fourth["turns"][-1]["status"] == "ok"
    last = emulator.requests()[-1]["body"]["contents"]
    assert len(last) == 7
    # The first five contents are exactly what the third request sent; the sixth is the
    # third answer as the emulator returned it (signatures and all); the seventh is new.
    assert last[:5] == before_restart[2]["body"]["contents"]
    model_parts = last[5]["parts"]
    assert last[5]["role"] == "model" and all("thoughtSignature" in p for p in model_parts)
    assert last[6] == {"role": "user", "parts": [{"text": "add a rainbow"}]}
    # The uploaded photo was replayed as the very bytes the user sent.
    sent = last[0]["parts"][0]["inlineData"]
    assert sent["mimeType"] == "image/png"
    assert base64.b64decode(sent["data"]) == photo.read_bytes()
    # The downloaded answer is the stored master: its sha256 is the one in the transcript.
    assert hashlib.sha256(image_bytes).hexdigest() == fourth["turns"][-1]["image_sha256"]
    assert read_provenance(image_bytes)["contents"] == 7


def test_gemini_outage_falls_back_to_openai_through_the_api(tmp_path, emulator):
    photo = tmp_path / "street.png"
    photo.write_bytes(png((90, 140, 200), (320, 240)))

    with running_app(tmp_path / "data", emulator.url) as url:
        client = Client(url, verbose=False, download_files=False)
        first = client.predict("", "make the sky stormy", [handle_file(str(photo))], None, api_name="/send")
        conversation_id, key = first["conversation_id"], first["owner_key"]
        emulator.queue_faults("gemini:503", "gemini:503", "gemini:503")
        second = client.predict(conversation_id, "now remove the car", key=key, api_name="/send")
        answer = second["turns"][-1]
        assert answer["status"] == "ok" and answer["provider"] == "openai"
        assert answer["attribution"] == "Gemini: 503 UNAVAILABLE \u00d73 \u2192 OpenAI gpt-image-2"
        edit = [r for r in emulator.requests() if r["provider"] == "openai"][-1]
        [image_file] = [f for f in edit["files"] if f["field"] == "image"]
        assert image_file["sha256"] == first["turns"][-1]["image_sha256"]

        only_openai = client.predict(
            conversation_id, "warmer light", options={"route": "openai"}, key=key, api_name="/send"
        )
        assert [a["provider"] for a in only_openai["turns"][-1]["attempts"]] == ["openai"]


def test_read_only_token_cannot_write_through_the_api(tmp_path, emulator):
    with running_app(tmp_path / "data", emulator.url) as url:
        client = Client(url, verbose=False, download_files=False)
        first = client.predict("", "a lighthouse at dusk", api_name="/send")
        conversation_id, key = first["conversation_id"], first["owner_key"]
        token = client.predict(conversation_id, "view", key=key, api_name="/share")
        seen = client.predict(conversation_id, key=token, api_name="/conversation")
        assert [t["role"] for t in seen["turns"]] == ["user", "assistant"] and "owner_key" not in seen
        for call in (
            {"api_name": "/send", "args": (conversation_id, "hijack"), "kwargs": {"key": token}},
            {"api_name": "/retry", "args": (conversation_id,), "kwargs": {"key": token}},
            {"api_name": "/share", "args": (conversation_id, "continue"), "kwargs": {"key": token}},
            {"api_name": "/conversation", "args": (conversation_id,), "kwargs": {"key": "x" * 20}},
        ):
            with pytest.raises(AppError):
                client.predict(*call["args"], **call["kwargs"], api_name=call["api_name"])
        assert client.predict(conversation_id, token, key=key, api_name="/revoke") is True
        with pytest.raises(AppError, match="revoked"):
            client.predict(conversation_id, key=token, api_name="/conversation")
        after = client.predict(conversation_id, key=key, api_name="/conversation")
        assert len(after["turns"]) == 2
