"""The real image: built from this checkout with Docker and run as a self-hoster would run it.

tests/test_deploy.py replays the Dockerfile without Docker; this builds it (``make docker-engine``
installs Debian's docker.io and starts dockerd) on a stand-in for python:3.11-slim made from
Debian's packages (tests/docker_base.sh: no registry is reachable here), runs it with
``--network host`` on a free loopback port against the provider emulator, and checks what only
the image can show: its process is uid 1000, ``/healthz`` and the HEALTHCHECK answer, a turn
answers with an image, the volume's files are private, ``docker stop`` lets a running turn
finish, and a new container on the same volume shows the conversation.

Every container and volume carries this run's label and is removed when the module ends, and
by a watchdog process if the test process dies first or runs for longer than ``MAX_LIFETIME_S``.
"""

from __future__ import annotations

import functools
import io
import json
import os
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from gradio_client import Client
from PIL import Image

from tests.app_process import free_port
from tests.emulator.fixtures import EmulatorControl
from tests.servers import dies_with_parent

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.docker, pytest.mark.system]

IMAGE = "retouch:test"
LABEL = f"retouch-test-run={os.getpid()}"
MAX_LIFETIME_S = 1800  # the watchdog removes this run's containers and volumes then, at the latest
BASE_TIMEOUT_S = 900  # debootstrap downloads ~60 MB of packages
BUILD_TIMEOUT_S = 900  # pip install of requirements.txt
STARTUP_TIMEOUT_S = 90
STOP_TIMEOUT_S = 40  # the Dockerfile's advice: SIGTERM drains for up to RETOUCH_SHUTDOWN_GRACE (30 s)
SLOW_TURN_S = 3
FIGURES = ROOT / "test-artifacts" / "docker-image.json"  # the times and size this run measured


def docker(*args: str, timeout_s: float = 60) -> str:
    """``docker ARGS``; its output, or a failure that shows what Docker said."""
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}  # BuildKit needs an image of its own pulled; none can be
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout_s, env=env)
    if done.returncode != 0:
        pytest.fail(f"docker {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout.strip()


@dataclass(frozen=True)
class Built:
    tag: str
    build_s: float
    size_bytes: int


def base_image() -> str:
    """The local stand-in for python:3.11-slim (made once, then found by its tag)."""
    base = subprocess.run(
        ["sh", str(ROOT / "tests" / "docker_base.sh")],
        capture_output=True,
        text=True,
        timeout=BASE_TIMEOUT_S,
    )
    assert base.returncode == 0, base.stderr
    return base.stdout.strip()


@pytest.fixture(scope="session")
def image() -> Built:
    return built_image()


@functools.cache  # one build a run, whichever module asks first (tests/test_compose_up.py too)
def built_image() -> Built:
    """The image of this checkout, on the local base; built again only for what changed (layer cache)."""
    base = base_image()
    previous = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", IMAGE],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()
    started = time.monotonic()
    docker(
        "build", "--network", "host", "--build-arg", f"BASE_IMAGE={base}",
        "--tag", IMAGE, str(ROOT),
        timeout_s=BUILD_TIMEOUT_S,
    )  # fmt: skip
    took = time.monotonic() - started
    if previous and previous != docker("image", "inspect", "--format", "{{.Id}}", IMAGE):
        # The last build's image, now untagged: gone, or every code change would leave 600 MB behind.
        subprocess.run(["docker", "image", "rm", previous], capture_output=True, timeout=60)
    return Built(IMAGE, took, int(docker("image", "inspect", "--format", "{{.Size}}", IMAGE)))


_WATCHDOG = """
cleanup() {
    docker rm -f $(docker ps -aq --filter "label=$0") >/dev/null 2>&1
    docker volume rm $(docker volume ls -q --filter "label=$0") >/dev/null 2>&1
}
trap 'kill $sleeper 2>/dev/null; cleanup; exit 0' TERM
sleep "$1" & sleeper=$!
wait
cleanup
"""


@pytest.fixture(scope="module", autouse=True)
def removed_at_the_end() -> Iterator[None]:
    """Remove this run's containers and volumes when the module ends, when the test process dies
    (the watchdog gets SIGTERM), or after ``MAX_LIFETIME_S``."""
    watchdog = subprocess.Popen(
        ["sh", "-c", _WATCHDOG, LABEL, str(MAX_LIFETIME_S)], preexec_fn=dies_with_parent(signal.SIGTERM)
    )
    try:
        yield
    finally:
        watchdog.terminate()
        watchdog.wait(timeout=120)


@dataclass(frozen=True)
class Container:
    name: str
    url: str  # ending in "/"
    healthy_after_s: float

    def logs(self) -> str:
        done = subprocess.run(["docker", "logs", self.name], capture_output=True, text=True, timeout=30)
        return done.stdout + done.stderr

    def exit_code(self) -> int:
        return int(docker("inspect", "--format", "{{.State.ExitCode}}", self.name))


@contextmanager
def container(image: Built, volume: str, emulator_url: str) -> Iterator[Container]:
    """The image's own CMD on a free loopback port, both providers at the emulator; once /healthz is 200."""
    port = free_port()
    name = f"retouch-test-{os.getpid()}-{port}"
    settings = {
        "RETOUCH_HOST": "127.0.0.1",  # with --network host, 0.0.0.0 would be every interface of this machine
        "RETOUCH_PORT": str(port),
        "GEMINI_BASE_URL": emulator_url,
        "GEMINI_API_KEY": "test-key",
        "OPENAI_BASE_URL": f"{emulator_url}/v1",
        "OPENAI_API_KEY": "test-key",
        "RETOUCH_RETRY_BASE_DELAY": "0",
    }
    env = [arg for key, value in settings.items() for arg in ("--env", f"{key}={value}")]
    started = time.monotonic()
    docker(
        "run", "--detach", "--name", name, "--label", LABEL, "--network", "host",
        "--volume", f"{volume}:/data", "--stop-timeout", str(STOP_TIMEOUT_S), *env, image.tag,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    try:
        while not _healthy(url):
            if (
                time.monotonic() - started > STARTUP_TIMEOUT_S
                or docker("inspect", "--format", "{{.State.Running}}", name) != "true"
            ):
                pytest.fail(f"no /healthz 200 from the container:\n{Container(name, url, 0).logs()}")
            time.sleep(0.1)
        yield Container(name, url, time.monotonic() - started)
    finally:
        subprocess.run(["docker", "rm", "--force", name], capture_output=True, timeout=60)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def volume() -> Iterator[str]:
    name = docker("volume", "create", "--label", LABEL)
    yield name
    subprocess.run(["docker", "volume", "rm", "--force", name], capture_output=True, timeout=60)


def volume_contents(volume: str) -> list[Path]:
    """The volume's folder on this machine and everything in it (dockerd keeps it under its root)."""
    root = Path(docker("volume", "inspect", "--format", "{{.Mountpoint}}", volume))
    return [root, *root.rglob("*")]


def process_uids(container: Container) -> set[int]:
    """The real, effective, saved and filesystem uids of the container's main process, as the kernel says."""
    pid = docker("inspect", "--format", "{{.State.Pid}}", container.name)
    line = next(
        line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Uid:")
    )
    return {int(uid) for uid in line.split()[1:]}


def test_the_image_holds_the_app_and_nothing_that_dockerignore_keeps_out(image: Built):
    listed = docker(
        "run", "--rm", "--label", LABEL, "--network", "none", "--entrypoint", "ls", image.tag, "-A", "/app",
    )  # fmt: skip
    names = set(listed.split())
    assert {"app.py", "chat", "storage", "requirements.txt"} <= names
    unwanted = {
        ".git",
        ".venv",
        ".env",
        "data",
        "tests",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        "test-artifacts",
    }
    assert not names & unwanted


def test_the_image_runs_as_uid_1000_answers_a_turn_keeps_the_volume_private_and_drains_on_docker_stop(
    image: Built, volume: str, emulator: EmulatorControl
):
    with container(image, volume, emulator.url) as app:
        assert process_uids(app) == {1000}
        health = httpx.get(app.url + "healthz", timeout=10)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        healthcheck = json.loads(docker("inspect", "--format", "{{json .Config.Healthcheck.Test}}", app.name))
        assert healthcheck[:3] == ["CMD", "python", "-c"], healthcheck
        docker("exec", app.name, *healthcheck[1:])  # the Dockerfile's HEALTHCHECK, as Docker runs it

        client = Client(app.url, verbose=False)  # downloads file outputs, as an API user would
        first = client.predict("", "a lighthouse at dusk", None, None, api_name="/send")
        assert first["turns"][-1]["status"] == "ok", first
        conversation_id, key = first["conversation_id"], first["owner_key"]
        picture = client.predict(
            conversation_id, first["turns"][-1]["image_sha256"], key=key, api_name="/image"
        )
        with Image.open(io.BytesIO(Path(picture).read_bytes())) as answer:
            assert answer.width > 0 and answer.height > 0

        emulator.clear_requests()
        job = client.submit(
            conversation_id, f"now at night [fault:slow:{SLOW_TURN_S}]", key=key, api_name="/send"
        )
        deadline = time.monotonic() + 30
        while not emulator.requests():
            assert time.monotonic() < deadline, f"the slow turn never reached the emulator:\n{app.logs()}"
            time.sleep(0.05)
        stopping = time.monotonic()
        stop = threading.Thread(
            target=docker, args=("stop", app.name), kwargs={"timeout_s": STOP_TIMEOUT_S + 20}
        )
        stop.start()
        during = job.result(timeout=60)
        stop.join(timeout=STOP_TIMEOUT_S + 30)
        drain_s = time.monotonic() - stopping
        assert not stop.is_alive()
        assert during["turns"][-1]["status"] == "ok", during
        assert app.exit_code() == 0, app.logs()
        assert "Stopped on SIGTERM" in app.logs() and ": 1 job finished" in app.logs()
        assert drain_s < STOP_TIMEOUT_S  # Docker's SIGKILL never came
        client.close()

    contents = volume_contents(volume)
    assert any(p.is_file() for p in contents)
    for path in contents:
        info = path.lstat()
        assert info.st_uid == 1000, f"{path} belongs to uid {info.st_uid}"
        wanted = 0o700 if stat.S_ISDIR(info.st_mode) else 0o600
        assert stat.S_IMODE(info.st_mode) == wanted, f"{path} is {oct(stat.S_IMODE(info.st_mode))}"

    with container(image, volume, emulator.url) as again:
        reopened = Client(again.url, verbose=False, download_files=False)
        shown = reopened.predict(conversation_id, key=key, api_name="/conversation")
        reopened.close()
    assert shown == during

    FIGURES.parent.mkdir(exist_ok=True)
    FIGURES.write_text(
        json.dumps(
            {
                "image_build_s": round(image.build_s, 1),
                "image_size_mb": round(image.size_bytes / 1e6),
                "healthz_after_s": round(app.healthy_after_s, 1),
                "healthz_again_after_s": round(again.healthy_after_s, 1),
                "docker_stop_drain_s": round(drain_s, 1),
            },
            indent=2,
        )
        + "\n"
    )
