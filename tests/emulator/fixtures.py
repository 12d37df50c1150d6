"""Pytest fixtures for tests that talk to the provider emulator over HTTP.

- ``emulator_url`` (session): one emulator for the whole run, e.g. ``http://127.0.0.1:PORT``.
  Point a client at it as the Gemini base URL (``{emulator_url}/v1beta/models/...``) or,
  with ``/v1`` appended, as the OpenAI base URL (``{emulator_url}/v1/images/edits``).
- ``emulator`` (function): an :class:`EmulatorControl` on that server whose request log,
  record of received request lines and fault queue are cleared before and after the test. Import it into a conftest
  (``from tests.emulator.fixtures import emulator``) or build one from ``emulator_url``.
- :func:`run_emulator`: a private emulator as a context manager (own state, optional
  latency), for tests that must not share the session server.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .server import run_emulator

__all__ = ["EmulatorControl", "emulator", "emulator_url", "run_emulator"]


class EmulatorControl:
    """Thin client for the ``/_emulator`` control routes."""

    def __init__(self, url: str) -> None:
        self.url = url

    def requests(self) -> list[dict[str, Any]]:
        """Generate/edit requests of both providers received so far, oldest first (``provider`` says whose)."""
        return httpx.get(f"{self.url}/_emulator/requests").raise_for_status().json()

    def clear_requests(self) -> None:
        httpx.delete(f"{self.url}/_emulator/requests").raise_for_status()

    def received(self) -> list[dict[str, Any]]:
        """Every request line received so far, oldest first, unknown paths included:
        ``{"method", "target" (raw path and ?query), "status"}``."""
        return httpx.get(f"{self.url}/_emulator/received").raise_for_status().json()

    def clear_received(self) -> None:
        httpx.delete(f"{self.url}/_emulator/received").raise_for_status()

    def queue_faults(self, *faults: str) -> None:
        """Fail the next generate/edit requests, one fault each (e.g. ``"503"``, ``"openai:429"``, ``"slow:1"``)."""
        httpx.post(f"{self.url}/_emulator/faults", json={"faults": list(faults)}).raise_for_status()

    def faults(self) -> list[str]:
        """The queued faults, oldest first (e.g. ``["gemini:503"]``)."""
        return httpx.get(f"{self.url}/_emulator/faults").raise_for_status().json()["faults"]

    def clear_faults(self) -> None:
        httpx.delete(f"{self.url}/_emulator/faults").raise_for_status()

    def reset(self) -> None:
        self.clear_requests()
        self.clear_received()
        self.clear_faults()


@pytest.fixture(scope="session")
def emulator_url() -> Iterator[str]:
    """Base URL of a session-wide emulator (no trailing slash)."""
    with run_emulator() as url:
        yield url


@pytest.fixture
def emulator(emulator_url: str) -> Iterator[EmulatorControl]:
    """Control of the session emulator, with a clean request log and fault queue."""
    control = EmulatorControl(emulator_url)
    control.reset()
    yield control
    control.reset()
