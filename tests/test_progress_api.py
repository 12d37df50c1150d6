"""The real app process on the emulator, through gradio_client: ``/send`` streams transcripts with
the call's progress (here the policy's retries and fallback, which main's providers report),
``Job.cancel()`` and ``/stop`` stop a turn (stored as stopped, Retry answers), a read-only
token cannot stop, and ``client.predict`` still returns the finished transcript."""

from __future__ import annotations

import time

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from tests.app_process import running_app

SLOW = "slow:20"  # the emulator holds the next answer 20 s: long enough to stop it mid-call


def wait_for(predicate, what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def test_send_streams_progress_and_stop_and_cancel_stop_the_turn(tmp_path, emulator):
    with running_app(tmp_path / "data", emulator.url) as url:
        client = Client(url, verbose=False, download_files=False)
        schema = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
        assert schema["/send"]["returns"][0]["type"]["type"] == "object"  # still a transcript
        assert "/stop" in schema

        # OpenAI's answer takes 1 s, all of it shown as the fallback (its reason kept): the client
        # gets the newest snapshot, not every one, so an instant answer might show none of it.
        emulator.queue_faults("gemini:503", "gemini:503", "gemini:503", "openai:slow:1")
        job = client.submit("", "a lighthouse at dusk", api_name="/send")
        final = job.result(timeout=60)
        *running, last = job.outputs()
        assert last == final and "progress" not in final
        assert final["turns"][-1]["provider"] == "openai"
        phases = [t["progress"]["phase"] for t in running]
        assert phases[0] == "waiting" and "falling_back" in phases
        # Until OpenAI shows something of its own, its call says why it was asked: never a plain
        # "waiting" that would hide the reason (chat/conversation/fallback.py).
        assert "waiting" not in phases[phases.index("falling_back") :]
        fallbacks = [t["progress"] for t in running if t["progress"]["phase"] == "falling_back"]
        for fallback in fallbacks:
            assert fallback["provider"] == "openai" and fallback["line"].endswith("Asking OpenAI\u2026")
            assert fallback["note"].startswith("Gemini")
        conversation_id, key = final["conversation_id"], final["owner_key"]
        assert client.predict(conversation_id, key=key, api_name="/conversation") == {
            k: v for k, v in final.items() if k != "owner_key"
        }

        # Job.cancel() (Gradio's /cancel) stops the turn: the message stays, the answer is "stopped".
        emulator.queue_faults(SLOW)
        job = client.submit(conversation_id, "warmer light", key=key, api_name="/send")
        wait_for(lambda: len(job.outputs()) >= 1, "the message stored")
        started = time.monotonic()
        job.cancel()
        wait_for(
            lambda: (
                client.predict(conversation_id, key=key, api_name="/conversation")["turns"][-1]["role"]
                == "assistant"
            ),
            "the stopped answer",
        )
        after = client.predict(conversation_id, key=key, api_name="/conversation")
        assert time.monotonic() - started < 10  # long before the emulator's 20 s
        assert after["turns"][-2]["text"] == "warmer light"
        assert after["turns"][-1]["error"]["kind"] == "stopped"

        # /stop from another client (a read-only token may not) ends a running /send with the stopped answer.
        token = client.predict(conversation_id, "view", key=key, api_name="/share")
        emulator.queue_faults(SLOW)
        job = client.submit(conversation_id, "add a boat", key=key, api_name="/send")
        wait_for(lambda: len(job.outputs()) >= 1, "the message stored")
        other = Client(url, verbose=False, download_files=False)
        with pytest.raises(AppError):
            other.predict(conversation_id, key=token, api_name="/stop")
        stopped = other.predict(conversation_id, key=key, api_name="/stop")
        assert stopped["turns"][-1]["error"]["kind"] == "stopped"
        assert job.result(timeout=10)["turns"][-1]["error"]["kind"] == "stopped"

        retried = client.predict(conversation_id, key=key, api_name="/retry")
        assert [t["status"] for t in retried["turns"][-3:]] == [
            "ok",
            "error",
            "ok",
        ]  # message, stopped, answer
        assert retried["turns"][-3]["text"] == "add a boat"
