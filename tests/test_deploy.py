"""The deployment contract: Spaces front matter, requirements.txt, the Dockerfile, /healthz and SIGTERM.

There is no Docker here, so the image's recipe is replayed instead: the build context is
copied as .dockerignore filters it, the Dockerfile's ``RUN pip install`` lines run in a fresh
virtualenv, and the image's CMD starts from that copy with the image's ENV. What cannot be
replayed (the base image, ``useradd``) is checked by reading the Dockerfile.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import gradio as gr
import httpx
import pytest
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient
from gradio_client import Client
from gradio_client.exceptions import AppError
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version
from sqlalchemy import create_engine

import app as entry
import chat.config
from chat.config import Settings
from chat.server.health import health_route
from chat.server.lifecycle import DrainGate, DrainReport, Lifecycle
from storage import MIGRATIONS, create_conversation, session_scope
from storage import repository as repo
from storage.db import DB_FILENAME
from tests.app_process import AppRun, app_env, free_port, launched
from tests.emulator.fixtures import EmulatorControl, run_emulator
from tests.fakes import FakeClock, migrated_engine

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.system  # real servers, processes and image builds
STARTUP_TIMEOUT_S = 90
PIP_TIMEOUT_S = 600
SPACES_COLORS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
HEALTHY = {
    "status": "ok",
    "schema_version": len(MIGRATIONS),
    "database": "ok",
    "leases": "ok",
    "live_leases": 0,
}


# --- reading the deployment files ---------------------------------------------------------------


def front_matter() -> dict[str, Any]:
    text = (ROOT / "README.md").read_text()
    assert text.startswith("---\n"), (
        "Spaces reads its config only from front matter on the README's first line"
    )
    block, _, _ = text[4:].partition("\n---\n")
    return yaml.safe_load(block)


def project_dependencies() -> dict[str, Requirement]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return by_name(pyproject["project"]["dependencies"])


def requirements_txt() -> dict[str, Requirement]:
    lines = [line.split("#", 1)[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    return by_name([line for line in lines if line])


def by_name(specs: list[str]) -> dict[str, Requirement]:
    requirements = [Requirement(spec) for spec in specs]
    named = {canonicalize_name(r.name): r for r in requirements}
    assert len(named) == len(requirements), f"a package is listed twice: {specs}"
    return named


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def arguments_of(keyword: str) -> list[str]:
    return [arguments for kw, arguments in dockerfile() if kw == keyword]


def exec_form(arguments: str) -> list[str]:
    assert arguments.startswith("["), f"use the exec form (no shell to forward signals): {arguments}"
    return json.loads(arguments)


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for arguments in arguments_of("ENV"):
        for word in shlex.split(arguments):
            key, _, value = word.partition("=")
            env[key] = value
    return env


def pip_installs() -> list[list[str]]:
    """The arguments after ``pip install`` of every RUN that installs Python packages."""
    installs = []
    for command in arguments_of("RUN"):
        words = shlex.split(command)
        if "pip" not in words:
            continue
        assert words[:2] == ["pip", "install"] and "&&" not in words, (
            f"one plain pip install per RUN: {command}"
        )
        installs.append(words[2:])
    return installs


def dockerignore_patterns() -> list[re.Pattern[str]]:
    patterns = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        assert not line.startswith("!"), "this replay does not implement exceptions"
        patterns.append(re.compile(_glob_regex(line.strip("/"))))
    return patterns


def _glob_regex(pattern: str) -> str:
    """Docker's (Go filepath.Match) glob with ``**``, as a full-match regex over a context-relative path."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        else:
            char = pattern[i]
            out += "[^/]*" if char == "*" else "[^/]" if char == "?" else re.escape(char)
            i += 1
    return out + r"\Z"


def copy_build_context(dest: Path) -> None:
    """Copy what ``COPY . .`` would put into the image: the repository minus .dockerignore's paths."""
    patterns = dockerignore_patterns()

    def ignored(relative: str) -> bool:
        return any(p.match(relative) for p in patterns)

    for directory, dirnames, filenames in os.walk(ROOT):
        relative_dir = Path(directory).relative_to(ROOT)
        dirnames[:] = [d for d in dirnames if not ignored((relative_dir / d).as_posix())]
        for name in filenames:
            relative = relative_dir / name
            if not ignored(relative.as_posix()):
                (dest / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / relative, dest / relative)


# --- running the app as a process ---------------------------------------------------------------


@contextmanager
def serving(argv: list[str], cwd: Path, env: dict[str, str]) -> Iterator[AppRun]:
    """Run ``argv`` (``python app.py``) in ``cwd``; yield once ``/healthz`` answers."""
    port = free_port()
    env = {**env, "RETOUCH_PORT": str(port), "PYTHONUNBUFFERED": "1"}
    with launched(argv, cwd, env, port, until_healthy=True, kill=True) as app:
        yield app


def dev_env(tmp_path: Path, emulator_url: str, **extra: str) -> dict[str, str]:
    return app_env(tmp_path / "data", emulator_url, **extra)


def wait_for_model_call(emulator: EmulatorControl, process: AppRun) -> None:
    process.wait_until(lambda: len(emulator.requests()) == 1, "the model call to reach the emulator")


# --- Spaces and requirements ----------------------------------------------------------------------


def test_readme_front_matter_declares_a_gradio_space_on_the_pinned_gradio():
    config = front_matter()
    pinned = project_dependencies()["gradio"].specifier

    assert config["title"] == "Retouch" and config["emoji"]
    assert {config["colorFrom"], config["colorTo"]} <= SPACES_COLORS
    assert config["sdk"] == "gradio"
    assert SpecifierSet(f"=={config['sdk_version']}") == pinned
    assert config["sdk_version"] == version("gradio")
    assert config["app_file"] == "app.py" and (ROOT / config["app_file"]).is_file()
    assert config["python_version"] == "3.11"  # a string: unquoted, YAML reads 3.10 as 3.1
    assert config["pinned"] is False
    assert 0 < len(config["short_description"]) <= 60  # the Hub's limit


def test_requirements_txt_pins_exactly_the_pyproject_dependencies_inside_their_ranges():
    """Agree = the same packages, extras and markers; each requirements.txt line an exact ``==``
    pin; each pin allowed by pyproject's range; and gradio's pin is the Space's sdk_version."""
    declared, pinned = project_dependencies(), requirements_txt()

    assert pinned.keys() == declared.keys()
    for name, requirement in pinned.items():
        [spec] = list(requirement.specifier)
        assert spec.operator == "==" and "*" not in spec.version, f"{name}: pin an exact version"
        assert requirement.extras == declared[name].extras and requirement.marker == declared[name].marker
        assert declared[name].specifier.contains(Version(spec.version), prereleases=True), (
            f"requirements.txt pins {name} {spec.version}, outside pyproject's {declared[name].specifier}"
        )
    assert list(pinned["gradio"].specifier)[0].version == front_matter()["sdk_version"]


# --- the Dockerfile, read -------------------------------------------------------------------------


def test_dockerfile_runs_the_app_as_uid_1000_from_python_311_with_data_in_a_volume():
    instructions = dockerfile()
    keywords = [kw for kw, _ in instructions]
    env = image_env()

    # The official base by default; tests/test_docker_image.py passes a local stand-in.
    assert arguments_of("ARG") == [f"BASE_IMAGE=python:{front_matter()['python_version']}-slim"]
    assert arguments_of("FROM") == ["${BASE_IMAGE}"]
    assert any("--uid 1000" in run for run in arguments_of("RUN"))
    [user] = arguments_of("USER")
    assert user not in {"root", "0"}
    assert keywords.index("USER") > max(i for i, kw in enumerate(keywords) if kw == "RUN")
    assert arguments_of("WORKDIR") == ["/app"]
    assert arguments_of("VOLUME") == ["/data"] and arguments_of("EXPOSE") == ["7860"]
    assert {"RETOUCH_DATA_DIR": "/data", "RETOUCH_HOST": "0.0.0.0"}.items() <= env.items()
    assert env["GRADIO_ANALYTICS_ENABLED"] == "False" and env["PYTHONUNBUFFERED"] == "1"
    assert exec_form(arguments_of("CMD")[0]) == ["python", "app.py"]
    # Dependencies are installed before the code is copied, so a code change keeps that layer.
    copies = [i for i, (kw, arguments) in enumerate(instructions) if kw == "COPY"]
    install = next(i for i, (kw, arguments) in enumerate(instructions) if kw == "RUN" and "pip" in arguments)
    assert instructions[copies[0]][1] == "requirements.txt ." and copies[0] < install < copies[-1]
    assert pip_installs() == [["--no-cache-dir", "-r", "requirements.txt"]]


def test_dockerfile_healthcheck_polls_healthz_with_the_standard_library():
    [healthcheck] = arguments_of("HEALTHCHECK")
    options, _, command = healthcheck.partition(" CMD ")
    argv = exec_form(command.strip())

    assert argv[:2] == ["python", "-c"] and "urllib.request" in argv[2] and "curl" not in healthcheck
    assert "http://127.0.0.1:%s/healthz" in argv[2] and "'7860'" in argv[2]
    assert "--timeout=" in options and "--start-period=" in options


def test_dockerignore_keeps_secrets_data_and_the_virtualenv_out_of_the_image(tmp_path):
    copy_build_context(tmp_path)
    copied = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")}

    assert {"app.py", "requirements.txt", "chat/config.py", "storage/migrations.py"} <= copied
    patterns = dockerignore_patterns()
    for path in (".env", ".env.production", ".venv", "data", ".git", "tests", "chat/__pycache__"):
        assert any(p.match(path) for p in patterns), f"{path} would be copied into the image"
    assert not any(part in {".venv", ".git", "tests", "__pycache__"} for p in copied for part in p.split("/"))


# --- the Dockerfile, replayed ---------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayedImage:
    context: Path
    python: Path


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> ReplayedImage:
    """The build context and a fresh virtualenv with only the Dockerfile's pip installs in it."""
    root = tmp_path_factory.mktemp("image")
    context, venv = root / "app", root / "venv"
    copy_build_context(context)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=PIP_TIMEOUT_S)
    python = venv / "bin" / "python"
    for arguments in pip_installs():
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *arguments],
            cwd=context,
            check=True,
            timeout=PIP_TIMEOUT_S,
        )
    return ReplayedImage(context, python)


def test_image_recipe_installs_in_a_clean_venv_and_its_cmd_serves_healthz_then_exits_zero_on_sigterm(
    image: ReplayedImage, tmp_path: Path
):
    data_dir = tmp_path / "data"
    env = {
        "PATH": f"{image.python.parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        **image_env(),
        "RETOUCH_DATA_DIR": str(data_dir),  # the volume
        "RETOUCH_HOST": "127.0.0.1",
    }
    [healthcheck] = arguments_of("HEALTHCHECK")
    probe = [str(image.python), *exec_form(healthcheck.partition(" CMD ")[2].strip())[1:]]
    cmd = exec_form(arguments_of("CMD")[0])
    argv = [str(image.python) if cmd[0] == "python" else cmd[0], *cmd[1:]]

    with serving(argv, image.context, env) as app:
        health = app.get("/healthz")
        assert (health.status_code, health.json()) == (200, {**HEALTHY, "blobs": "ok"})
        probe_env = {**env, "RETOUCH_PORT": str(app.port)}
        assert subprocess.run(probe, env=probe_env, capture_output=True, timeout=30).returncode == 0
        assert app.get("/").status_code == 200  # the UI itself

        (data_dir / DB_FILENAME).unlink()  # the volume went away under a running app
        health = app.get("/healthz")
        assert health.status_code == 503
        assert health.json() == {
            "status": "error",
            "database": "error",
            "reason": "database file is missing",
            "blobs": "ok",  # the image files are another matter: still writable
        }
        assert subprocess.run(probe, env=probe_env, capture_output=True, timeout=30).returncode == 1

        code, took = app.exit_code_after(signal.SIGTERM, timeout_s=30)
    assert code == 0, app.log_text()
    assert took < 10
    assert "Stopped on SIGTERM" in app.log_text() and "no job was running" in app.log_text()


# --- graceful shutdown, end to end ------------------------------------------------------------------


def test_sigterm_lets_a_running_model_call_finish_and_refuses_new_work_then_exits_zero(tmp_path, emulator):
    with serving([sys.executable, "app.py"], ROOT, dev_env(tmp_path, emulator.url)) as app:
        client = Client(app.url, verbose=False, download_files=False)
        job = client.submit("", "a lighthouse at dusk [fault:slow:3]", None, None, api_name="/send")
        wait_for_model_call(emulator, app)

        app.process.send_signal(signal.SIGTERM)
        app.wait_until(lambda: app.get("/healthz").status_code == 503, "/healthz to report the shutdown")
        assert app.get("/healthz").json()["status"] == "shutting_down"
        refused = httpx.post(app.url + "gradio_api/queue/join", json={}, timeout=10)
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "30"

        transcript = job.result(timeout=60)
        code = app.process.wait(timeout=30)

    assert transcript["turns"][-1]["status"] == "ok", transcript
    assert code == 0, app.log_text()
    assert "Stopped on SIGTERM" in app.log_text() and ": 1 job finished" in app.log_text()


def test_sigterm_stops_waiting_for_a_model_call_after_the_grace_period(tmp_path):
    with run_emulator() as emulator_url:
        emulator = EmulatorControl(emulator_url)
        env = dev_env(tmp_path, emulator_url, RETOUCH_SHUTDOWN_GRACE="1")
        with serving([sys.executable, "app.py"], ROOT, env) as app:
            client = Client(app.url, verbose=False, download_files=False)
            client.submit("", "a lighthouse at dusk [fault:slow:8]", None, None, api_name="/send")
            wait_for_model_call(emulator, app)
            code, took = app.exit_code_after(signal.SIGTERM, timeout_s=30)
            client.close()

    assert code == 0, app.log_text()
    assert took < 7  # 1 s of grace, 2 s for open streams, and a margin: not the provider's 8 s
    assert "1 job cut off (grace 1 s" in app.log_text()


# --- /healthz and the drain gate, in process --------------------------------------------------------


@pytest.fixture
def engine(tmp_path):
    engine = migrated_engine(tmp_path)
    yield engine
    engine.dispose()


def health_client(engine, draining: bool = False) -> TestClient:
    return TestClient(FastAPI(routes=[health_route(engine, draining=lambda: draining)]))


def test_healthz_reports_the_schema_version_after_querying_the_database(engine):
    response = health_client(engine).get("/healthz")

    assert (response.status_code, response.json()) == (200, HEALTHY)
    assert response.headers["Cache-Control"] == "no-store"


class _Store:
    def __init__(self, answers: bool) -> None:
        self.answers = answers

    def healthy(self) -> bool:
        return self.answers


@pytest.mark.parametrize(("answers", "said"), [(True, "ok"), (False, "error")])
def test_healthz_says_whether_the_image_store_answers_and_stays_200_for_a_shared_outage(
    engine, answers, said
):
    route = health_route(engine, draining=lambda: False, blobs=_Store(answers))
    response = TestClient(FastAPI(routes=[route])).get("/healthz")

    assert (response.status_code, response.json()) == (200, {**HEALTHY, "blobs": said})


def test_healthz_counts_the_turns_holding_a_lease_on_every_replica_and_needs_the_lease_table(engine):
    now = datetime.now(UTC)
    with session_scope(engine) as session:
        for conversation_id, expires in (("running", now + timedelta(seconds=30)), ("died", now)):
            create_conversation(
                session=session, conversation_id=conversation_id, title="t", now=now, owner_id="o" * 20
            )
            repo.acquire_lease(
                session=session, conversation_id=conversation_id, holder="r", now=now, expires_at=expires
            )
    assert health_client(engine).get("/healthz").json() == {**HEALTHY, "live_leases": 1}

    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE conversation_lease")
    response = health_client(engine).get("/healthz")
    assert response.status_code == 503
    assert response.json()["leases"] == "error" and response.json()["reason"].startswith(
        "lease table unreadable ("
    )


def test_healthz_is_503_when_the_database_file_is_gone_and_does_not_recreate_it(engine, tmp_path):
    (tmp_path / DB_FILENAME).unlink()

    response = health_client(engine).get("/healthz")

    assert response.status_code == 503
    assert response.json()["reason"] == "database file is missing"
    assert not (tmp_path / DB_FILENAME).exists()


def test_healthz_is_503_naming_only_the_error_class_when_the_database_refuses_connections():
    def refuse() -> Any:
        import sqlite3

        raise sqlite3.OperationalError("unable to open /secret/path/db")

    unreachable = create_engine("sqlite://", creator=refuse)

    response = health_client(unreachable).get("/healthz")

    assert response.status_code == 503
    assert response.json() == {
        "status": "error",
        "database": "error",
        "reason": "database unreachable (OperationalError)",
    }


def test_healthz_is_503_while_the_app_drains(engine):
    response = health_client(engine, draining=True).get("/healthz")

    assert response.status_code == 503 and response.json()["status"] == "shutting_down"


def test_drain_gate_refuses_new_work_but_lets_reads_through_once_draining():
    lifecycle = Lifecycle()
    api = FastAPI()
    api.add_api_route("/work", lambda: {"ok": True}, methods=["GET", "POST"])
    api.add_middleware(DrainGate, lifecycle=lifecycle)
    client = TestClient(api)

    assert client.post("/work").status_code == 200
    lifecycle.request_stop("SIGTERM")
    refused = client.post("/work")
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "30"
    assert client.get("/work").status_code == 200


def test_during_the_notice_healthz_says_stopping_while_new_work_is_still_taken():
    """Behind a balancer, the replica's sessions still arrive until its health checks notice."""
    fake = FakeClock()
    lifecycle = Lifecycle(sleep=fake.pause, clock=fake, poll_s=0.5, notice_s=5)
    api = FastAPI()
    api.add_api_route("/work", lambda: {"ok": True}, methods=["POST"])
    api.add_middleware(DrainGate, lifecycle=lifecycle)
    client = TestClient(api)
    lifecycle.request_stop("SIGTERM")

    assert (lifecycle.draining, lifecycle.refusing) == (True, False)
    assert client.post("/work").status_code == 200
    server = FakeServer(fake, busy_until=7)
    report = lifecycle.shutdown(server, grace_s=30)

    assert lifecycle.refusing and client.post("/work").status_code == 503
    assert (server.stopped_at, report.waited_s) == (7.0, 2.0)  # 5 s of notice, then 2 s of drain


def test_a_second_signal_cuts_the_notice_short():
    fake = FakeClock()

    def impatient(seconds: float) -> None:  # the second Ctrl-C comes while the notice runs
        fake.pause(seconds)
        lifecycle.request_stop("SIGINT")

    lifecycle = Lifecycle(sleep=impatient, clock=fake, poll_s=0.5, notice_s=60)
    lifecycle.request_stop("SIGINT")

    lifecycle.give_notice()

    assert fake.now == 0.5 and lifecycle.refusing


def test_launch_serves_no_stored_image_and_keeps_gradios_check_with_healthz_added(tmp_path, capfd):
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", port=free_port(), host="127.0.0.1")
    engine = entry.open_database(settings)
    with gr.Blocks() as demo:
        path = gr.Textbox()
        leak = gr.File()
        gr.Button().click(lambda p: p, path, leak, api_name="leak")
    lifecycle = Lifecycle()
    entry.serve(demo, settings, engine, lifecycle)
    try:
        url = f"http://127.0.0.1:{settings.port}"
        assert httpx.get(url + "/healthz").json() == HEALTHY
        client = Client(url + "/", verbose=False, download_files=False)
        stored = settings.blob_dir / "ab" / "ab12.png"  # the image store is never served by path
        stored.parent.mkdir(parents=True)
        stored.write_bytes(b"png")
        assert httpx.get(f"{url}/gradio_api/file={stored.resolve()}").status_code == 403
        with pytest.raises(AppError):
            client.predict("/etc/hostname", api_name="/leak")
        client.close()
        assert "InvalidPathError: Cannot move /etc/hostname" in capfd.readouterr().err
    finally:
        entry.GradioServer(demo).stop()
        engine.dispose()


# --- the lifecycle's decisions, with a fake clock ---------------------------------------------------


def test_drain_returns_as_soon_as_the_last_job_finishes():
    fake = FakeClock()
    lifecycle = Lifecycle(sleep=fake.pause, clock=fake, poll_s=0.5)
    lifecycle.request_stop("SIGTERM")

    report = lifecycle.drain(lambda: 1 if fake.now < 2 else 0, grace_s=30)

    assert report == DrainReport("SIGTERM", jobs=1, jobs_left=0, waited_s=2.0, grace_s=30)
    assert report.summary() == "Stopped on SIGTERM after 2.0 s: 1 job finished"


def test_drain_gives_up_after_the_grace_period():
    fake = FakeClock()
    lifecycle = Lifecycle(sleep=fake.pause, clock=fake, poll_s=0.5)
    lifecycle.request_stop("SIGINT")

    report = lifecycle.drain(lambda: 2, grace_s=3)

    assert (report.jobs_left, report.waited_s) == (2, 3.0)
    assert report.summary() == "Stopped on SIGINT after 3.0 s: 2 jobs cut off (grace 3 s, 0 finished)"


def test_a_second_signal_ends_the_drain_at_once():
    fake = FakeClock()
    lifecycle = Lifecycle(sleep=fake.pause, clock=fake, poll_s=0.5)
    lifecycle.request_stop("SIGTERM")

    def jobs() -> int:
        if fake.now >= 1:
            lifecycle.request_stop("SIGTERM")  # the impatient second Ctrl-C
        return 1

    report = lifecycle.drain(jobs, grace_s=30)

    assert report.signal == "SIGTERM" and report.jobs_left == 1 and report.waited_s == 1.0


def test_with_nothing_running_the_drain_does_not_wait():
    fake = FakeClock()
    lifecycle = Lifecycle(sleep=fake.pause, clock=fake)
    lifecycle.request_stop("SIGTERM")

    report = lifecycle.drain(lambda: 0, grace_s=30)

    assert report.waited_s == 0 and report.summary() == "Stopped on SIGTERM after 0.0 s: no job was running"


class FakeServer:
    def __init__(self, fake: FakeClock, busy_until: float) -> None:
        self.fake, self.busy_until, self.stopped_at = fake, busy_until, None

    def jobs(self) -> int:
        assert self.stopped_at is None, "jobs are counted before the server stops"
        return 1 if self.fake.now < self.busy_until else 0

    def stop(self) -> None:
        self.stopped_at = self.fake.now


def test_shutdown_stops_the_server_once_its_jobs_are_done():
    fake = FakeClock()
    lifecycle = Lifecycle(sleep=fake.pause, clock=fake, poll_s=0.5)
    lifecycle.request_stop("SIGTERM")
    server = FakeServer(fake, busy_until=2)

    report = lifecycle.shutdown(server, grace_s=30)

    assert (report.jobs, report.jobs_left, server.stopped_at) == (1, 0, 2.0)


def test_shutdown_stops_the_server_when_the_grace_period_cuts_jobs_off():
    fake = FakeClock()
    lifecycle = Lifecycle(sleep=fake.pause, clock=fake, poll_s=0.5)
    lifecycle.request_stop("SIGTERM")
    server = FakeServer(fake, busy_until=100)

    report = lifecycle.shutdown(server, grace_s=3)

    assert (report.jobs_left, server.stopped_at) == (1, 3.0)


# --- where the app listens and keeps its data ---------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("RETOUCH_DATA_DIR", "RETOUCH_HOST", "GRADIO_SERVER_NAME", "SYSTEM"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_data_dir_is_slash_data_when_it_is_a_writable_directory(clean_env, tmp_path):
    clean_env.setattr(chat.config, "PERSISTENT_DATA_DIR", tmp_path)

    assert Settings(_env_file=None).data_dir == tmp_path


def test_data_dir_is_local_when_slash_data_is_missing_or_a_file(clean_env, tmp_path):
    clean_env.setattr(chat.config, "PERSISTENT_DATA_DIR", tmp_path / "absent")
    assert Settings(_env_file=None).data_dir == Path("data")

    (tmp_path / "file").write_text("")
    clean_env.setattr(chat.config, "PERSISTENT_DATA_DIR", tmp_path / "file")
    assert Settings(_env_file=None).data_dir == Path("data")


def test_data_dir_is_local_when_slash_data_is_read_only(clean_env, tmp_path):
    # chmod cannot stop root, so model a read-only mount the way the app sees it: os.access says no.
    real_access = os.access
    clean_env.setattr(chat.config, "PERSISTENT_DATA_DIR", tmp_path)
    clean_env.setattr(
        chat.config.os,
        "access",
        lambda path, mode: False if Path(path) == tmp_path else real_access(path, mode),
    )

    assert Settings(_env_file=None).data_dir == Path("data")


def test_retouch_data_dir_wins_over_slash_data(clean_env, tmp_path):
    clean_env.setattr(chat.config, "PERSISTENT_DATA_DIR", tmp_path)
    clean_env.setenv("RETOUCH_DATA_DIR", str(tmp_path / "elsewhere"))

    assert Settings(_env_file=None).data_dir == tmp_path / "elsewhere"


def test_the_app_listens_on_all_interfaces_on_spaces_and_on_loopback_elsewhere(clean_env):
    assert entry.listen_host(Settings(_env_file=None), environ={}) == "127.0.0.1"
    assert entry.listen_host(Settings(_env_file=None), environ={"SYSTEM": "spaces"}) == "0.0.0.0"

    clean_env.setenv("GRADIO_SERVER_NAME", "0.0.0.0")  # what Spaces sets
    assert entry.listen_host(Settings(_env_file=None), environ={}) == "0.0.0.0"

    clean_env.setenv("RETOUCH_HOST", "127.0.0.1")  # configured wins, even on Spaces
    assert entry.listen_host(Settings(_env_file=None), environ={"SYSTEM": "spaces"}) == "127.0.0.1"


# --- secrets and private folders ------------------------------------------------------------------


def test_browser_secret_comes_from_the_environment_first(tmp_path, monkeypatch):
    monkeypatch.setenv("RETOUCH_BROWSER_SECRET", "shared-by-every-replica")
    settings = Settings(_env_file=None, RETOUCH_DATA_DIR=tmp_path)
    assert entry.browser_secret(settings) == "shared-by-every-replica"
    assert not (tmp_path / "browser-secret").exists()


def test_browser_secret_file_is_made_once_private_and_kept(tmp_path, monkeypatch):
    monkeypatch.delenv("RETOUCH_BROWSER_SECRET", raising=False)
    settings = Settings(_env_file=None, RETOUCH_DATA_DIR=tmp_path)
    first = entry.browser_secret(settings)
    assert len(first) >= 40 and entry.browser_secret(settings) == first
    assert stat.S_IMODE((tmp_path / "browser-secret").stat().st_mode) == 0o600
    source = "".join(p.read_text() for p in [Path("app.py"), *Path("chat").rglob("*.py")])
    assert "retouch-browser-state" not in source  # no constant fallback anywhere


def test_processes_starting_at_once_share_one_browser_secret(tmp_path, monkeypatch):
    monkeypatch.delenv("RETOUCH_BROWSER_SECRET", raising=False)
    settings = Settings(_env_file=None, RETOUCH_DATA_DIR=tmp_path)
    with ThreadPoolExecutor(8) as pool:
        found = set(pool.map(lambda _: entry.browser_secret(settings), range(32)))
    assert len(found) == 1 and [p.name for p in tmp_path.iterdir()] == ["browser-secret"]


def test_private_dir_is_0700_and_refuses_a_file_in_its_place(tmp_path):
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    assert stat.S_IMODE(entry.private_dir(loose).stat().st_mode) == 0o700
    (tmp_path / "file").write_text("x")
    with pytest.raises((RuntimeError, FileExistsError)):
        entry.private_dir(tmp_path / "file")


def test_a_bad_setting_stops_startup_with_one_line(tmp_path):
    env = {**os.environ, "RETOUCH_DATA_DIR": str(tmp_path), "RETOUCH_TRUSTED_PROXIES": "10.0.0.0/8, nginx"}
    env["GEMINI_MODEL"] = "../../v1/foo"
    done = subprocess.run(
        [sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert (
        line.startswith("Retouch cannot start: ")
        and "GEMINI_MODEL" in line
        and "RETOUCH_TRUSTED_PROXIES" in line
    )
