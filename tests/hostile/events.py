"""Call any event of a running Gradio app directly, as a hostile client would: no browser, no UI.

Every event registered on the Blocks is listed in ``/config`` (``dependencies``), private or
not; a client can post arbitrary data to it by ``fn_index``, through ``/run/predict`` (events
with ``queue=False``) or ``/queue/join`` and the server-sent stream of ``/queue/data``.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

import httpx

__all__ = ["Event", "EventResult", "call", "events"]

TIMEOUT_S = 60


@dataclass(frozen=True)
class Event:
    fn_index: int
    queued: bool
    api_name: str | None
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    trigger: str


@dataclass(frozen=True)
class EventResult:
    """Every message the server sent back for one call (the outputs of each step, or the error)."""

    status: int
    outputs: tuple[list[Any], ...]
    error: str | None
    raw: str

    @property
    def last(self) -> list[Any]:
        return self.outputs[-1] if self.outputs else []


def events(base_url: str) -> list[Event]:
    config = httpx.get(f"{base_url}config", timeout=TIMEOUT_S).raise_for_status().json()
    found = []
    for index, dep in enumerate(config["dependencies"]):
        triggers = dep.get("targets") or [[None, "load"]]
        found.append(
            Event(
                fn_index=dep.get("id", index),
                queued=dep.get("queue", True) is not False,
                api_name=dep.get("api_name"),
                inputs=tuple(dep.get("inputs") or ()),
                outputs=tuple(dep.get("outputs") or ()),
                trigger=str(triggers[0][1]) if triggers and triggers[0] else "",
            )
        )
    return found


def call(
    base_url: str,
    event: Event,
    data: list[Any],
    *,
    event_data: Any = None,
    headers: dict[str, str] | None = None,
) -> EventResult:
    """Post ``data`` to ``event`` and collect what comes back."""
    session = secrets.token_hex(8)
    body = {
        "data": data,
        "fn_index": event.fn_index,
        "session_hash": session,
        "event_data": event_data,
        "trigger_id": None,
    }
    with httpx.Client(base_url=base_url, timeout=TIMEOUT_S, headers=headers) as client:
        if not event.queued:
            response = client.post("gradio_api/run/predict", json=body)
            payload = _json(response.text)
            if response.status_code != 200 or not isinstance(payload, dict):
                error = payload.get("error") if isinstance(payload, dict) else None
                return EventResult(response.status_code, (), str(error or response.text), response.text)
            return EventResult(200, (payload.get("data") or [],), None, response.text)
        joined = client.post("gradio_api/queue/join", json=body)
        if joined.status_code != 200:
            return EventResult(joined.status_code, (), joined.text, joined.text)
        return _stream(client, session)


def _stream(client: httpx.Client, session: str) -> EventResult:
    outputs: list[list[Any]] = []
    lines: list[str] = []
    with client.stream("GET", "gradio_api/queue/data", params={"session_hash": session}) as stream:
        for line in stream.iter_lines():
            lines.append(line)
            if not line.startswith("data:"):
                continue
            message = _json(line[5:].strip())
            if not isinstance(message, dict):
                continue
            kind = message.get("msg")
            output = message.get("output") or {}
            if kind in ("process_generating", "process_completed") and isinstance(output.get("data"), list):
                outputs.append(output["data"])
            if kind == "process_completed":
                error = None if message.get("success", True) else str(output.get("error") or "failed")
                return EventResult(200, tuple(outputs), error, "\n".join(lines))
            if kind == "close_stream":
                break
    return EventResult(200, tuple(outputs), "stream closed early", "\n".join(lines))


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None
