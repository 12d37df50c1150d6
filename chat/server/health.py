"""``GET /healthz``: is this process able to serve conversations right now?

Gradio has no health route, and its pages answer 200 even when the database is gone, so
Docker's HEALTHCHECK, a load balancer or an uptime monitor would keep sending users to an
app that cannot load or store a single turn. This route really asks the database: the
SQLite file must still be where the app opened it (a vanished volume leaves the pooled
connections writing to a deleted file), ``SELECT 1`` must answer, the schema version is
read from the migrations table, and the lease table (which every turn writes to take its
conversation: chat/conversation/leases.py) must be readable; the body says how many turns hold
a live lease, on all replicas together. While the app drains for shutdown it answers 503 too,
so traffic moves elsewhere before the process stops.

With ``blobs``, the body also says whether the image store answers (``"blobs": "ok"`` or
``"error"``), from a probe each store keeps cheap (S3: one HEAD per replica every 10 s, whatever
the probe rate). An image store that does not answer does not turn the status to 503: every
replica shares the one bucket, so taking them out of a load balancer routes around nothing, and
users would get the balancer's error page instead of the chat's own sentence (the app keeps
serving conversations and cached images, and says in the chat when one cannot be stored).

The body is public (no auth on this route), so a failure names its class, never its message
(which may contain paths or URLs); the details go to the log.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from storage import BlobStore, reader, schema_version, session_scope
from storage import repository as repo

__all__ = ["HEALTH_PATH", "check_database", "health_route"]

HEALTH_PATH = "/healthz"
_NO_STORE = {"Cache-Control": "no-store"}

log = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def check_database(engine: Engine, clock: Callable[[], datetime] = _utcnow) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body of a health check against ``engine``."""
    problem = _sqlite_file_problem(engine)
    if problem is not None:
        log.warning("health check failed: %s", problem)
        return 503, {"status": "error", "database": "error", "reason": problem}
    # A read-only connection (BEGIN, not BEGIN IMMEDIATE): a health check must not queue behind
    # a long write transaction (an import), only tell whether the database answers.
    reading = reader(engine)
    try:
        with reading.connect() as conn:
            conn.execute(text("SELECT 1"))
        version = schema_version(reading)
    except SQLAlchemyError as exc:
        log.warning("health check failed: database unreachable: %s", exc)
        reason = f"database unreachable ({_error_class(exc)})"
        return 503, {"status": "error", "database": "error", "reason": reason}
    try:
        with session_scope(engine, read_only=True) as session:
            live = repo.live_lease_count(session=session, now=clock())
    except SQLAlchemyError as exc:
        log.warning("health check failed: lease table unreadable: %s", exc)
        reason = f"lease table unreadable ({_error_class(exc)})"
        return 503, {
            "status": "error",
            "schema_version": version,
            "database": "ok",
            "leases": "error",
            "reason": reason,
        }
    return 200, {
        "status": "ok",
        "schema_version": version,
        "database": "ok",
        "leases": "ok",
        "live_leases": live,
    }


def _error_class(exc: SQLAlchemyError) -> str:
    """The driver's error class (``OperationalError``), never its message (paths, URLs)."""
    return type(getattr(exc, "orig", None) or exc).__name__


def health_route(engine: Engine, *, draining: Callable[[], bool], blobs: BlobStore | None = None) -> APIRoute:
    """The ``/healthz`` route; a plain ``def`` so FastAPI runs the database query in its thread pool."""

    def healthz() -> JSONResponse:
        if draining():
            body = {"status": "shutting_down", "reason": "the server is shutting down"}
            return JSONResponse(body, status_code=503, headers=_NO_STORE)
        status, body = check_database(engine)
        if blobs is not None:
            body["blobs"] = "ok" if blobs.healthy() else "error"
        return JSONResponse(body, status_code=status, headers=_NO_STORE)

    return APIRoute(HEALTH_PATH, healthz, methods=["GET"], include_in_schema=False)


def _sqlite_file_problem(engine: Engine) -> str | None:
    """Why the engine's SQLite file is unusable, or None (also for in-memory and other databases).

    Checked before connecting: opening a missing file would quietly create an empty database.
    """
    url = engine.url
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if url.query.get("uri") or database.startswith("file:"):
        return None
    path = Path(database)
    if not path.is_file():
        return "database file is missing"
    if not os.access(path, os.R_OK | os.W_OK):
        return "database file is not readable and writable"
    return None
