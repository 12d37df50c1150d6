"""docker-compose.yml really started: the whole project up, one turn through the balancer.

Its official images (postgres, haproxy, MinIO's) cannot be pulled here, so this runs a variant of
the file made from it: the same services, depends_on conditions, healthchecks, environment and
haproxy.cfg mount, with three changes. The unpullable images are stand-ins built on the local
Debian base (tests/docker_base.sh): Debian's postgresql behind a small entrypoint that honours
the official image's POSTGRES_* variables, Debian's haproxy 2.6, and moto's S3 server for MinIO
(and for the one-shot bucket). The replicas are the image tests/test_docker_image.py builds.
And every service uses the host's network on a free loopback port instead of the project's bridge
network (traffic stays on loopback), so the addresses in the environment become 127.0.0.1:PORT.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from gradio_client import Client

from tests.app_process import free_port
from tests.emulator.fixtures import EmulatorControl
from tests.test_compose import COMPOSE, SECRETS
from tests.test_docker_image import (  # noqa: F401 (the fixtures)
    LABEL,
    ROOT,
    Built,
    base_image,
    docker,
    image,
    removed_at_the_end,
)

pytestmark = [pytest.mark.docker, pytest.mark.system]

STAND_IN_BUILD_TIMEOUT_S = 900  # apt-get install postgresql, pip install moto[server]
UP_TIMEOUT_S = 300
DOWN_TIMEOUT_S = 120
_POSTGRES_ENTRY = r"""#!/bin/sh
# The official image's contract, as far as docker-compose.yml uses it: POSTGRES_USER, _PASSWORD
# and _DB make the cluster on first start, in the /var/lib/postgresql/data volume.
set -eu
bin=/usr/lib/postgresql/15/bin data=/var/lib/postgresql/data
chown postgres:postgres "$data" && chmod 700 "$data"
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
if [ ! -s "$data/PG_VERSION" ]; then
    printf '%s\n' "$POSTGRES_PASSWORD" > /tmp/pwfile && chown postgres /tmp/pwfile
    as_postgres "$bin/initdb" -D "$data" -U "$POSTGRES_USER" --pwfile=/tmp/pwfile --auth=scram-sha-256 >/dev/null
    rm /tmp/pwfile
    echo "CREATE DATABASE \"$POSTGRES_DB\"" | as_postgres "$bin/postgres" --single -D "$data" postgres >/dev/null
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups \
    "$bin/postgres" -D "$data" -c listen_addresses=127.0.0.1 -c unix_socket_directories=/var/run/postgresql
"""
_STAND_INS = {
    "postgres": (
        "RUN printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d"
        " && apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql-15 >/dev/null"
        " && rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d"
        " && mkdir -p /var/lib/postgresql/data /var/run/postgresql && chown postgres /var/run/postgresql\n"
        "COPY entry.sh /entry.sh\n"
        'ENTRYPOINT ["sh", "/entry.sh"]\n'
    ),
    "haproxy": (
        "RUN printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d"
        " && apt-get update -qq && apt-get install -y -qq --no-install-recommends haproxy >/dev/null"
        " && rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d && mkdir -p /usr/local/etc/haproxy\n"
    ),
    "s3": "RUN pip install --no-cache-dir 'moto[server]>=5.2'\n",
}


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The three images the file names but this machine cannot pull, by the role each plays."""
    base = base_image()
    tags = {}
    for role, steps in _STAND_INS.items():
        context = tmp_path_factory.mktemp(f"stand-in-{role}")
        (context / "Dockerfile").write_text(f"FROM {base}\n{steps}")
        if "entry.sh" in steps:
            (context / "entry.sh").write_text(_POSTGRES_ENTRY)
        tags[role] = f"retouch-test-{role}:bookworm"
        docker(
            "build",
            "--network",
            "host",
            "--tag",
            tags[role],
            str(context),
            timeout_s=STAND_IN_BUILD_TIMEOUT_S,
        )
    return tags


def on_loopback(
    stand_ins: dict[str, str], replica: str, emulator_url: str
) -> tuple[dict[str, Any], dict[str, int]]:
    """docker-compose.yml with the stand-ins, on the host's network; the variant and each service's port."""
    # A copy of each service on its own: the replicas' settings are one shared mapping (<<: *app).
    services = {name: copy.deepcopy(service) for name, service in COMPOSE["services"].items()}
    variant: dict[str, Any] = {"services": services, "volumes": dict.fromkeys(COMPOSE["volumes"])}
    ports = {name: free_port() for name in services}
    addresses = {
        "postgres:5432": f"127.0.0.1:{ports['postgres']}",
        "minio:9000": f"127.0.0.1:{ports['minio']}",
        **{f"{name}:7860": f"127.0.0.1:{ports[name]}" for name in services if name.startswith("app")},
    }
    for name, service in services.items():
        service.pop("networks", None)
        service.pop("ports", None)
        service["network_mode"] = "host"
        service["labels"] = [LABEL]
        environment = service.setdefault("environment", {})
        for key, value in environment.items():
            for address, local in addresses.items():
                value = str(value).replace(address, local)
            environment[key] = value
        if "build" in service:  # a replica: the image built from this checkout
            del service["build"]
            service["image"] = replica
            environment.update(
                RETOUCH_HOST="127.0.0.1",
                RETOUCH_PORT=str(ports[name]),
                RETOUCH_TRUSTED_PROXIES="127.0.0.1",
                GEMINI_BASE_URL=emulator_url,
                OPENAI_BASE_URL=f"{emulator_url}/v1",
                RETOUCH_RETRY_BASE_DELAY="0",
            )
    services["postgres"]["image"] = stand_ins["postgres"]
    services["postgres"]["environment"]["PGPORT"] = str(ports["postgres"])  # the server's and pg_isready's
    services["balancer"]["image"] = stand_ins["haproxy"]
    services["balancer"]["environment"]["RETOUCH_LB_BIND"] = f"127.0.0.1:{ports['balancer']}"
    moto = ["python", "-m", "moto.server", "-H", "127.0.0.1", "-p", str(ports["minio"])]
    services["minio"].update(image=stand_ins["s3"], command=moto)
    services["minio"]["healthcheck"]["test"] = [
        "CMD", "python", "-c", f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{ports['minio']}/')",
    ]  # fmt: skip
    bucket_put = f"import urllib.request as u; u.urlopen(u.Request('http://127.0.0.1:{ports['minio']}/retouch', method='PUT'))"
    services["bucket"].update(image=stand_ins["s3"], entrypoint=["python", "-c"], command=[bucket_put])
    variant["volumes"] = {name: {"labels": [LABEL]} for name in variant["volumes"]}
    return variant, ports


@dataclass
class Project:
    compose: list[str]  # the docker-compose command line for this project
    env: dict[str, str]  # what it runs with (the secrets its ${...} need)
    balancer_url: str
    s3_url: str

    def run(self, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.compose, *args], env=self.env, capture_output=True, text=True, timeout=timeout_s
        )


@pytest.fixture
def project(
    stand_ins: dict[str, str],
    image: Built,  # noqa: F811
    emulator: EmulatorControl,
    tmp_path: Path,
) -> Iterator[Project]:
    """``docker-compose up`` of the variant, once every service is started, healthy or done."""
    variant, ports = on_loopback(stand_ins, image.tag, emulator.url)
    file = tmp_path / "docker-compose.yml"
    file.write_text(yaml.safe_dump(variant))
    empty = tmp_path / "empty.env"
    empty.touch()
    compose = [
        "docker-compose", "--project-name", f"retouch-test-{os.getpid()}", "--project-directory", str(ROOT),
        "--env-file", str(empty), "-f", str(file),
    ]  # fmt: skip
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), **SECRETS, "GEMINI_API_KEY": "test-key"}
    up = Project(compose, env, f"http://127.0.0.1:{ports['balancer']}/", f"http://127.0.0.1:{ports['minio']}")
    try:
        started = up.run("up", "--detach", timeout_s=UP_TIMEOUT_S)
        assert started.returncode == 0, f"{started.stderr}\n{up.run('logs', '--no-color').stdout}"
        yield up
    finally:
        up.run("down", "--volumes", "--timeout", "60", timeout_s=DOWN_TIMEOUT_S)


def test_the_compose_project_answers_a_turn_through_the_balancer_with_the_image_in_the_bucket(
    project: Project, emulator: EmulatorControl
):
    deadline = time.monotonic() + 60
    while not _answers(project.balancer_url):  # up returns once the balancer runs, not once it listens
        assert time.monotonic() < deadline, project.run("logs", "--no-color", "balancer").stdout
        time.sleep(0.2)

    client = Client(project.balancer_url, verbose=False, download_files=False)
    answer = client.predict("", "a lighthouse at dusk", None, None, api_name="/send")
    client.close()
    assert answer["turns"][-1]["status"] == "ok", answer
    assert len(emulator.requests()) == 1

    # The image is in the bucket the one-shot service made, under the prefix RETOUCH_BLOBS names.
    sha = answer["turns"][-1]["image_sha256"]
    listing = httpx.get(f"{project.s3_url}/retouch", timeout=10).text
    assert f"images/{sha[:2]}/{sha}" in listing
    # The turn went through the balancer to a replica.
    logs = project.run("logs", "--no-color", "balancer").stdout
    assert re.search(r"replicas/app[12] 200 POST /gradio_api/queue/join", logs), logs


def _answers(url: str) -> bool:
    try:
        return httpx.get(url + "healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False
