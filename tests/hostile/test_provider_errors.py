"""A provider error that echoes a visitor's key never reaches the chat, the database or the log.

OpenAI's 401 quotes the rejected key, masked ("Incorrect API key provided: invalid-****…Wq9Z.")
or whole when it is short; the emulator answers the same way. The key's tail is chosen so it
cannot turn up by chance in ids, hashes or timestamps (digits such as "4444" could).
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from gradio_client import Client

from chat.errors import KEY_HIDDEN
from tests.app_process import AppRun
from tests.emulator.fixtures import EmulatorControl

VISITOR_KEY = "invalid-visitor-key-Wq9Z"
TAIL = "Wq9Z"


def test_the_emulator_echoes_a_rejected_key_as_the_real_api_does(emulator: EmulatorControl) -> None:
    """Without this the test below would prove nothing."""
    response = httpx.post(
        f"{emulator.url}/v1/images/generations",
        json={"prompt": "a red fox"},
        headers={"authorization": f"Bearer {VISITOR_KEY}"},
    )
    assert response.status_code == 401 and TAIL in response.json()["error"]["message"]


def test_a_visitors_rejected_key_is_not_shown_stored_or_logged(
    app: AppRun, data_dir: Path, emulator: EmulatorControl
) -> None:
    client = Client(app.url, verbose=False, download_files=False)
    sent = client.predict(
        "", "a red fox", None, {"route": "openai"}, openai_key=VISITOR_KEY, api_name="/send"
    )
    answer = sent["turns"][-1]
    assert (answer["status"], answer["error"]["kind"]) == ("error", "auth")
    assert f"Incorrect API key provided: {KEY_HIDDEN}" in answer["error"]["message"]
    assert [r["status"] for r in emulator.requests()] == [401]  # the key was sent, and echoed back

    stored = client.predict(sent["conversation_id"], key=sent["owner_key"], api_name="/conversation")
    for text in (json.dumps(sent), json.dumps(stored), app.log_text()):
        assert VISITOR_KEY not in text and TAIL not in text and "****" not in text
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    assert any(p.name.startswith("retouch.sqlite3") for p in files)
    for path in files:  # the database, its WAL and anything else the app wrote
        data = path.read_bytes()
        assert VISITOR_KEY.encode() not in data and TAIL.encode() not in data, path
