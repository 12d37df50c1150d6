"""CLI: ``python -m tests.emulator [--host 127.0.0.1] [--port 8765] [--latency-ms 0] [--chunk-delay-ms 0]``.

Runs the emulator in the foreground (Ctrl+C stops it) so the app can be tried by
hand against it: the Gemini base URL is the printed address, the OpenAI base URL is
that address plus ``/v1``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .app import create_app
from .server import bind_socket, make_server
from .state import StockImage


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0,
        help="each generate/edit answer leaves this long after its request arrived (rendering included)",
    )
    parser.add_argument(
        "--answer-images",
        type=Path,
        help="a directory of PNG/JPEG files: Gemini answers with them in turn instead of rendering (benchmarks)",
    )
    parser.add_argument(
        "--chunk-delay-ms",
        type=float,
        default=0,
        help="a streamed Gemini answer waits this long between its chunks (drafts stay on screen)",
    )
    parser.add_argument("--signature-filler", type=int, default=256, help="bytes of padding per signature")
    args = parser.parse_args(argv)

    sock = bind_socket(args.host, args.port)
    host, port = sock.getsockname()[:2]
    server = make_server(
        create_app(
            latency_ms=args.latency_ms,
            chunk_delay_ms=args.chunk_delay_ms,
            signature_filler=args.signature_filler,
            stock=_stock(args.answer_images) if args.answer_images else (),
        ),
        "info",
    )
    # The URL stays the last word of the line: scripts and tests take it with ``rsplit(" ", 1)``.
    print(f"Provider emulator (Gemini, OpenAI Images at /v1) listening on http://{host}:{port}", flush=True)  # noqa: T201
    server.run(sockets=[sock])


def _stock(directory: Path) -> tuple[StockImage, ...]:
    mimes = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in mimes)
    if not files:
        raise SystemExit(f"no PNG or JPEG files in {directory}")
    return tuple(StockImage(mimes[p.suffix.lower()], p.read_bytes()) for p in files)


if __name__ == "__main__":
    main()
