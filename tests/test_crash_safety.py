"""SIGKILL in the middle of a model call loses nothing: the message is there, marked interrupted, Retry works.

The killed process leaves its turn's lease behind; it expires a lease ttl after its last renewal
(2 s here, ``RETOUCH_LEASE_TTL_S``), and until then the message reads as in progress and Retry
waits for it, as it would on another replica.
"""

from __future__ import annotations

import signal
import time

from gradio_client import Client

from tests.app_process import app_process, running_app

DEADLINE_S = 30


def test_killed_mid_call_keeps_the_message_and_retry_answers_it(tmp_path, emulator):
    data_dir = tmp_path / "data"
    with app_process(data_dir, emulator.url, RETOUCH_LEASE_TTL_S="2") as (url, process):
        client = Client(url, verbose=False, download_files=False)
        first = client.predict("", "a lighthouse at dusk", api_name="/send")
        conversation_id, key = first["conversation_id"], first["owner_key"]
        emulator.queue_faults("gemini:slow:30")
        job = client.submit(conversation_id, "make it stormy", key=key, api_name="/send")
        deadline = time.monotonic() + DEADLINE_S
        while len(emulator.requests()) < 2:  # the second call has reached the provider
            assert time.monotonic() < deadline, "the turn never reached the provider"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=DEADLINE_S)
        assert process.returncode == -signal.SIGKILL
        del job
    emulator.clear_faults()

    with running_app(data_dir, emulator.url) as url:
        client = Client(url, verbose=False, download_files=False)
        after_crash = client.predict(conversation_id, key=key, api_name="/conversation")
        assert [t["role"] for t in after_crash["turns"]] == ["user", "assistant", "user"]
        assert after_crash["turns"][-1]["text"] == "make it stormy"
        assert after_crash["awaiting_answer"] is True
        retried = client.predict(conversation_id, key=key, api_name="/retry")
        assert [t["status"] for t in retried["turns"]] == ["ok"] * 4
        assert [t["text"] for t in retried["turns"] if t["role"] == "user"] == [
            "a lighthouse at dusk",
            "make it stormy",
        ]
