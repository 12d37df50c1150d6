"""Variants through the documented API (the real app on the emulator, gradio_client): /send with
options.variants, /pick by label, a read-only token refused, a hostile value refused."""

from __future__ import annotations

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from tests.app_process import running_app
from tests.pictures import png


def test_send_with_variants_then_pick_one_by_its_label(tmp_path, emulator) -> None:
    photo = tmp_path / "street.png"
    photo.write_bytes(png((90, 140, 200), (320, 240)))
    with running_app(tmp_path / "data", emulator.url) as url:
        client = Client(url, verbose=False, download_files=False)
        with pytest.raises(AppError, match="Variants must be between 1 and 4"):
            client.predict("", "stormy", [handle_file(str(photo))], {"variants": 9}, api_name="/send")
        sent = client.predict("", "stormy", [handle_file(str(photo))], {"variants": 3}, api_name="/send")
        conversation_id, key = sent["conversation_id"], sent["owner_key"]
        answers = sent["turns"][1:]
        assert [(t["version"], t["variant"], t["picked"]) for t in answers] == [
            ("v1a", 0, True),
            ("v1b", 1, False),
            ("v1c", 2, False),
        ]

        picked = client.predict(conversation_id, "v1c", key=key, api_name="/pick")
        assert [t["picked"] for t in picked["turns"][1:]] == [False, False, True]
        assert client.predict(conversation_id, key=key, api_name="/conversation") == picked

        token = client.predict(conversation_id, "view", key=key, api_name="/share")
        with pytest.raises(AppError, match="read-only"):
            client.predict(conversation_id, "v1a", key=token, api_name="/pick")
        with pytest.raises(AppError, match="e.g. .v3b."):
            client.predict(conversation_id, "v9z", key=key, api_name="/pick")

        emulator.clear_requests()
        client.predict(conversation_id, "darker", key=key, api_name="/send")
    contents = emulator.requests()[-1]["body"]["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
