"""Two replicas that share nothing but PostgreSQL and an S3 bucket (``RETOUCH_BLOBS=s3://…``).

Each ``python app.py`` has a fresh data directory of its own, as replicas on two machines
would: an image made on A is downloaded through B's ``/image`` and edited on B. With images
on local disk, B answered 403 and stored a FileNotFoundError turn (issue 14).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file

from tests.app_process import app_run
from tests.emulator import read_provenance
from tests.emulator.fixtures import EmulatorControl, run_emulator
from tests.pictures import png
from tests.postgres import PostgresServer
from tests.s3 import S3Server

pytestmark = pytest.mark.system


def test_an_image_made_on_one_replica_is_downloaded_and_edited_on_another(
    tmp_path: Path, postgres: PostgresServer, s3: S3Server, s3_bucket: str
) -> None:
    photo = tmp_path / "street.png"
    photo.write_bytes(png((90, 140, 200), (320, 240)))
    env = {
        "DATABASE_URL": postgres.url(postgres.fresh_database()),
        "RETOUCH_BROWSER_SECRET": secrets.token_urlsafe(32),
        "RETOUCH_BLOBS": f"s3://{s3_bucket}/team",
        **s3.env(),
    }
    with (
        run_emulator() as emulator_url,
        app_run(tmp_path / "data-a", emulator_url, **env) as a,
        app_run(tmp_path / "data-b", emulator_url, **env) as b,
    ):
        first = Client(a.url, verbose=False, download_files=False).predict(
            "", "make the sky stormy", [handle_file(str(photo))], None, api_name="/send"
        )
        conversation_id, key = first["conversation_id"], first["owner_key"]
        made_on_a = first["turns"][-1]["image_sha256"]

        downloaded = Client(b.url, verbose=False).predict(
            conversation_id, made_on_a, key=key, api_name="/image"
        )
        edited = Client(b.url, verbose=False, download_files=False).predict(
            conversation_id, "now remove the car", key=key, api_name="/send"
        )
        sent_by_b = EmulatorControl(emulator_url).requests()[-1]["body"]["contents"]
        health = httpx.get(b.url + "healthz", timeout=10).json()

    assert hashlib.sha256(Path(downloaded).read_bytes()).hexdigest() == made_on_a
    assert [t["status"] for t in edited["turns"]] == ["ok"] * 4
    # B replayed A's answer, read from the bucket, as the very bytes the emulator made
    [replayed] = [p["inlineData"]["data"] for p in sent_by_b[1]["parts"] if "inlineData" in p]
    assert hashlib.sha256(base64.b64decode(replayed)).hexdigest() == made_on_a
    assert read_provenance(Path(downloaded).read_bytes())["contents"] == 1
    assert (health["status"], health["blobs"]) == ("ok", "ok")
    assert not list((tmp_path / "data-a").glob("images/*")) and not list(
        (tmp_path / "data-b").glob("images/*")
    )
    assert list((tmp_path / "data-b" / "image-cache").rglob(f"{made_on_a}.*"))  # fetched into B's cache
