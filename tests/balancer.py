"""Debian's HAProxy running deploy/haproxy.cfg, the file a self-hoster runs, for the tests.

``make haproxy`` installs the package (its own service never starts). ``balancer`` starts
``haproxy -db`` (in the foreground, no daemon) with the file's environment variables pointing it
at the given replicas, listening on 127.0.0.1 on a free port, with a stats socket in a private
temporary folder. It stops when the ``with`` ends, when the test process dies (the kernel sends
it a signal: ``PR_SET_PDEATHSIG``), and at the latest after ``MAX_LIFETIME_S`` (``timeout``).
Every request is one line of its log (the file's ``log-format``), parsed into ``Logged``.
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.app_process import free_port
from tests.servers import dies_with_parent

__all__ = ["CONFIG", "Balancer", "Logged", "balancer"]

CONFIG = Path(__file__).resolve().parents[1] / "deploy" / "haproxy.cfg"
MAX_LIFETIME_S = 1800
_MISSING = (
    "The load-balancer tests need Debian's haproxy: run `make haproxy` (or apt-get install haproxy) as root."
)
#: ``%ci:%cp %b/%s %ST %HM %HP cookie=%CC ua=%hr ...`` (deploy/haproxy.cfg)
_LINE = re.compile(
    r"^(?P<client>\S+):\d+ (?P<backend>[^/\s]+)/(?P<server>\S+) (?P<status>-?\d+) (?P<method>\S+) (?P<path>\S+)"
    r" cookie=(?:retouch_replica=)?(?P<cookie>\S*) ua=\{(?P<agent>[^}]*)\}"
)


@dataclass(frozen=True)
class Logged:
    """One request as the balancer logged it: who sent it, which replica served it (``<NOSRV>``: none)."""

    client: str
    server: str
    status: int
    method: str
    path: str
    cookie: str  # the retouch_replica cookie the request carried ("-": none)
    agent: str  # its User-Agent (tests tag their clients with it)


@dataclass
class Balancer:
    url: str  # ending in "/"
    process: subprocess.Popen[str]
    stats_socket: Path
    output: list[str] = field(default_factory=list)

    def requests(self) -> list[Logged]:
        found = (_LINE.match(line) for line in list(self.output))
        return [
            Logged(
                m["client"], m["server"], int(m["status"]), m["method"], m["path"], m["cookie"], m["agent"]
            )
            for m in found
            if m is not None
        ]

    def logged(self, agent: str, count: int, timeout_s: float = 10) -> list[Logged]:
        """The requests of the client named ``agent``, once ``count`` are in the log (a line is
        written when its request ends, a moment after the client has its answer)."""
        deadline = time.monotonic() + timeout_s
        while len(found := [r for r in self.requests() if r.agent == agent]) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(found)} requests of {agent} logged, not {count}")
            time.sleep(0.05)
        return found

    def admin(self, command: str) -> str:
        """One command on the stats socket (``show stat``, ``show servers state``)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(self.stats_socket))
            sock.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def server_status(self) -> dict[str, str]:
        """Each replica's state as the health checks see it: ``{"app1": "UP", "app2": "DOWN"}``."""
        rows = self.admin("show stat").splitlines()
        header = rows[0].lstrip("# ").split(",")
        states = {}
        for row in rows[1:]:
            values = dict(zip(header, row.split(","), strict=False))
            if values.get("pxname") == "replicas" and values.get("svname") not in {"FRONTEND", "BACKEND"}:
                states[values["svname"]] = values["status"].split()[0]
        return states

    def wait_for_status(self, wanted: dict[str, str], timeout_s: float = 30) -> float:
        """Poll until the replicas are in ``wanted`` states; how long that took."""
        started = time.monotonic()
        while (seen := self.server_status()) != wanted:
            if time.monotonic() - started > timeout_s:
                raise AssertionError(f"replicas stayed {seen}, wanted {wanted}; log:\n{''.join(self.output)}")
            time.sleep(0.05)
        return time.monotonic() - started


@contextmanager
def balancer(replica_urls: Sequence[str], **settings: str) -> Iterator[Balancer]:
    """HAProxy in front of ``replica_urls`` (``http://127.0.0.1:PORT/``), once every replica is UP."""
    executable = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(executable).exists():
        raise RuntimeError(_MISSING)
    folder = Path(tempfile.mkdtemp(prefix="retouch-lb-"))  # short: a unix socket path has 107 bytes
    port = free_port()
    env = {
        "PATH": "/usr/sbin:/usr/bin:/bin",
        "RETOUCH_LB_BIND": f"127.0.0.1:{port}",
        "RETOUCH_LB_STATS_SOCKET": str(folder / "stats.sock"),
        **{
            f"RETOUCH_LB_SERVER_{n}": url.split("//", 1)[1].rstrip("/")
            for n, url in enumerate(replica_urls, 1)
        },
        **settings,
    }
    command = ["timeout", "-s", "TERM", str(MAX_LIFETIME_S), executable, "-db", "-f", str(CONFIG)]
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=dies_with_parent(signal.SIGTERM),
    )
    assert process.stdout is not None
    lb = Balancer(f"http://127.0.0.1:{port}/", process, folder / "stats.sock")
    threading.Thread(target=lb.output.extend, args=(process.stdout,), daemon=True).start()
    try:
        _wait_until_listening(lb, port)
        lb.wait_for_status({f"app{n}": "UP" for n in range(1, len(replica_urls) + 1)})
        yield lb
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)


def _wait_until_listening(lb: Balancer, port: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if lb.process.poll() is not None:
            raise RuntimeError("haproxy did not start:\n" + "".join(lb.output))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            if lb.stats_socket.exists():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"haproxy did not listen within {timeout_s:.0f} s:\n" + "".join(lb.output))
