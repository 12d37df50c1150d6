"""Quick edits through the documented API (the real app on the emulator, gradio_client): /quick_edit
by version, refusals, and the next /send replaying the local image as the user's own to Gemini."""

from __future__ import annotations

import base64
import hashlib

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from tests.app_process import running_app


def test_quick_edit_by_version_then_the_next_send_replays_it_as_the_users_image(tmp_path, emulator) -> None:
    with running_app(tmp_path / "data", emulator.url) as url:
        client = Client(url, verbose=False, download_files=False)
        # No upload: the two images replayed (the answer, the quick edit) are within the history's bound.
        sent = client.predict("", "a stormy street", api_name="/send")
        emulator.clear_requests()
        conversation_id, key = sent["conversation_id"], sent["owner_key"]

        flipped = client.predict(
            conversation_id,
            "v1",
            {"kind": "flip", "direction": "horizontal"},
            key=key,
            api_name="/quick_edit",
        )
        request, answer = flipped["turns"][-2:]
        assert request["text"] == "flip horizontal (local)"
        assert (answer["provider"], answer["model"], answer["version"]) == ("local", "flip horizontal", "v2")
        assert answer["usage"]["cost_usd"] == 0 and not flipped["awaiting_answer"]
        assert client.predict(conversation_id, key=key, api_name="/conversation") == flipped

        token = client.predict(conversation_id, "view", key=key, api_name="/share")
        with pytest.raises(AppError, match="read-only"):
            client.predict(
                conversation_id, "", {"kind": "rotate", "degrees": 90}, key=token, api_name="/quick_edit"
            )
        with pytest.raises(AppError, match="90, 180 or 270"):
            client.predict(
                conversation_id, "", {"kind": "rotate", "degrees": 45}, key=key, api_name="/quick_edit"
            )
        with pytest.raises(AppError, match="outside the image"):
            crop = {"kind": "crop", "left": 0, "top": 0, "right": 5000, "bottom": 10}
            client.predict(conversation_id, "", crop, key=key, api_name="/quick_edit")

        assert emulator.requests() == []  # no model was asked
        client.predict(conversation_id, "darker", key=key, api_name="/send")
    contents = emulator.requests()[-1]["body"]["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert all("thoughtSignature" in p for p in contents[1]["parts"] if "inlineData" in p)
    last = contents[2]["parts"]
    assert [p.get("text") for p in last if "text" in p] == [
        "flip horizontal (local)",
        "(The current image, which the user edited themselves: flip horizontal. Do not repeat that edit.)",
        "darker",
    ]
    [inline] = [p for p in last if "inlineData" in p]
    assert "thoughtSignature" not in inline
    local_sha = answer["image_sha256"]
    assert hashlib.sha256(base64.b64decode(inline["inlineData"]["data"])).hexdigest() == local_sha
