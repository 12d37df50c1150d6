"""deploy/haproxy.cfg agrees with the app's settings, and is a file HAProxy accepts.

The balancer runs in tests/test_balancer.py; here, without starting anything: the body limit is
what the app can receive in one request, and the settings a deployment must get right are there.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from chat.config import DEFAULTS
from tests.balancer import CONFIG

MULTIPART_ALLOWANCE = 1024 * 1024

TEXT = CONFIG.read_text()


def test_the_body_limit_is_a_whole_message_of_photos_at_the_apps_limits():
    """A browser uploads all of a message's photos in one POST (Gradio's client sends up to 1,000
    files a request), so the balancer's limit is the images a message may carry times the per-file
    limit, plus room for the multipart framing."""
    defaults = set(re.findall(r"RETOUCH_LB_MAX_BODY-(\d+)", TEXT))
    expected = DEFAULTS.max_images_per_message * DEFAULTS.max_upload_bytes + MULTIPART_ALLOWANCE
    assert defaults == {str(expected)}


def test_no_compression_and_the_settings_sticky_sessions_and_draining_need():
    lines = {line.strip() for line in TEXT.splitlines() if not line.strip().startswith("#")}
    assert not any(line.startswith("compression") for line in lines)  # event streams pass as written
    assert 'cookie retouch_replica insert indirect nocache httponly attr "SameSite=Lax"' in lines
    assert "balance hash req.cook(retouch_replica)" in lines
    assert "http-check send meth GET uri /healthz" in lines
    assert "option forwardfor" in lines and "option redispatch 1" in lines
    assert not any("%HU" in line or "%r" in line for line in lines)  # no query strings (share tokens) logged


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="make haproxy installs it")
def test_haproxy_accepts_the_file_and_refuses_it_without_a_replica():
    replicas = {"RETOUCH_LB_SERVER_1": "127.0.0.1:7861", "RETOUCH_LB_SERVER_2": "127.0.0.1:7862"}
    check = [shutil.which("haproxy") or "haproxy", "-c", "-f", str(CONFIG)]
    assert subprocess.run(check, env=replicas, capture_output=True, text=True).returncode == 0
    refused = subprocess.run(check, env={}, capture_output=True, text=True)
    assert refused.returncode != 0 and "set RETOUCH_LB_SERVER_1" in refused.stderr
