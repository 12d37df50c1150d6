"""CLI: ``python -m tests.emulator [--host 127.0.0.1] [--port 8765] [--latency-ms 0]``.

Runs the emulator in the foreground (Ctrl+C stops it) so the app can be tried by
hand against it: the Gemini base URL is the printed address, the OpenAI base URL is
that address plus ``/v1``.
"""

from __future__ import annotations

import argparse

from .app import create_app
from .server import bind_socket, make_server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument(
        "--latency-ms", type=float, default=0, help="delay added to every generate/edit answer"
    )
    parser.add_argument("--signature-filler", type=int, default=256, help="bytes of padding per signature")
    args = parser.parse_args(argv)

    sock = bind_socket(args.host, args.port)
    host, port = sock.getsockname()[:2]
    server = make_server(
        create_app(latency_ms=args.latency_ms, signature_filler=args.signature_filler), "info"
    )
    # The URL stays the last word of the line: scripts and tests take it with ``rsplit(" ", 1)``.
    print(f"Provider emulator (Gemini, OpenAI Images at /v1) listening on http://{host}:{port}", flush=True)  # noqa: T201
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
