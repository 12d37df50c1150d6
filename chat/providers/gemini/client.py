"""Gemini ``streamGenerateContent`` (or ``generateContent``) over an injected ``httpx.Client``:
build, send, read, parse, in one worker thread.

Streaming is the default so a user watches the thoughts, the text and the drafts arrive
(``progress``); the answer is parsed from the whole stream exactly as a non-streamed one
(chat/providers/gemini/stream.py), so both paths store and replay the same parts.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from urllib.parse import quote

import httpx
import orjson
from pydantic import SecretStr

from chat.config import DEFAULTS
from chat.domain import GenerationOptions, Phase, Progress, ProgressSink, ProviderReply, Turn
from chat.providers.encoded_images import EncodedImages
from chat.providers.gemini.prices import worst_case_cost
from chat.providers.gemini.stream import StreamedAnswer, read_stream
from chat.providers.gemini.wire import (
    PROVIDER,
    ImageLoader,
    build_contents,
    build_request,
    error_from_response,
)
from chat.providers.gemini.wire import parse_response as parse_reply
from chat.providers.http import (
    CallStop,
    CallThreads,
    SentOnce,
    api_key_for,
    call_timeout,
    checked_model,
    in_worker,
    json_or_none,
    key_hidden,
    map_transport_errors,
    read_reply,
)
from chat.providers.sse import iter_sse

__all__ = ["GeminiClient"]


class GeminiClient:
    """One provider adapter; the history it replays is exactly what storage loaded."""

    name = PROVIDER

    def __init__(
        self,
        http: httpx.Client,
        *,
        api_key: SecretStr | None,
        threads: CallThreads | None = None,  # None: asyncio's default executor (tests, benches)
        base_url: str = DEFAULTS.gemini_base_url,
        api_version: str = "v1beta",
        timeout_s: float = DEFAULTS.request_timeout_s,
        keep_images: int | None = DEFAULTS.keep_images or None,  # None: no bound (the setting says 0)
        encoded: EncodedImages | None = None,
        stream: bool = DEFAULTS.streaming,  # False: one generateContent answer, no progress (RETOUCH_STREAMING)
        thoughts: bool | None = None,  # ask for thought summaries and drafts; None: when streaming
    ) -> None:
        self._stream = stream
        self._thoughts = stream if thoughts is None else thoughts
        self._keep_images = keep_images
        self._encoded = EncodedImages() if encoded is None else encoded
        self._http = http
        self._threads = threads
        self._api_key = api_key
        self._base_url = base_url.rstrip("/")
        self._api_version = api_version
        self._timeout = call_timeout(timeout_s)

    @property
    def configured(self) -> bool:
        return bool(self._api_key and self._api_key.get_secret_value())

    def model_for(self, options: GenerationOptions) -> str:
        return options.model

    def worst_case_cost(self, options: GenerationOptions, *, input_images: int) -> float:
        return worst_case_cost(options, input_images=input_images)

    async def reply(
        self,
        history: Sequence[Turn],
        options: GenerationOptions,
        load_image: ImageLoader,
        *,
        api_key: SecretStr | None = None,
        progress: ProgressSink | None = None,
    ) -> ProviderReply:
        """Answer the trailing user turn(s) of ``history``; ``api_key`` (a visitor's own) wins over ours.

        Everything after the checks runs in one worker thread (``in_worker``, which says what a
        cancelled call does): the body, the POST, reading, decoding and parsing the answer. A
        streamed call reports its progress to ``progress`` from that thread; a Stop ends its read
        within a chunk (``CallStop``) and the task's CancelledError is what the caller sees.
        """
        checked_model(PROVIDER, options.model)
        key = api_key_for(PROVIDER, "GEMINI_API_KEY", api_key, self._api_key)
        if not self._stream:
            return await in_worker(self._threads, partial(self._call, history, options, load_image, key))
        stop = CallStop()
        call = partial(self._call_streamed, history, options, load_image, key, stop, progress)
        return await in_worker(self._threads, call, stop)

    def _url(self, model: str, method: str) -> str:
        # One path segment, whatever the id: checked already, and quoted in case that check ever loosens.
        return f"{self._base_url}/{self._api_version}/models/{quote(model, safe='')}:{method}"

    def _call(
        self, history: Sequence[Turn], options: GenerationOptions, load_image: ImageLoader, key: str
    ) -> ProviderReply:
        """Blocking: build the body, send it, read and parse the answer."""
        body = SentOnce(self._body(history, options, load_image))  # its MBs freed once written
        model = options.model
        headers = {"x-goog-api-key": key, "content-type": "application/json", **body.headers}
        with map_transport_errors(PROVIDER):
            response = self._http.post(
                self._url(model, "generateContent"), content=body, headers=headers, timeout=self._timeout
            )
        return read_reply(
            response,
            PROVIDER,
            api_key=key,
            error=lambda body: error_from_response(response.status_code, body),
            parse=lambda body: parse_reply(body, model=model, encoded=self._encoded),
        )

    def _call_streamed(
        self,
        history: Sequence[Turn],
        options: GenerationOptions,
        load_image: ImageLoader,
        key: str,
        stop: CallStop,
        progress: ProgressSink | None,
    ) -> ProviderReply:
        """Blocking: send the body, read the events as they come, parse the joined answer.

        A status other than 200 is answered before any event, with the error body the
        non-streaming path gets; a stream cut off (the connection dropped, or no finish) is the
        provider being unavailable, so retries and the fallback happen as they do today.
        """
        body = SentOnce(self._body(history, options, load_image))
        model = options.model
        headers = {"x-goog-api-key": key, "content-type": "application/json", **body.headers}
        url = self._url(model, "streamGenerateContent") + "?alt=sse"
        answer = StreamedAnswer(model=model, progress=progress)
        if progress is not None:
            progress(Progress(provider=PROVIDER, phase=Phase.WAITING, model=model))
        with key_hidden(key):
            with (
                map_transport_errors(PROVIDER),
                self._http.stream(
                    "POST", url, content=body, headers=headers, timeout=self._timeout
                ) as response,
            ):
                if response.status_code != 200:
                    response.read()
                    raise error_from_response(response.status_code, json_or_none(response))
                joined = read_stream(iter_sse(response, stop), answer)
            return parse_reply(joined, model=model, encoded=self._encoded)

    def _body(self, history: Sequence[Turn], options: GenerationOptions, load_image: ImageLoader) -> bytes:
        """The JSON request body, encoded by orjson: ~1 ms for two 1K images where ``json.dumps`` takes ~15."""
        contents = build_contents(
            history, load_image, model=options.model, keep_images=self._keep_images, encoded=self._encoded
        )
        return orjson.dumps(build_request(contents, options, include_thoughts=self._thoughts))
