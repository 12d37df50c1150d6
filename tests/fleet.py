"""A whole deployment on loopback: HAProxy (deploy/haproxy.cfg) in front of app replicas that share
only PostgreSQL and one S3 bucket, as replicas on different machines would.

``fleet`` starts the replicas (``python app.py``, each with a data directory of its own and
``RETOUCH_BLOBS=s3://…``) at an emulator the caller runs, then the balancer once every replica is
UP. Each ``Replica`` keeps its port for life, so it can be killed (SIGKILL), drained (SIGTERM) and
started again under the same ``server`` line of the balancer. Everything stops when the ``with``
ends (the balancer, PostgreSQL and S3 also by themselves: ``PR_SET_PDEATHSIG`` and ``timeout``).
``tests/test_fleet.py`` and ``bench/fleet.py`` use it.

``BrowserSession`` speaks Gradio's browser protocol by hand over one httpx client and its cookie
jar, as a browser tab does: the balancer's cookie keeps its requests on one replica, and a new
cookie set when its replica goes away moves all of them together.
"""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.app_process import ROOT, AppRun, app_env, free_port, launched
from tests.balancer import Balancer, balancer
from tests.postgres import PostgresServer
from tests.s3 import S3Server

__all__ = ["COOKIE", "NOTICE_S", "BrowserSession", "Fleet", "Replica", "fleet", "send"]

COOKIE = "retouch_replica"
#: RETOUCH_SHUTDOWN_NOTICE_S: longer than the balancer takes to see a draining replica (two failed
#: checks) at the check interval ``fleet`` sets, so no new work reaches a replica that refuses it.
NOTICE_S = 2
CHECK_INTERVAL = "500ms"
SEND_ARGS = ("conversation_id", "text", "images", "options", "mask", "key", "gemini_key", "openai_key")
STREAM_TIMEOUT_S = 120
#: Every user of a test or benchmark comes from 127.0.0.1: the abuse limits must not count them as one.
NO_RATE_LIMITS = {
    "RETOUCH_RATE_PER_MINUTE": "100000",
    "RETOUCH_RATE_PER_DAY": "1000000",
    "RETOUCH_GLOBAL_RATE_PER_MINUTE": "100000",
}


@dataclass
class Replica:
    """One ``python app.py`` of the fleet, on a port of its own for life (the balancer's server line)."""

    name: str  # the balancer's name for it and its cookie value: "app1"
    port: int
    env: dict[str, str]
    run: AppRun | None = None
    _stack: ExitStack = field(default_factory=ExitStack)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def process(self) -> subprocess.Popen[str]:
        assert self.run is not None, f"{self.name} was never started"
        return self.run.process

    def start(self) -> AppRun:
        """Start it (again): once it logs "Running on local URL"."""
        assert self.run is None or self.run.process.poll() is not None, f"{self.name} is running"
        self._stack.close()
        self.run = self._stack.enter_context(launched([sys.executable, "app.py"], ROOT, self.env, self.port))
        return self.run

    def kill(self) -> None:
        """SIGKILL: a crash, nothing cleaned up (its leases stay until they expire)."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def terminate(self, timeout_s: float = 90) -> int:
        """SIGTERM: the replica says so on /healthz, serves on for the notice, drains; its exit code."""
        self.process.send_signal(signal.SIGTERM)
        return int(self.process.wait(timeout=timeout_s))

    def stop(self) -> None:
        self._stack.close()


@dataclass
class Fleet:
    replicas: list[Replica]
    lb: Balancer
    database_url: str
    bucket: str

    def replica(self, name: str) -> Replica:
        """The replica a balancer cookie (or log line) names."""
        return next(r for r in self.replicas if r.name == name)

    def served(self, agent: str) -> list[str]:
        """The replica of every request the client named ``agent`` sent, in order."""
        return [r.server for r in self.lb.requests() if r.agent == agent]

    def all_up(self) -> dict[str, str]:
        return {r.name: "UP" for r in self.replicas}


@contextmanager
def fleet(
    tmp_path: Path,
    postgres: PostgresServer,
    s3: S3Server,
    emulator_url: str,
    *,
    count: int = 2,
    app_settings: Mapping[str, str] | None = None,
    lb_settings: Mapping[str, str] | None = None,
) -> Iterator[Fleet]:
    """``count`` replicas on a fresh database and bucket, and the balancer in front of them.

    ``app_settings`` add to (or replace) the replicas' environment, ``lb_settings`` the balancer's.
    """
    database_url = postgres.url(postgres.fresh_database())
    bucket = s3.fresh_bucket()
    shared = {
        "DATABASE_URL": database_url,
        "RETOUCH_BLOBS": f"s3://{bucket}/fleet",
        **s3.env(),
        "RETOUCH_BROWSER_SECRET": secrets.token_urlsafe(32),
        "RETOUCH_TRUSTED_PROXIES": "127.0.0.1",
        "RETOUCH_SHUTDOWN_NOTICE_S": str(NOTICE_S),
        **NO_RATE_LIMITS,
        **(app_settings or {}),
    }
    replicas = []
    for n in range(1, count + 1):
        port = free_port()
        env = app_env(tmp_path / f"data-app{n}", emulator_url, RETOUCH_PORT=str(port), **shared)
        replicas.append(Replica(f"app{n}", port, env))
    with ExitStack() as stack:
        for replica in replicas:
            stack.callback(replica.stop)
        with ThreadPoolExecutor(count) as pool:  # their start-ups overlap: most of it is waiting on imports
            list(pool.map(Replica.start, replicas))
        settings = {"RETOUCH_LB_CHECK_INTERVAL": CHECK_INTERVAL, **(lb_settings or {})}
        lb = stack.enter_context(balancer([r.url for r in replicas], **settings))
        yield Fleet(replicas, lb, database_url, bucket)


def send(**values: Any) -> list[Any]:
    """The data list of a /send call (the API's argument order)."""
    return [values.get(name, None if name in {"images", "options", "mask"} else "") for name in SEND_ARGS]


class BrowserSession:
    """Gradio's browser protocol by hand: POST queue/join, then read the queue/data event stream.

    ``keep_cookies``: one httpx client and its cookie jar for every request, as a browser does;
    without, each request is sent without the cookie (a client that drops it).
    """

    def __init__(
        self,
        lb: Balancer,
        agent: str,
        *,
        keep_cookies: bool = True,
        local_address: str | None = None,
        timeout_s: float = 30,
    ) -> None:
        self.lb, self.agent, self.keep_cookies = lb, agent, keep_cookies
        self.session_hash = uuid.uuid4().hex[:11]
        self._local_address = local_address
        self._timeout_s = timeout_s
        self._client = self._new_client()
        self.fn_index = {d.get("api_name"): d["id"] for d in self.get("config").json()["dependencies"]}

    def _new_client(self) -> httpx.Client:
        transport = httpx.HTTPTransport(local_address=self._local_address) if self._local_address else None
        return httpx.Client(
            base_url=self.lb.url,
            headers={"user-agent": self.agent},
            transport=transport,
            timeout=self._timeout_s,
        )

    def _http(self) -> httpx.Client:
        return self._client if self.keep_cookies else self._new_client()

    @property
    def cookie(self) -> str | None:
        """The replica the balancer last pinned this session to."""
        return self._client.cookies.get(COOKIE)

    def close(self) -> None:
        self._client.close()

    def get(self, path: str) -> httpx.Response:
        return self._http().get(path)

    def join(self, api_name: str, data: list[Any], headers: dict[str, str] | None = None) -> httpx.Response:
        body = {
            "data": data,
            "fn_index": self.fn_index[api_name],
            "session_hash": self.session_hash,
            "event_data": None,
            "trigger_id": None,
        }
        return self._http().post("gradio_api/queue/join", json=body, headers=headers)

    def stream(self) -> Iterator[tuple[float, dict[str, Any]]]:
        """The messages of queue/data as they arrive, each with when it arrived (time.monotonic)."""
        url = f"gradio_api/queue/data?session_hash={self.session_hash}"
        with self._http().stream("GET", url, timeout=STREAM_TIMEOUT_S) as response:
            if response.status_code != 200:
                response.read()
                yield time.monotonic(), {"msg": "http_error", "status": response.status_code}
                return
            try:
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        message = json.loads(line.removeprefix("data: "))
                        yield time.monotonic(), message
                        if message.get("msg") == "process_completed":
                            return
            except httpx.RemoteProtocolError:  # Gradio raises its 404 once the stream has begun
                yield time.monotonic(), {"msg": "stream_broken"}

    def call(self, api_name: str, data: list[Any], headers: dict[str, str] | None = None) -> Any:
        joined = self.join(api_name, data, headers)
        assert joined.status_code == 200, joined.text
        for _, message in self.stream():
            if message["msg"] in {"http_error", "stream_broken"}:
                raise AssertionError(f"queue/data failed: {message}")
            if message["msg"] == "process_completed":
                assert message["success"], message
                return message["output"]["data"][0]
        raise AssertionError("the event stream ended without an answer")
