"""Several replicas started at once: one blank PostgreSQL database, one data directory, both serve.

Each replica migrates at startup (one does, the other waits for the migrations lock), sweeps
unused images (or skips while the other sweeps) and reads the browser secret from the shared
data directory, so an owner id one replica's page stored decrypts on the other's.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path

import httpx
import pytest

from storage import MIGRATIONS
from tests.app_process import ROOT, AppRun, app_env, free_port, launched
from tests.postgres import PostgresServer

pytestmark = pytest.mark.system  # app processes and PostgreSQL

NO_PROVIDER = "http://127.0.0.1:9"  # nothing is sent to a model here


def _replica(data_dir: Path, database_url: str) -> AbstractContextManager[AppRun]:
    port = free_port()
    env = app_env(data_dir, NO_PROVIDER, RETOUCH_PORT=str(port), DATABASE_URL=database_url)
    env.pop("RETOUCH_BROWSER_SECRET", None)
    return launched([sys.executable, "app.py"], ROOT, env, port, until_healthy=True)


def _browser_secret(run: AppRun) -> str:
    config = httpx.get(run.url + "config", timeout=10).json()
    [secret] = [c["props"]["secret"] for c in config["components"] if c.get("type") == "browserstate"]
    return str(secret)


def test_two_replicas_started_at_once_on_a_blank_database_both_serve(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    database_url = postgres.url(postgres.fresh_database())
    data_dir = tmp_path / "data"

    with ExitStack() as replicas:
        with ThreadPoolExecutor(2) as pool:  # started together, each until its /healthz answers
            runs = list(
                pool.map(lambda _: replicas.enter_context(_replica(data_dir, database_url)), range(2))
            )

        for run in runs:
            health = run.get("/healthz")
            assert health.status_code == 200, run.log_text()
            assert health.json()["status"] == "ok"
            assert health.json()["schema_version"] == len(MIGRATIONS)
        assert len({_browser_secret(run) for run in runs}) == 1
