"""Running the emulator with uvicorn in a background thread (for tests and scripts).

The socket is bound before uvicorn starts (port 0 = a free port chosen by the OS),
so there is no race between picking a port and listening on it, and the URL is
known (and connectable) up front.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.applications import Starlette

from .app import create_app

STARTUP_TIMEOUT_S = 10.0


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    # IPPROTO_TCP lets asyncio turn on TCP_NODELAY; without it each kept-alive request waits ~40 ms.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)  # connections made before uvicorn runs wait in the backlog instead of failing
    return sock


def make_server(app: Starlette, log_level: str = "warning") -> uvicorn.Server:
    config = uvicorn.Config(
        app, log_level=log_level, lifespan="off", loop="asyncio", timeout_graceful_shutdown=2
    )
    return uvicorn.Server(config)


@contextmanager
def serve_in_thread(app: Starlette, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``app`` on a background thread; yield its base URL (no trailing slash)."""
    sock = bind_socket(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    server = make_server(app)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="provider-emulator", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not server.started:  # poll the flag uvicorn sets once it accepts connections
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the provider emulator did not start")
            time.sleep(0.005)
        yield f"http://{bound_host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=STARTUP_TIMEOUT_S)
        sock.close()


@contextmanager
def run_emulator(latency_ms: float = 0, **app_options: object) -> Iterator[str]:
    """A fresh emulator (own request log and fault queue) on a free port; yields its base URL."""
    with serve_in_thread(create_app(latency_ms=latency_ms, **app_options)) as url:  # type: ignore[arg-type]
        yield url
