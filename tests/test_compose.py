"""docker-compose.yml, read: no registry is reachable here, so its official images (postgres,
haproxy, MinIO's) cannot be pulled; tests/test_compose_up.py starts a variant of it on stand-ins.

Here: Compose accepts the file and refuses it without its secrets; every variable
it gives a replica is one the app reads (chat/config.py, or the AWS variables storage/s3.py reads),
with values the app's own validation accepts; every variable it gives the balancer is one
deploy/haproxy.cfg reads, naming each replica once; the pieces that must agree do.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import AliasChoices

from chat.config import DEFAULTS, Settings
from tests.balancer import CONFIG as HAPROXY_CFG

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())  # PyYAML resolves the <<: merge
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
APPS = {name: service for name, service in SERVICES.items() if service.get("build") == "."}
BALANCER = SERVICES["balancer"]
SECRETS = {
    "POSTGRES_PASSWORD": "pg-secret",
    "MINIO_ROOT_PASSWORD": "minio-secret",
    "RETOUCH_BROWSER_SECRET": "b",
}
#: Values that must come from the environment or .env, never from the file.
SECRET_VARIABLES = {
    "GEMINI_API_KEY",
    "OPENAI_API_KEY",
    "AWS_SECRET_ACCESS_KEY",
    "RETOUCH_BROWSER_SECRET",
    "POSTGRES_PASSWORD",
    "MINIO_ROOT_PASSWORD",
}
_REFERENCE = re.compile(r"\$\{(\w+)(?::?[-?][^}]*)?\}")


def setting_names() -> set[str]:
    """Every environment name the app's settings are read under."""
    names: set[str] = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        names |= {str(c) for c in alias.choices} if isinstance(alias, AliasChoices) else {str(alias)}
    return names


def aws_names() -> set[str]:
    """The standard AWS variables the S3 store reads (storage/s3.py)."""
    return set(re.findall(r'"(AWS_[A-Z0-9_]+)"', (ROOT / "storage" / "s3.py").read_text()))


def interpolated(value: str) -> str:
    """``value`` as Compose fills it from ``SECRETS`` (else each reference's default)."""

    def fill(match: re.Match[str]) -> str:
        text = match.group(0)
        default = text.partition(":-")[2].rstrip("}") if ":-" in text else ""
        return SECRETS.get(match.group(1), default)

    return _REFERENCE.sub(fill, value)


def test_two_replicas_of_the_image_behind_the_balancer_with_postgres_and_a_bucket():
    assert len(APPS) == 2
    assert {"balancer", "postgres", "minio", "bucket"} <= SERVICES.keys()
    volumes = [service["volumes"][0].split(":") for service in APPS.values()]
    assert all(target == "/data" for _, target in volumes)
    assert len({source for source, _ in volumes}) == len(APPS)  # a data directory (the cache) each
    assert all(
        service["depends_on"]["bucket"]["condition"] == "service_completed_successfully"
        for service in APPS.values()
    )
    assert set(BALANCER["depends_on"]) == APPS.keys()
    assert [port.split(":")[-1] for port in BALANCER["ports"]] == [
        BALANCER["environment"]["RETOUCH_LB_BIND"].lstrip(":")
    ]
    assert not any("ports" in service for name, service in SERVICES.items() if name != "balancer")


def test_every_variable_a_replica_gets_is_a_setting_the_app_reads_and_validates():
    known = setting_names() | aws_names()
    for name, service in APPS.items():
        environment = service["environment"]
        assert set(environment) <= known, f"{name}: {set(environment) - known} are read by nothing"
        values = {key: interpolated(str(value)) for key, value in environment.items()}
        settings = Settings(_env_file=None, **{k: v for k, v in values.items() if k in setting_names()})
        assert settings.database_url is not None and settings.database_url.startswith("postgresql+psycopg://")
        assert settings.blobs is not None and settings.blobs.startswith("s3://")
        assert values["AWS_ENDPOINT_URL"].startswith("http://minio:")


def test_the_balancer_gets_only_what_haproxy_cfg_reads_and_names_every_replica_once():
    read = set(re.findall(r"\$\{(RETOUCH_LB_\w+)", HAPROXY_CFG.read_text()))
    environment = BALANCER["environment"]
    assert set(environment) <= read, f"{set(environment) - read} are read by nothing"
    servers = [value for key, value in environment.items() if key.startswith("RETOUCH_LB_SERVER_")]
    assert sorted(servers) == sorted(f"{name}:{DEFAULTS.port}" for name in APPS)
    assert f"./{HAPROXY_CFG.relative_to(ROOT)}:/usr/local/etc/haproxy/haproxy.cfg:ro" in BALANCER["volumes"]
    assert BALANCER["command"][-1] == "/usr/local/etc/haproxy/haproxy.cfg"


def test_the_replicas_trust_only_the_balancer_and_outlast_its_health_checks_when_stopped():
    [address] = {network["ipv4_address"] for network in BALANCER["networks"].values()}
    [subnet] = COMPOSE["networks"]["default"]["ipam"]["config"]
    text = HAPROXY_CFG.read_text()
    fall = int(re.search(r"default-server check .* fall (\d+)", text)[1])  # type: ignore[index]
    interval = int(re.search(r"RETOUCH_LB_CHECK_INTERVAL-(\d+)s", text)[1])  # type: ignore[index]
    for service in APPS.values():
        environment = service["environment"]
        assert environment["RETOUCH_TRUSTED_PROXIES"] == address
        notice = float(environment["RETOUCH_SHUTDOWN_NOTICE_S"])
        assert notice > fall * interval  # the balancer has turned away before the replica refuses work
        grace = float(service["stop_grace_period"].rstrip("s"))
        assert grace > notice + DEFAULTS.shutdown_grace_s  # Docker's SIGKILL comes after the drain
    # HAProxy resolves the replicas' names once: a recreated replica must keep its address.
    addresses = [address, *(s["networks"]["default"]["ipv4_address"] for s in APPS.values())]
    network = ipaddress.ip_network(subnet["subnet"])
    assert len(set(addresses)) == len(addresses)
    assert all(ipaddress.ip_address(a) in network for a in addresses)


def test_secrets_come_from_the_environment_never_from_the_file():
    for name, service in SERVICES.items():
        for key, value in service.get("environment", {}).items():
            if key in SECRET_VARIABLES:
                assert _REFERENCE.fullmatch(str(value)), f"{name}: {key} must be ${{...}}, not a value"
    database_url = next(iter(APPS.values()))["environment"]["DATABASE_URL"]
    assert "${POSTGRES_PASSWORD:?" in database_url


@pytest.mark.docker
@pytest.mark.system
def test_compose_accepts_the_file_and_refuses_it_without_its_secrets(tmp_path):
    executable = shutil.which("docker-compose")
    assert executable, "make docker-engine installs Debian's docker-compose"
    no_env_file = tmp_path / "empty.env"  # a developer's own .env must not fill in what is missing
    no_env_file.touch()
    command = [
        executable, "--project-directory", str(ROOT), "--env-file", str(no_env_file),
        "-f", str(COMPOSE_FILE), "config",
    ]  # fmt: skip
    base = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}

    done = subprocess.run(
        command, env={**base, **SECRETS}, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)
    assert resolved["services"]["app1"]["environment"]["DATABASE_URL"] == (
        "postgresql+psycopg://retouch:pg-secret@postgres:5432/retouch"
    )
    assert resolved["services"]["app1"]["build"]["context"] == str(ROOT)

    for missing in SECRETS:
        partial = {k: v for k, v in SECRETS.items() if k != missing}
        refused = subprocess.run(
            command, env={**base, **partial}, cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        assert refused.returncode != 0 and f"set {missing} in .env" in refused.stderr
