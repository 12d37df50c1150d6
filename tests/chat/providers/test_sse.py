"""The SSE reader: events split anywhere across chunks, CRLF, comments, big events, a stop."""

from __future__ import annotations

import httpx
import pytest

from chat.providers.http import CallStop
from chat.providers.sse import SseEvent, StoppedReading, iter_sse


class Chunks(httpx.SyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.read = 0

    def __iter__(self):
        for chunk in self.chunks:
            self.read += 1
            yield chunk


BODY = (
    b": a comment\n\n"
    b'event: image_edit.partial_image\ndata: {"a": 1}\n\n'
    b'data: {"b":\ndata: 2}\n\n'
    b"id: 7\nretry: 10\n\n"
)
EXPECTED = [SseEvent("image_edit.partial_image", b'{"a": 1}'), SseEvent("message", b'{"b":\n2}')]


@pytest.mark.parametrize("size", [1, 2, 3, 7, len(BODY)])
@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_events_split_anywhere(size: int, newline: bytes) -> None:
    body = BODY.replace(b"\n", newline)
    chunks = [body[i : i + size] for i in range(0, len(body), size)]
    assert list(iter_sse(httpx.Response(200, stream=Chunks(chunks)))) == EXPECTED


def test_a_cut_event_is_not_yielded() -> None:
    body = b'data: {"whole": true}\n\ndata: {"cut'
    assert list(iter_sse(httpx.Response(200, stream=Chunks([body])))) == [
        SseEvent("message", b'{"whole": true}')
    ]


def test_a_multi_megabyte_event_arrives_whole() -> None:
    big = b"data: " + b"x" * 5_000_000 + b"\n\n"
    chunks = [big[i : i + 65536] for i in range(0, len(big), 65536)]
    (event,) = iter_sse(httpx.Response(200, stream=Chunks(chunks)))
    assert len(event.data) == 5_000_000


def test_a_stop_ends_the_read_between_chunks() -> None:
    stop = CallStop()
    stream = Chunks([b"data: 1\n\n", b"data: 2\n\n", b"data: 3\n\n"])
    events = iter_sse(httpx.Response(200, stream=stream), stop)
    assert next(events).data == b"1"
    stop.stop()
    with pytest.raises(StoppedReading):
        next(events)
    assert stream.read == 2


class Shut(httpx.SyncByteStream):
    """A stream whose socket a stop shut: the next read finds the chunked body ended short."""

    def __init__(self, stop: CallStop) -> None:
        self.stop = stop

    def __iter__(self):
        yield b"data: 1\n\n"
        self.stop.stop()
        raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")


def test_a_body_cut_short_by_a_stop_is_a_stopped_read() -> None:
    stop = CallStop()
    events = iter_sse(httpx.Response(200, stream=Shut(stop)), stop)
    assert next(events).data == b"1"
    with pytest.raises(StoppedReading):
        next(events)


def test_a_body_cut_short_without_a_stop_is_the_transport_error() -> None:
    events = iter_sse(httpx.Response(200, stream=Shut(CallStop())))
    assert next(events).data == b"1"
    with pytest.raises(httpx.RemoteProtocolError):
        next(events)
