"""The shared HTTP edge: transport failures mapped to our error types in one place, model ids
checked before they reach a URL or a body, the key a call used kept out of its errors, and the
threads a call blocks in.

A provider call is one hop to a worker thread (``in_worker``) that does all of its blocking
work with a synchronous ``httpx.Client``: build the body, POST, read the answer, decode and
parse it. The event loop only awaits the call's future: reading a ~3 MB answer through
``httpx.AsyncClient`` cost ~5 ms of the loop's CPU (a trip through the loop per 64 KiB read),
the same read in a thread ~3 ms, and none of it on the loop (``python -m bench.httpx_read``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import queue
import re
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import httpx
import orjson
from pydantic import SecretStr

from chat.errors import (
    BadRequestError,
    MissingKeyError,
    ProviderError,
    ProviderTimeoutError,
    UnavailableError,
)
from chat.providers.model_ids import MODEL_ID_RULE, is_model_id

__all__ = [
    "CallStop",
    "CallThreads",
    "SentOnce",
    "api_key_for",
    "call_timeout",
    "checked_model",
    "in_worker",
    "json_or_none",
    "key_hidden",
    "map_transport_errors",
    "parse_duration",
    "read_reply",
]

T = TypeVar("T")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*s?\s*$")


def parse_duration(value: object) -> float | None:
    """'37s', '1.5s' (google.rpc.RetryInfo) or '12' (Retry-After) to seconds; None if unreadable."""
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return float(match.group(1))
    return None


def call_timeout(seconds: float) -> httpx.Timeout:
    """A model call's timeout: the whole call may take ``seconds``; connecting, at most 15 of them."""
    return httpx.Timeout(seconds, connect=min(seconds, 15.0))


def api_key_for(provider: str, env_name: str, visitor: SecretStr | None, server: SecretStr | None) -> str:
    """The key a call uses: the visitor's own if given, else the server's; MissingKeyError if neither."""
    chosen = visitor or server
    key = chosen.get_secret_value() if chosen else ""
    if not key:
        raise MissingKeyError(provider, env_name)
    return key


def checked_model(provider: str, model: str) -> str:
    """``model`` if it is shaped like a model id; else BadRequestError, before anything is sent.

    parse_options refuses such ids already; this is the last check before the id becomes part of
    a URL (Gemini) or a request body (OpenAI), whoever built the options.
    """
    if not is_model_id(model):
        raise BadRequestError(provider, f"the model id is malformed (use {MODEL_ID_RULE}); nothing was sent")
    return model


class SentOnce:
    """A request body that httpx sends once and then lets go of.

    A Gemini body carries the replayed images in base64 (MBs). Passed as bytes, the caller's
    frame and httpx's ``Request`` (which the response keeps) would hold it for the whole call,
    10 s or more, once per turn in flight; iterated, it hands its bytes over and keeps none, so
    they are freed as soon as they are written. ``headers`` carries the length, since httpx
    would otherwise send an iterable body chunked.
    """

    def __init__(self, data: bytes) -> None:
        self._data: bytes | None = data
        self.headers = {"content-length": str(len(data))}

    def __iter__(self) -> Iterator[bytes]:
        data, self._data = self._data, None
        if data is None:
            raise RuntimeError("a request body is sent once")
        yield data


def json_or_none(response: httpx.Response) -> object:
    """The body as JSON, or None when it is not (an HTML error page, a cut-off answer).

    orjson: ~1 ms for an answer with a 1K image where ``json.loads`` takes ~2, all of it holding
    the GIL that every other turn in flight waits for (bench/capacity.py's py-spy samples).
    """
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None


@contextmanager
def map_transport_errors(provider: str) -> Iterator[None]:
    """Re-raise httpx's network failures as the provider error a user and the fallback understand."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise ProviderTimeoutError(provider, type(exc).__name__) from exc
    except httpx.TransportError as exc:
        raise UnavailableError(provider, f"connection failed ({type(exc).__name__})") from exc


def read_reply(
    response: httpx.Response,
    provider: str,
    *,
    api_key: str,
    error: Callable[[object], ProviderError],
    parse: Callable[[dict[str, Any]], T],
) -> T:
    """The answer decoded and parsed (blocking: an answer with a 1K image is ~3 MB of JSON, ~4 ms;
    call it in the worker thread that made the call). A status other than 200 raises
    ``error(body)``; a body that is not JSON is the provider being unavailable. Either way
    ``api_key``, the key the call used, is hidden from the error if the provider echoed it."""
    with key_hidden(api_key):
        payload = json_or_none(response)
        if response.status_code != 200:
            raise error(payload)
        if not isinstance(payload, dict):
            raise UnavailableError(provider, "the answer was not valid JSON", status_code=200)
        return parse(payload)


@contextmanager
def key_hidden(api_key: str) -> Iterator[None]:
    """A provider error raised in the block, with ``api_key`` (the key the call used) hidden from
    it if the provider echoed it: every path that reads an answer (a response, a stream) goes through it."""
    try:
        yield
    except ProviderError as exc:
        exc.hide(api_key)
        raise


class CallStop:
    """Ends a blocking call from outside its worker thread: the user pressed Stop (the awaiting task
    was cancelled) or the app is stopping.

    The call registers the response it is reading (``reading``) and checks ``stopped`` between
    chunks; ``stop()`` shuts that response's socket down, which wakes a read blocked on a silent
    server at once (closing it from another thread would not). A transport without a socket
    (httpx's ``MockTransport``) ends at the next chunk instead.
    """

    def __init__(self) -> None:
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._response: httpx.Response | None = None

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def reading(self, response: httpx.Response) -> None:
        """The response the call reads now; shut at once if the call was stopped already."""
        with self._lock:
            self._response = response
        if self.stopped:
            _shut(response)

    def stop(self) -> None:
        self._stopped.set()
        with self._lock:
            response = self._response
        if response is not None:
            _shut(response)


def _shut(response: httpx.Response) -> None:
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):  # closed already
            sock.shutdown(socket.SHUT_RDWR)


async def in_worker(threads: CallThreads | None, call: Callable[[], T], stop: CallStop | None = None) -> T:
    """``call()`` in one of ``threads``; in asyncio's default executor when there are none (tests, benches).

    A thread cannot be cancelled: if the awaiting task is (Stop, through Gradio's ``/cancel``, or
    the queue stopping), ``stop`` is told, so a call that reads through it ends within a chunk
    or at once (its socket shut); a call without one still runs until it is answered or its
    timeout (``call_timeout``) ends it, and its answer is dropped. Meanwhile the call keeps its
    thread, so a new call may wait for one. Gradio (the pinned 6.x, ``queueing.py``) does not
    cancel a running event when its browser goes away (it marks the event gone and stops
    iterating it after the current step).
    """
    try:
        if threads is None:
            return await asyncio.to_thread(call)
        return await threads.run(call)
    except asyncio.CancelledError:
        if stop is not None:
            stop.stop()
        raise


class CallThreads:
    """``workers`` threads that provider calls block in, each for a call's whole latency (seconds).

    Not asyncio's default executor: that has min(32, CPUs + 4) threads (6 on 2 cores), shared
    with every short ``asyncio.to_thread`` job, which would wait behind provider calls. The
    app makes ``settings.model_concurrency`` of them: Gradio's queue runs at most that many
    model events at once, and one event's calls (retries, the fallback) run one after another.

    The threads are daemon threads, so a call still running when the app stops (its job cut
    off after the shutdown grace) does not hold up the exit until its timeout, as a
    ``ThreadPoolExecutor``'s worker would: the interpreter joins those at exit.
    """

    def __init__(self, workers: int, *, name: str = "provider-call") -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()  # a call is queued before close()'s stops, or refused
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{n}", daemon=True) for n in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    async def run(self, call: Callable[[], T]) -> T:
        """``call()`` in the next free thread, in this task's context; cancelled before it starts, it never runs."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        context = contextvars.copy_context()

        def job() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(context.run(call))
            except BaseException as exc:  # handed to the awaiting task, as an executor does
                future.set_exception(exc)

        with self._lock:
            if self._closed:
                raise RuntimeError("the provider call threads are closed")
            self._jobs.put(job)
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        """Take no more calls; idle threads end now, busy ones after their call (not waited for)."""
        with self._lock:
            self._closed = True
            for _ in self._threads:
                self._jobs.put(None)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()
