"""Every provider fault on Gemini, on OpenAI and on both, with the expected outcome written as a table.

Why: three layers decide what a user sees when a provider fails: the clients map the wire
failure to one error type, the fallback policy retries or switches by that type, and the
service turns the outcome into a stored turn. A change in any of them can quietly turn a
fallback into a dead end, retry what cannot succeed, or hide a broken key behind OpenAI. So
each fault is driven end to end (ChatService with the real GeminiClient and
OpenAIImagesClient against the emulator, or against a closed port / a resetting socket / a
mock answer where the emulator cannot fail that way), and the table below says, per fault
and per column, what must happen: the turn's status, kind and provider, how many HTTP calls
each provider got, the waits between retries, and a phrase of what the chat shows.

Columns: ``gemini`` = route AUTO, Gemini failing, OpenAI healthy; ``openai`` = route OPENAI,
OpenAI failing; ``both`` = route AUTO, both failing the same way (for a Gemini-only fault,
OpenAI fails the nearest way it can: ``moderation`` for safety, ``empty`` for "no image").

README's "Faults and bad input: what happens" table is rendered from ROWS (see
``markdown_table``; ``python -m tests.test_fault_matrix`` prints it) and
``test_readme_shows_this_table`` keeps the two in step: this file is the source of truth.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import socket
import struct
import sys
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from chat.conversation.fallback import FallbackPolicy, RetryPolicy
from chat.conversation.service import Attachment, ChatService
from chat.domain import GenerationOptions, OpenAIOptions, Role, Route, TurnStatus
from chat.providers.gemini import GeminiClient
from chat.providers.openai import OpenAIImagesClient
from chat.sharing.access import Actor
from chat.ui.render import attempts_summary, to_transcript
from storage import BlobStore, DiskBlobStore, make_engine, migrate, sqlite_url
from tests.fakes import last
from tests.pictures import encode, noise, png

OPTIONS = GenerationOptions(model="gemini-3.1-flash-image")
ACTOR = Actor("owner-of-the-fault-matrix")
PHOTO = png((90, 140, 200), (96, 64))
SERVER_KEY = "server-key-0123456789-SERVER"
PROMPT = "now remove the car"
README = Path(__file__).resolve().parents[1] / "README.md"

# Where a provider's requests go.
EMULATOR, REFUSED, RESET, TRUNCATED = "emulator", "refused", "reset", "truncated"
CLOSED_PORT = "http://127.0.0.1:9"  # discard: nothing listens there, the connection is refused


# --- the table -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trigger:
    """How one provider is made to fail."""

    faults: tuple[str, ...] = ()  # emulator faults queued for this provider (its prefix is added)
    key: str | None = None  # the visitor's own key for this call
    options: Mapping[str, Any] = field(default_factory=dict)  # GenerationOptions fields
    prompt: str = ""  # appended to the message
    endpoint: str = EMULATOR  # or REFUSED, RESET, TRUNCATED (a 200 whose image is cut in half)
    timeout_s: float = 10.0


HEALTHY = Trigger()


@dataclass(frozen=True)
class Expect:
    outcome: str  # as the README says it
    status: TurnStatus
    kind: str | None  # turn.error.kind; None for a clean answer
    provider: str | None  # turn.provider
    calls: tuple[int, int]  # HTTP calls (Gemini, OpenAI); the attempts list has the same sequence
    says: str  # in what the chat shows: the error sentence, or the attribution line of an answer


@dataclass(frozen=True)
class Row:
    id: str
    fault: str  # as the README says it
    gemini: Trigger | None  # None: Gemini has no such fault
    openai: Trigger | None  # None: OpenAI has no such fault
    on_gemini: Expect | None
    on_openai: Expect | None
    on_both: Expect | None
    waits: tuple[float, ...] = ()  # seconds slept between one provider's calls (3 calls: 2 waits)
    both_openai: Trigger | None = None  # OpenAI's failure in "both" when it has no such fault itself


def fallback(reason: str, gemini_calls: int) -> Expect:
    times = f" \u00d7{gemini_calls}" if gemini_calls > 1 else ""
    line = f"Gemini: {reason}{times} \u2192 OpenAI gpt-image-2"
    return Expect(
        f"fallback, answer stored: `{line}`", TurnStatus.OK, None, "openai", (gemini_calls, 1), line
    )


def error(outcome: str, kind: str, provider: str, calls: tuple[int, int], says: str) -> Expect:
    return Expect(outcome, TurnStatus.ERROR, kind, provider, calls, says)


def openai_error(kind: str, calls: tuple[int, int], says: str, note: str = "") -> Expect:
    """OpenAI fails on its own: an error turn of ``kind``."""
    return error(f"error kind={kind}{note}", kind, "openai", calls, says)


def no_fallback(kind: str, says: str) -> Expect:
    return error(f"error kind={kind}, no fallback", kind, "gemini", (1, 0), says)


def only_gemini_named(kind: str, says: str) -> Expect:
    return error("as Gemini alone: OpenAI is not asked", kind, "gemini", (1, 0), says)


def both_named(
    kind: str, calls: tuple[int, int], says: str = "Tried OpenAI too: OpenAI ", how: str = ""
) -> Expect:
    return error(f"error turn naming both{how}", kind, "openai", calls, says)


def queued(fault: str, times: int = 1) -> Trigger:
    return Trigger(faults=(fault,) * times)


RETRIED = (1.0, 2.0)  # exponential backoff from RETOUCH_RETRY_BASE_DELAY=1
BAD_KEY = "the API key"
CORRUPT = "unavailable right now (the image in the answer was corrupt)"
MODERATED = " (OpenAI: `moderation`)"  # a Gemini-only fault: OpenAI fails the nearest way it can
EMPTY = " (OpenAI: `data: []`)"

ROWS: list[Row] = [
    Row(
        "400",
        "400 bad request (Gemini: safety threshold `BLOCK_EVERYTHING`; OpenAI: a prompt the emulator rejects)",
        Trigger(options={"safety_threshold": "BLOCK_EVERYTHING"}),
        Trigger(prompt=" [fault:no-such-fault]"),
        no_fallback("bad_request", "Gemini could not accept this request: 400 INVALID_ARGUMENT"),
        openai_error("bad_request", (0, 1), "OpenAI could not accept this request"),
        only_gemini_named("bad_request", "Gemini could not accept this request"),
    ),
    Row(
        "401",
        "rejected key (`invalid…`: Gemini 400 API_KEY_INVALID, OpenAI 401)",
        Trigger(key="invalid-gemini-key-0123456789"),
        Trigger(key="invalid-openai-key-0123456789"),
        no_fallback("auth", f"Gemini rejected {BAD_KEY}"),
        openai_error("auth", (0, 1), f"OpenAI rejected {BAD_KEY}", note=", says check the key"),
        only_gemini_named("auth", "Check the key"),
    ),
    Row(
        "403",
        "403 key not allowed (Gemini `denied…`, OpenAI `unverified…` organization)",
        Trigger(key="denied-gemini-key-0123456789"),
        Trigger(key="unverified-openai-key-0123456789"),
        no_fallback("auth", "Gemini rejected the API key (403 PERMISSION_DENIED"),
        openai_error("auth", (0, 1), "OpenAI rejected the API key (403", note=", says check the key"),
        only_gemini_named("auth", "Check the key"),
    ),
    Row(
        "404",
        "404 unknown model (`gemini-2.5-flash-image`, `gpt-image-1`)",
        Trigger(options={"model": "gemini-2.5-flash-image"}),
        Trigger(options={"openai": OpenAIOptions(model="gpt-image-1")}),
        no_fallback("bad_request", "models/gemini-2.5-flash-image is not found"),
        openai_error("bad_request", (0, 1), "The model `gpt-image-1` does not exist"),
        only_gemini_named("bad_request", "404 NOT_FOUND"),
    ),
    Row(
        "429",
        "429 rate limited (retry delay 2 s)",
        queued("429", 3),
        queued("429", 3),
        fallback("429 RESOURCE_EXHAUSTED", 3),
        openai_error("rate_limited", (0, 3), "Try again in about 2 s", note=", says when to retry"),
        both_named("rate_limited", (3, 3), "Tried OpenAI too: OpenAI is rate-limiting requests"),
        waits=(2.0, 2.0),
    ),
    Row(
        "500",
        "500 internal error",
        queued("500", 3),
        queued("500", 3),
        fallback("500 INTERNAL", 3),
        openai_error("unavailable", (0, 3), "OpenAI is unavailable right now (500"),
        both_named("unavailable", (3, 3)),
        waits=RETRIED,
    ),
    Row(
        "503",
        "503 unavailable",
        queued("503", 3),
        queued("503", 3),
        fallback("503 UNAVAILABLE", 3),
        openai_error("unavailable", (0, 3), "OpenAI is unavailable right now (503"),
        both_named("unavailable", (3, 3)),
        waits=RETRIED,
    ),
    Row(
        "504",
        "504 deadline exceeded",
        queued("504", 3),
        queued("504", 3),
        fallback("504 DEADLINE_EXCEEDED", 3),
        openai_error("timeout", (0, 3), "OpenAI did not answer in time (504"),
        both_named("timeout", (3, 3)),
        waits=RETRIED,
    ),
    Row(
        "timeout",
        "timeout (answer after 1 s, client waits 0.3 s)",
        Trigger(faults=("slow:1",) * 3, timeout_s=0.3),
        Trigger(faults=("slow:1",) * 3, timeout_s=0.3),
        fallback("ReadTimeout", 3),
        openai_error("timeout", (0, 3), "OpenAI did not answer in time"),
        both_named("timeout", (3, 3)),
        waits=RETRIED,
    ),
    Row(
        "refused",
        "connection refused (closed port)",
        Trigger(endpoint=REFUSED),
        Trigger(endpoint=REFUSED),
        fallback("connection failed (ConnectError)", 3),
        openai_error("unavailable", (0, 3), "OpenAI is unavailable right now (connection failed"),
        both_named("unavailable", (3, 3)),
        waits=RETRIED,
    ),
    Row(
        "reset",
        "connection reset (RST after the request)",
        Trigger(endpoint=RESET),
        Trigger(endpoint=RESET),
        fallback("connection failed (ReadError)", 3),
        openai_error("unavailable", (0, 3), "OpenAI is unavailable right now (connection failed"),
        both_named("unavailable", (3, 3)),
        waits=RETRIED,
    ),
    Row(
        "malformed",
        "malformed JSON (200, cut-off body)",
        queued("malformed", 3),
        queued("malformed", 3),
        fallback("the answer was not valid JSON", 3),
        openai_error("unavailable", (0, 3), "(the answer was not valid JSON)"),
        both_named("unavailable", (3, 3)),
        waits=RETRIED,
    ),
    Row(
        "truncated_b64",
        "truncated image (200, base64 of half the PNG)",
        Trigger(endpoint=TRUNCATED),
        queued("truncated_b64", 3),
        fallback("the image in the answer was corrupt", 3),
        openai_error("unavailable", (0, 3), f"OpenAI is {CORRUPT}"),
        both_named("unavailable", (3, 3)),
        waits=RETRIED,
    ),
    Row(
        "empty",
        "empty answer (no candidates content / `data: []`)",
        queued("empty"),
        queued("empty"),
        fallback("empty answer (finish reason none)", 1),
        openai_error("no_image", (0, 1), "OpenAI answered without an image"),
        both_named("no_image", (1, 1)),
    ),
    Row(
        "block",
        "safety block (`promptFeedback.blockReason`)",
        queued("block"),
        None,
        fallback("prompt blocked", 1),
        None,
        both_named("blocked", (1, 1), "Gemini refused this request for safety (SAFETY)", MODERATED),
        both_openai=queued("moderation"),
    ),
    Row(
        "image_safety",
        "`IMAGE_SAFETY` finish reason",
        queued("image_safety"),
        None,
        fallback("finish reason IMAGE_SAFETY", 1),
        None,
        both_named("blocked", (1, 1), "Gemini refused this request for safety (IMAGE_SAFETY)", MODERATED),
        both_openai=queued("moderation"),
    ),
    Row(
        "no_image",
        "`NO_IMAGE` finish reason",
        queued("no_image"),
        None,
        fallback("empty answer (finish reason NO_IMAGE)", 1),
        None,
        both_named("no_image", (1, 1), how=EMPTY),
        both_openai=queued("empty"),
    ),
    Row(
        "text_only",
        "text only, no image",
        queued("text_only"),
        None,
        fallback("text only (finish reason STOP)", 1),
        None,
        Expect(
            f"Gemini's text kept with a notice naming both{EMPTY}",
            TurnStatus.OK,
            "no_image",
            "gemini",
            (1, 1),
            "Gemini answered without an image (text only",
        ),
        both_openai=queued("empty"),
    ),
    Row(
        "moderation",
        "OpenAI moderation (400 `moderation_blocked`)",
        None,
        queued("moderation"),
        None,
        openai_error("blocked", (0, 1), "OpenAI refused this request for safety (moderation_blocked)"),
        None,
    ),
]

COLUMNS = ("gemini", "openai", "both")


def cell(row: Row, column: str) -> tuple[Trigger, Trigger, Route, Expect] | None:
    """The two providers' triggers, the route and the expectation of one cell; None if not applicable."""
    if column == "gemini" and row.gemini and row.on_gemini:
        return row.gemini, HEALTHY, Route.AUTO, row.on_gemini
    if column == "openai" and row.openai and row.on_openai:
        return HEALTHY, row.openai, Route.OPENAI, row.on_openai
    openai = row.both_openai or row.openai
    if column == "both" and row.gemini and openai and row.on_both:
        return row.gemini, openai, Route.AUTO, row.on_both
    return None


CASES = [
    pytest.param(row, column, id=f"{row.id}-{column}")
    for row in ROWS
    for column in COLUMNS
    if cell(row, column)
]


# --- the harness -------------------------------------------------------------------------------


class CountingTransport(httpx.BaseTransport):
    """Counts the HTTP requests a provider's client makes, whatever the far end does with them."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.calls = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def truncated_gemini_answer(request: httpx.Request) -> httpx.Response:
    """A well-formed 200 whose inline image is valid base64 of only the first half of a PNG
    (one event, when the client streams)."""
    whole = encode(noise((32, 32)))
    half = whole[: len(whole) // 2]
    parts = [
        {"text": "Here it is."},
        {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(half).decode()}},
    ]
    answer = {
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
        "modelVersion": "gemini-3.1-flash-image",
        "usageMetadata": {"promptTokenCount": 300, "candidatesTokenCount": 1120, "totalTokenCount": 1420},
    }
    if request.url.params.get("alt") == "sse":
        event = b"data: " + json.dumps(answer).encode() + b"\r\n\r\n"
        return httpx.Response(200, content=event, headers={"content-type": "text/event-stream"})
    return httpx.Response(200, json=answer)


@asynccontextmanager
async def resetting_server() -> AsyncIterator[str]:
    """Reads each whole request, then resets the connection (RST) instead of answering."""

    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            if length := re.search(rb"content-length:\s*(\d+)", head, re.IGNORECASE):
                await reader.readexactly(int(length.group(1)))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
        writer.transport.abort()

    server = await asyncio.start_server(reset, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


# Everything here is plain http on 127.0.0.1, so no TLS context is built (~40 ms a client), and
# every request gets a fresh connection: the emulator's accepted sockets keep Nagle's algorithm
# on, so a kept-alive connection stalls ~40 ms per request on the client's delayed ACK.
FRESH_CONNECTIONS = httpx.Limits(max_keepalive_connections=0)


def plain_http() -> httpx.HTTPTransport:
    return httpx.HTTPTransport(verify=False, limits=FRESH_CONNECTIONS)


async def transport_for(
    trigger: Trigger, emulator_url: str, stack: AsyncExitStack
) -> tuple[CountingTransport, str]:
    """The transport and base URL (without the API path) a trigger's provider talks to."""
    if trigger.endpoint == TRUNCATED:
        return CountingTransport(httpx.MockTransport(truncated_gemini_answer)), emulator_url
    if trigger.endpoint == REFUSED:
        return CountingTransport(plain_http()), CLOSED_PORT
    if trigger.endpoint == RESET:
        return CountingTransport(plain_http()), await stack.enter_async_context(resetting_server())
    return CountingTransport(plain_http()), emulator_url


@dataclass
class Wired:
    service: ChatService
    gemini: CountingTransport
    openai: CountingTransport
    sleeps: list[float]


async def wire(
    engine, blobs: BlobStore, emulator_url: str, gemini: Trigger, openai: Trigger, stack: AsyncExitStack
) -> Wired:
    """A ChatService over the real clients, each provider with its own (counted) transport."""
    sleeps: list[float] = []

    async def record(seconds: float) -> None:
        sleeps.append(seconds)

    g_transport, g_url = await transport_for(gemini, emulator_url, stack)
    o_transport, o_url = await transport_for(openai, emulator_url, stack)
    g_http = stack.enter_context(httpx.Client(transport=g_transport))
    o_http = stack.enter_context(httpx.Client(transport=o_transport))
    clients = {
        "gemini": GeminiClient(
            g_http, api_key=SecretStr(SERVER_KEY), base_url=g_url, timeout_s=gemini.timeout_s
        ),
        "openai": OpenAIImagesClient(
            o_http, api_key=SecretStr(SERVER_KEY), base_url=f"{o_url}/v1", timeout_s=openai.timeout_s
        ),
    }
    policy = FallbackPolicy(clients, retry=RetryPolicy(max_attempts=3), sleep=record, jitter=lambda d: d)
    return Wired(ChatService(engine=engine, blobs=blobs, policy=policy), g_transport, o_transport, sleeps)


CRASH_SIGNS = ("Traceback", 'File "', "Exception", "<class ", "Something went wrong on our side")


def secrets_of(*triggers: Trigger) -> list[str]:
    return [SERVER_KEY, *(t.key for t in triggers if t.key)]


class Control:
    """The emulator's control routes, as the shared ``emulator`` fixture has them, over one client.

    That fixture builds a new client (and TLS context) per call, ~40 ms each; over fifty cases
    it was a good part of this file's run time. Same routes, same reset before and after.
    """

    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.url = str(http.base_url).rstrip("/")

    def requests(self, provider: str) -> list[dict[str, Any]]:
        entries = self.http.get("/_emulator/requests").raise_for_status().json()
        return [entry for entry in entries if entry["provider"] == provider]

    def queue_faults(self, *faults: str) -> None:
        if faults:
            self.http.post("/_emulator/faults", json={"faults": list(faults)}).raise_for_status()

    def reset(self) -> None:
        self.http.delete("/_emulator/requests").raise_for_status()
        self.http.delete("/_emulator/faults").raise_for_status()


@pytest.fixture(scope="module")
def control_http(emulator_url: str) -> Iterator[httpx.Client]:
    transport = httpx.HTTPTransport(verify=False, limits=FRESH_CONNECTIONS)
    with httpx.Client(base_url=emulator_url, transport=transport) as http:
        yield http


@pytest.fixture
def control(control_http: httpx.Client) -> Iterator[Control]:
    control = Control(control_http)
    control.reset()
    yield control
    control.reset()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Engine, BlobStore]:
    """One database for all cases (each case has its own conversation): migrations run once."""
    data = tmp_path_factory.mktemp("fault-matrix")
    engine = make_engine(sqlite_url(data))
    migrate(engine)
    return engine, DiskBlobStore(data / "images")


# --- the tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("row", "column"), CASES)
async def test_fault(row: Row, column: str, store: tuple[Engine, BlobStore], control: Control) -> None:
    gemini, openai, route, expect = cell(row, column)
    engine, blobs = store
    async with AsyncExitStack() as stack:
        healthy = await wire(engine, blobs, control.url, HEALTHY, HEALTHY, stack)
        first = await last(
            healthy.service.send(
                ACTOR, None, "a street at dusk", [Attachment("street.png", PHOTO)], options=OPTIONS
            )
        )
        previous = first.turns[-1].shown_image()
        control.reset()
        control.queue_faults(*(f"gemini:{f}" for f in gemini.faults), *(f"openai:{f}" for f in openai.faults))
        faulty = await wire(engine, blobs, control.url, gemini, openai, stack)
        text = PROMPT + gemini.prompt + openai.prompt
        options = replace(OPTIONS, route=route, **{**gemini.options, **openai.options})
        keys = {name: SecretStr(t.key) for name, t in (("gemini", gemini), ("openai", openai)) if t.key}

        done = await last(faulty.service.send(ACTOR, first.id, text, options=options, keys=keys))

    user, answer = done.turns[-2:]
    assert user.role is Role.USER and user.text() == text  # the message is always kept
    assert answer.status is expect.status
    # An answer without an image is answered, with a notice saying why: the "no_image" rows.
    assert (answer.error.kind if answer.error else "no_image" if answer.notice else None) == expect.kind
    assert answer.provider == expect.provider
    gemini_calls, openai_calls = expect.calls
    assert (faulty.gemini.calls, faulty.openai.calls) == expect.calls
    assert [a.provider for a in answer.attempts] == ["gemini"] * gemini_calls + ["openai"] * openai_calls
    retried = sum(1 for calls in expect.calls if calls > 1)
    assert faulty.sleeps == list(row.waits) * retried

    shown = answer.error.message if answer.error else answer.notice or attempts_summary(answer)
    assert expect.says in shown, shown
    assert shown.startswith(("Gemini", "OpenAI")), shown
    transcript = json.dumps(to_transcript(done), ensure_ascii=False)
    for sign in CRASH_SIGNS:
        assert sign not in shown and sign not in transcript
    for secret in secrets_of(gemini, openai):
        assert secret not in shown and secret not in transcript

    edits = control.requests("openai")
    assert len(edits) == (openai_calls if openai.endpoint == EMULATOR else 0)
    for edit in edits:
        [image] = [f for f in edit["files"] if f["field"] == "image"]
        assert image["sha256"] == previous.sha256  # OpenAI continues from the previous output
    assert previous.sha256 == hashlib.sha256(blobs.read(previous.sha256, previous.mime_type)).hexdigest()

    assert done.awaiting_answer() is (expect.status is TurnStatus.ERROR)
    if expect.kind is None:  # a clean answer: its image is stored under its hash
        stored = blobs.read(answer.shown_image().sha256, answer.shown_image().mime_type)
        assert hashlib.sha256(stored).hexdigest() == answer.shown_image().sha256
        assert attempts_summary(answer) == expect.says
    elif expect.status is TurnStatus.OK:  # text kept with a notice, no image
        assert answer.text() and answer.shown_image() is None


# --- the README table ----------------------------------------------------------------------------

HEADER = (
    "| fault | Gemini fails (auto, OpenAI healthy) | OpenAI fails (route OpenAI) | both fail (auto) |\n"
    "|---|---|---|---|"
)


def _cell_text(expect: Expect | None) -> str:
    if expect is None:
        return "n/a"
    gemini, openai = expect.calls
    return f"{expect.outcome} \u00b7 G{gemini} O{openai}"


def markdown_table() -> str:
    """The README table: one line per fault, each cell the outcome and the calls (G = Gemini, O = OpenAI)."""
    lines = [HEADER]
    for row in ROWS:
        cells = [_cell_text(row.on_gemini), _cell_text(row.on_openai), _cell_text(row.on_both)]
        waits = f"; waits {', '.join(f'{w:g}' for w in row.waits)} s" if row.waits else ""
        lines.append(f"| {row.fault}{waits} | {' | '.join(cells)} |")
    return "\n".join(lines)


def test_readme_shows_this_table() -> None:
    assert markdown_table() in README.read_text(encoding="utf-8")


def test_the_table_is_consistent() -> None:
    """A fault has a cell wherever it exists; retried faults (with waits) cost 3 calls, the others 1."""
    for row in ROWS:
        assert (row.on_gemini is None) == (row.gemini is None), row.id
        assert (row.on_openai is None) == (row.openai is None), row.id
        for expect in (row.on_gemini, row.on_openai, row.on_both):
            assert expect is None or max(expect.calls) == (3 if row.waits else 1), row.id


if __name__ == "__main__":  # regenerate the README table: python -m tests.test_fault_matrix
    sys.stdout.write(markdown_table() + "\n")
