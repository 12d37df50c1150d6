"""deploy/haproxy.cfg in front of two replicas on one PostgreSQL, as a team would run it.

HAProxy (tests/balancer.py) balances two ``python app.py`` (tests/test_replicas.py's
``replicas``) against the emulator. Which replica served each request is read from the
balancer's own log (one line per request, naming the replica and the client's User-Agent, which
each test client sets to a name of its own), and from the ``retouch_replica`` cookie it inserts:
no replica needs to say who it is.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import signal
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from gradio_client import Client, handle_file
from playwright.sync_api import sync_playwright

from tests.app_process import AppRun
from tests.balancer import Balancer, balancer
from tests.emulator.fixtures import EmulatorControl, run_emulator
from tests.fleet import COOKIE, BrowserSession, send
from tests.pictures import png
from tests.postgres import PostgresServer
from tests.test_browser import ARGS as BROWSER_ARGS
from tests.test_browser import CHROMIUM
from tests.test_browser import TIMEOUT_MS as BROWSER_TIMEOUT_MS
from tests.test_replicas import replicas

pytestmark = pytest.mark.system


@dataclass
class Fleet:
    apps: list[AppRun]
    lb: Balancer
    database_url: str
    emulator: EmulatorControl

    def served(self, agent: str) -> list[str]:
        """The replica of every request the client named ``agent`` sent, in order."""
        return [r.server for r in self.lb.requests() if r.agent == agent]


@contextmanager
def fleet(tmp_path: Path, postgres: PostgresServer, **lb_settings: str) -> Iterator[Fleet]:
    """The emulator, two replicas trusting the balancer's X-Forwarded-For, and the balancer."""
    url = postgres.url(postgres.fresh_database())
    app_settings = {
        "DATABASE_URL": url,
        "RETOUCH_TRUSTED_PROXIES": "127.0.0.1",
        "RETOUCH_SHUTDOWN_NOTICE_S": lb_settings.pop("notice_s", "0"),
        "GRADIO_HEARTBEAT_INTERVAL": lb_settings.pop("heartbeat_s", "15"),
    }
    with (
        run_emulator() as emulator_url,
        replicas(tmp_path, postgres, emulator_url, **app_settings) as apps,
        balancer([app.url for app in apps], **lb_settings) as lb,
    ):
        yield Fleet(apps, lb, url, EmulatorControl(emulator_url))


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer) -> Iterator[Fleet]:
    """One fleet for the tests that stop nothing. Heartbeats every second and connections cut after
    3 silent seconds (the file's defaults: 15 s and 2 minutes), so a 4 s model call shows that the
    timeouts count silence, not length, without waiting minutes."""
    with fleet(
        tmp_path_factory.mktemp("team"),
        postgres,
        heartbeat_s="1",
        RETOUCH_LB_IDLE_TIMEOUT="3s",
        RETOUCH_LB_CHECK_INTERVAL="500ms",
    ) as running:
        yield running


def api_client(lb: Balancer, agent: str) -> Client:
    return Client(lb.url, headers={"user-agent": agent}, verbose=False, download_files=False)


# --- (a) API clients ---------------------------------------------------------------------------


def test_two_api_clients_land_on_different_replicas_and_keep_every_request_on_theirs(
    team: Fleet, tmp_path: Path
) -> None:
    photo = tmp_path / "street.png"
    photo.write_bytes(png(size=(64, 48)))
    clients = {agent: api_client(team.lb, agent) for agent in ("api-a", "api-b")}
    pinned = {agent: client.cookies[COOKIE] for agent, client in clients.items()}
    assert sorted(pinned.values()) == ["app1", "app2"]  # one each: the cookie, not the address, decides

    def converse(client: Client) -> dict[str, Any]:
        first = client.predict("", "a lighthouse at dusk", [handle_file(str(photo))], api_name="/send")
        key, conversation_id = first["owner_key"], first["conversation_id"]
        for text in ("make it stormy", "add a boat"):
            client.predict(conversation_id, text, key=key, api_name="/send")
        return client.predict(conversation_id, key=key, api_name="/conversation")

    with ThreadPoolExecutor(2) as pool:
        transcripts = list(pool.map(converse, clients.values()))
    for client in clients.values():
        client.close()

    for transcript in transcripts:
        assert [t["status"] for t in transcript["turns"]] == ["ok"] * 6
    for agent, replica in pinned.items():
        logged = [r for r in team.lb.requests() if r.agent == agent]
        assert {r.server for r in logged} == {replica}, logged
        paths = {r.path for r in logged}
        assert {"/config", "/gradio_api/upload", "/gradio_api/queue/join", "/gradio_api/queue/data"} <= paths
        # the first response set it; the balancer drops it from the streams, which follow their joins
        assert all(r.cookie == replica for r in logged if r.path not in {"/config", "/gradio_api/queue/data"})


# --- (b) the browser's path ----------------------------------------------------------------------


def test_a_browser_session_keeps_join_and_stream_on_one_replica_and_without_the_cookie_the_stream_follows_its_join(
    team: Fleet,
) -> None:
    page = BrowserSession(team.lb, "browser-with-cookie")
    assert page.get("").status_code == 200
    first = page.call("send", send(text="a lighthouse at dusk"))
    listed = page.call("conversations", [first["owner_key"], ""])
    assert [c["conversation_id"] for c in listed] == [first["conversation_id"]]
    assert len(set(team.served("browser-with-cookie"))) == 1

    forgetful = BrowserSession(team.lb, "browser-without-cookie", keep_cookies=False)
    cookies = [forgetful.get("config").cookies[COOKIE] for _ in range(4)]
    assert sorted(cookies) == ["app1", "app1", "app2", "app2"]  # new sessions take turns
    for _ in range(2):
        assert forgetful.join("conversations", [secrets.token_urlsafe(16), ""]).status_code == 200
        *_, (_, answer) = forgetful.stream()
        assert answer["msg"] == "process_completed" and answer["success"], answer
    # Each join went to the next replica in turn (no cookie), and its stream followed it: the
    # balancer remembers which replica took the session's join (without that table, Gradio
    # answered the stream 404 from the other replica).
    join, data, join_again, data_again = team.lb.logged("browser-without-cookie", 9)[-4:]
    assert [r.path for r in (join, data, join_again, data_again)] == [
        "/gradio_api/queue/join",
        "/gradio_api/queue/data",
    ] * 2
    assert join.server == data.server and join_again.server == data_again.server
    assert join.server != join_again.server


def test_two_real_browsers_land_on_different_replicas_and_upload_and_edit_there(
    team: Fleet, tmp_path: Path
) -> None:
    """Gradio's own frontend in chromium: page, assets, upload, upload progress, join, stream, images."""
    assert CHROMIUM.exists(), (
        "Debian's chromium is missing: `make test` installs it (apt-get install chromium)"
    )
    photo = tmp_path / "street.png"
    photo.write_bytes(png(size=(320, 240)))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=BROWSER_ARGS)
        pinned = {}
        for agent in ("chromium-a", "chromium-b"):
            context = browser.new_context(user_agent=agent)
            page = context.new_page()
            page.goto(team.lb.url)
            page.wait_for_selector("#box textarea", timeout=BROWSER_TIMEOUT_MS)
            page.locator("#box input[type=file]").set_input_files(str(photo))
            page.wait_for_selector("#box img", timeout=BROWSER_TIMEOUT_MS)
            page.fill("#box textarea", "make the sky stormy")
            page.keyboard.press("Enter")
            page.wait_for_function(
                "() => document.querySelectorAll('#chat img').length >= 2", timeout=BROWSER_TIMEOUT_MS
            )
            pinned[agent] = next(c["value"] for c in context.cookies() if c["name"] == COOKIE)
        browser.close()

    assert sorted(pinned.values()) == ["app1", "app2"]
    for agent, replica in pinned.items():
        logged = [r for r in team.lb.requests() if r.agent == agent]
        assert {r.server for r in logged} == {replica}, logged
        assert {"/gradio_api/upload", "/gradio_api/queue/join", "/gradio_api/queue/data"} <= {
            r.path for r in logged
        }


def test_the_event_stream_is_not_held_back_and_outlives_the_idle_timeout_on_heartbeats(team: Fleet) -> None:
    page = BrowserSession(team.lb, "browser-slow-edit")
    page.get("")
    sent = time.monotonic()
    assert page.join("send", send(text="a lighthouse at dusk [fault:gemini:slow:4]")).status_code == 200
    messages = list(page.stream())

    first_at, first = messages[0]
    done_at, done = messages[-1]
    assert (
        first["msg"] in {"estimation", "process_starts"} and first_at - sent < 1.5
    )  # as written, not buffered
    assert "heartbeat" in [m["msg"] for _, m in messages]
    # 4 s of model call, longer than the 3 s the balancer lets a connection stay silent: heartbeats
    # keep the stream alive and the answer arrives.
    assert done["msg"] == "process_completed" and done["success"] and done_at - sent > 4
    assert done["output"]["data"][0]["turns"][-1]["status"] == "ok"


# --- (d) upload size ---------------------------------------------------------------------------------


def raw_request(lb: Balancer, head: str) -> tuple[int, str]:
    """Send only a request head; the status line and body the balancer answers with."""
    port = int(lb.url.rstrip("/").rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    response = b"".join(chunks).decode()
    return int(response.split(" ", 2)[1]), response.split("\r\n\r\n", 1)[-1]


def test_an_upload_over_the_limit_gets_a_clear_413_from_the_balancer_and_never_reaches_a_replica(
    team: Fleet,
) -> None:
    limit = 6 * 20 * 1024 * 1024 + 1024 * 1024
    head = (
        "POST /gradio_api/upload HTTP/1.1\r\nHost: retouch\r\nUser-Agent: too-big\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {}\r\n\r\n"
    )
    status, body = raw_request(team.lb, head.format(limit + 1))
    assert status == 413 and body.startswith(f"This upload is too large: at most {limit} bytes")
    chunked = head.replace("Content-Length: {}", "Transfer-Encoding: chunked")
    assert raw_request(team.lb, chunked)[0] == 411
    assert [(r.status, r.server) for r in team.lb.logged("too-big", 2)] == [
        (413, "<NOSRV>"),
        (411, "<NOSRV>"),
    ]


# --- (e) the client's address --------------------------------------------------------------------------


def counted(fleet: Fleet, bucket_name: str) -> int:
    """Turns the rate limiter counted under ``bucket_name`` (chat/limits/guard.py keeps its sha256)."""
    bucket = hashlib.sha256(bucket_name.encode()).hexdigest()
    url = fleet.database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM rate_event WHERE bucket = %s", (bucket,)).fetchone()
    assert row is not None
    return int(row[0])


def test_the_rate_limiter_counts_the_clients_address_from_the_balancer_not_a_forged_one(team: Fleet) -> None:
    # The client connects from 127.0.0.2 (the balancer sees that) and claims to be 6.6.6.6.
    visitor = BrowserSession(team.lb, "visitor-from-127.0.0.2", local_address="127.0.0.2")
    forged = {"X-Forwarded-For": "6.6.6.6"}
    visitor.call("send", send(text="a red kite"), headers=forged)
    visitor.call("send", send(text="a blue kite"), headers=forged)

    assert counted(team, "edit address:127.0.0.2") == 2
    assert counted(team, "edit address:6.6.6.6") == 0
    assert {r.client for r in team.lb.logged("visitor-from-127.0.0.2", 5)} == {"127.0.0.2"}


# --- (c) a replica drained with SIGTERM -------------------------------------------------------------------


NOTICE_S = 6  # longer than the balancer takes to notice: two failed checks, 2 s apart (the default)


def test_a_sigtermed_replica_leaves_rotation_and_no_request_fails(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    with fleet(tmp_path, postgres, notice_s=str(NOTICE_S)) as running:
        lb = running.lb
        clients = {
            client.cookies[COOKIE]: client for client in (api_client(lb, "api-1"), api_client(lb, "api-2"))
        }
        doomed = running.apps[0]  # app1, where "moves" is pinned
        moves, stays = clients["app1"], clients["app2"]
        moves_agent = moves.headers["user-agent"]
        first = moves.predict("", "a lighthouse at dusk", api_name="/send")
        key, conversation_id = first["owner_key"], first["conversation_id"]
        running_turn = moves.submit(
            conversation_id, "make it stormy [fault:slow:3]", key=key, api_name="/send"
        )
        deadline = time.monotonic() + 30
        while not any("stormy" in json.dumps(r["body"]) for r in running.emulator.requests()):
            assert time.monotonic() < deadline, "the turn never reached the provider"
            time.sleep(0.05)

        signalled = time.monotonic()
        doomed.process.send_signal(signal.SIGTERM)
        doomed.wait_until(lambda: doomed.get("healthz").status_code == 503, "/healthz saying shutting_down")
        # Until the balancer notices, it still sends app1 its sessions, and app1 still serves them.
        listed = moves.predict(key, "", api_name="/conversations")
        assert [c["conversation_id"] for c in listed] == [conversation_id]
        lb.wait_for_status({"app1": "DOWN", "app2": "UP"})
        noticed_after = time.monotonic() - signalled
        assert noticed_after < NOTICE_S

        # New sessions go to app2 only; the moved client's next requests too (its cookie names app1).
        newcomers = [api_client(lb, f"newcomer-{n}") for n in range(4)]
        assert {c.cookies[COOKIE] for c in newcomers} == {"app2"}
        for n, newcomer in enumerate(newcomers):
            assert newcomer.predict("", f"a kite {n}", api_name="/send")["turns"][-1]["status"] == "ok"
            newcomer.close()
        after = moves.predict(conversation_id, "add a boat", key=key, api_name="/send")
        assert len(stays.predict(key, "", api_name="/conversations")) == 1  # app2's own sessions: untouched
        answered = running_turn.result(timeout=60)  # the turn app1 was running when it was told to stop
        code = doomed.process.wait(timeout=60)
        for client in clients.values():
            client.close()

    assert code == 0
    assert answered["turns"][-1]["status"] == "ok"
    assert [t["text"] for t in after["turns"] if t["role"] == "user"] == [
        "a lighthouse at dusk",
        "make it stormy [fault:slow:3]",
        "add a boat",
    ]
    assert [t["status"] for t in after["turns"]] == ["ok"] * 6
    moved = [r for r in lb.requests() if r.agent == moves_agent]
    assert all(r.status < 500 for r in moved)
    # its three events before the balancer noticed ran on app1 (one after the signal), the next on app2
    joins = [r.server for r in moved if r.path == "/gradio_api/queue/join"]
    assert joins == ["app1", "app1", "app1", "app2"]
    assert {r.server for r in lb.requests() if r.agent.startswith("newcomer-")} == {"app2"}
