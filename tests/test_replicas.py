"""Two replicas (``python app.py`` twice) on one PostgreSQL database and one data directory.

What a team gets when it runs Retouch behind a load balancer: the turns of one conversation
are taken one at a time whichever replica a sender reaches, each request to the model carries
the history up to its own message and nothing of anyone else's, and a replica that dies in the
middle of a turn leaves the message for another replica's Retry.
"""

from __future__ import annotations

import secrets
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from gradio_client import Client

from tests.app_process import AppRun, app_run
from tests.emulator.fixtures import EmulatorControl, run_emulator
from tests.postgres import PostgresServer

pytestmark = pytest.mark.system

SENDERS = 6
MESSAGES = 2
LEASE_TTL_S = 3
DEADLINE_S = 60


@contextmanager
def replicas(
    tmp_path: Path, postgres: PostgresServer, emulator_url: str, count: int = 2, **settings: str
) -> Iterator[list[AppRun]]:
    """``count`` app processes sharing a fresh database, a data directory and a browser secret;
    ``settings`` add to (or replace) their environment."""
    env = {
        "DATABASE_URL": settings.get("DATABASE_URL") or postgres.url(postgres.fresh_database()),
        "RETOUCH_BROWSER_SECRET": secrets.token_urlsafe(32),
        "RETOUCH_LEASE_TTL_S": str(LEASE_TTL_S),
        "RETOUCH_RATE_PER_MINUTE": "1000",
        "RETOUCH_RATE_PER_DAY": "10000",
        "RETOUCH_GLOBAL_RATE_PER_MINUTE": "10000",
        **settings,
    }
    with ExitStack() as stack:
        yield [stack.enter_context(app_run(tmp_path / "data", emulator_url, **env)) for _ in range(count)]


def client(run: AppRun) -> Client:
    return Client(run.url, verbose=False, download_files=False)


def user_texts(content: dict[str, Any]) -> list[str]:
    return [
        p["text"] for p in content["parts"] if "text" in p and not p["text"].startswith("(The current image")
    ]


def last_user_texts(request: dict[str, Any]) -> list[str]:
    """The texts of the last user content of a Gemini request: the message it answers."""
    return user_texts([c for c in request["body"]["contents"] if c.get("role") == "user"][-1])


def test_senders_through_two_replicas_take_turns_and_each_request_carries_only_its_message(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    with run_emulator(latency_ms=300) as emulator_url, replicas(tmp_path, postgres, emulator_url) as apps:
        emulator = EmulatorControl(emulator_url)
        first = client(apps[0]).predict("", "a lighthouse at dusk", api_name="/send")
        conversation_id, key = first["conversation_id"], first["owner_key"]

        def sender(n: int) -> None:
            through = client(apps[n % 2])
            for m in range(MESSAGES):
                through.predict(conversation_id, f"sender {n}, message {m}", key=key, api_name="/send")

        with ThreadPoolExecutor(SENDERS) as pool:
            list(pool.map(sender, range(SENDERS)))

        stored = client(apps[1]).predict(conversation_id, key=key, api_name="/conversation")
        gemini = [r for r in emulator.requests() if r["provider"] == "gemini"]

    turns = stored["turns"]
    assert [t["role"] for t in turns] == ["user", "assistant"] * (1 + SENDERS * MESSAGES)
    assert all(t["status"] == "ok" for t in turns)
    messages = {f"sender {n}, message {m}" for n in range(SENDERS) for m in range(MESSAGES)}
    assert {t["text"] for t in turns if t["role"] == "user"} == messages | {"a lighthouse at dusk"}
    answered = [last_user_texts(r) for r in gemini]
    assert sorted(map(tuple, answered)) == sorted((text,) for text in messages | {"a lighthouse at dusk"})
    # in the order they reached the model, each request builds on the one before: the message
    # before its own is the previous request's (and its answer sits between them)
    for previous, request in zip(gemini, gemini[1:], strict=False):
        contents = request["body"]["contents"]
        assert [c["role"] for c in contents[-3:]] == ["user", "model", "user"]
        assert user_texts(contents[-3]) == last_user_texts(previous)


def test_a_replica_killed_mid_turn_leaves_its_message_to_the_others_retry(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    with run_emulator() as emulator_url, replicas(tmp_path, postgres, emulator_url) as (survivor, doomed):
        emulator = EmulatorControl(emulator_url)
        first = client(survivor).predict("", "a lighthouse at dusk", api_name="/send")
        conversation_id, key = first["conversation_id"], first["owner_key"]
        emulator.queue_faults("gemini:slow:30")
        job = client(doomed).submit(conversation_id, "make it stormy", key=key, api_name="/send")
        deadline = time.monotonic() + DEADLINE_S
        while len(emulator.requests()) < 2:  # the second call has reached the provider
            assert time.monotonic() < deadline, "the turn never reached the provider"
            time.sleep(0.05)
        doomed.process.send_signal(signal.SIGKILL)
        doomed.process.wait(timeout=DEADLINE_S)
        del job
        emulator.clear_faults()

        after_crash = client(survivor).predict(conversation_id, key=key, api_name="/conversation")
        assert [t["role"] for t in after_crash["turns"]] == ["user", "assistant", "user"]
        assert after_crash["turns"][-1]["text"] == "make it stormy"
        started = time.monotonic()
        retried = client(survivor).predict(conversation_id, key=key, api_name="/retry")
        waited = time.monotonic() - started

    assert [t["status"] for t in retried["turns"]] == ["ok"] * 4
    assert [t["text"] for t in retried["turns"] if t["role"] == "user"] == [
        "a lighthouse at dusk",
        "make it stormy",
    ]
    assert waited < LEASE_TTL_S + 10  # the dead replica's lease expired; nothing waited for its timeout
