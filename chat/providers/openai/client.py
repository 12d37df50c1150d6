"""OpenAI Images API over an injected ``httpx.Client``, in one worker thread: the fallback when Gemini fails.

Each call is self-contained (OpenAI keeps no image conversation): the previous output goes in
as the first input image, byte for byte as stored, so an edit continues from what the user sees.

A call streams (``stream=true``, ``partial_images``) when the model accepts it (catalog.py) and
asks for one image: its drafts are shown as progress, and the completed event is parsed as a
plain response is, so what is stored does not depend on whether the call streamed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import httpx
from pydantic import SecretStr

from chat.config import DEFAULTS
from chat.domain import (
    GenerationOptions,
    ImagePart,
    OpenAIOptions,
    Phase,
    Progress,
    ProgressSink,
    ProviderReply,
    Turn,
    extension_for,
)
from chat.errors import BadRequestError, InputError
from chat.media.images import image_size
from chat.providers.http import (
    CallStop,
    CallThreads,
    api_key_for,
    call_timeout,
    checked_model,
    in_worker,
    json_or_none,
    key_hidden,
    map_transport_errors,
    read_reply,
)
from chat.providers.openai.catalog import openai_model
from chat.providers.openai.prices import worst_case_cost
from chat.providers.openai.stream import read_stream, refuses_streaming
from chat.providers.openai.wire import (
    PROVIDER,
    EditInputs,
    ImageLoader,
    build_edit_form,
    build_generation_body,
    error_from_response,
    fit_mask,
    parse_responses,
    select_edit_inputs,
)

__all__ = ["OpenAIImagesClient"]


class OpenAIImagesClient:
    """One provider adapter with the same ``reply`` contract as ``GeminiClient``, and ``reply_many``
    for variants (several images of one request, in one call)."""

    name = PROVIDER

    def __init__(
        self,
        http: httpx.Client,
        *,
        api_key: SecretStr | None,
        threads: CallThreads | None = None,  # None: asyncio's default executor (tests, benches)
        base_url: str = DEFAULTS.openai_base_url,
        default_model: str = DEFAULTS.openai_image_model,
        timeout_s: float = DEFAULTS.openai_timeout_s,
        safety_identifier: str | None = None,
        stream: bool = DEFAULTS.streaming,
        partial_images: int = DEFAULTS.openai_partial_images,
    ) -> None:
        self._http = http
        self._threads = threads
        self._api_key = api_key
        self._base_url = base_url.rstrip("/")
        self._default_model = default_model
        self._timeout = call_timeout(timeout_s)
        self._safety_identifier = safety_identifier
        self._stream = stream
        self._partial_images = partial_images
        self._refused_stream: set[str] = set()  # models that answered "stream" with a 400

    @property
    def configured(self) -> bool:
        return bool(self._api_key and self._api_key.get_secret_value())

    def model_for(self, options: GenerationOptions) -> str:
        return options.openai.model or self._default_model

    def worst_case_cost(self, options: GenerationOptions, *, input_images: int, n: int = 1) -> float:
        partials = self._partials_for(self.model_for(options), n) or 0
        return worst_case_cost(input_images=input_images, n=n, partial_images=partials)

    def _partials_for(self, model: str, n: int) -> int | None:
        """How many drafts a call asks for; None: it does not stream.

        Never with ``n`` > 1 (the events carry no image index to tell the variants apart), never
        for a model the catalogue does not say streams, nor for one that refused it in this
        process: a refusal costs a 400 round trip (nothing is generated or billed), the model's
        abilities do not change while the process runs, and its plain answer is the same image,
        so later calls skip the stream instead of paying that trip each time.
        """
        caps = openai_model(model)
        if not self._stream or n > 1 or not caps.streams or model in self._refused_stream:
            return None
        partials = min(self._partial_images, caps.max_partial_images)
        return partials if partials > 0 else None

    async def reply(
        self,
        history: Sequence[Turn],
        options: GenerationOptions,
        load_image: ImageLoader,
        *,
        api_key: SecretStr | None = None,
        progress: ProgressSink | None = None,
    ) -> ProviderReply:
        """Answer the trailing user turn(s): an edit of the current image, or a generation.

        ``api_key`` (a visitor's own) wins over the server's. Everything after the checks runs in
        one worker thread (``in_worker``, which says what a cancelled call does): the form (blob
        reads, mask resizing), the POST, reading, decoding and parsing the answer. ``progress``
        hears WAITING when it is sent, a DRAFT per streamed partial image, FINAL when it is in.
        """
        (first,) = await self.reply_many(
            history, options, load_image, n=1, api_key=api_key, progress=progress
        )
        return first

    async def reply_many(
        self,
        history: Sequence[Turn],
        options: GenerationOptions,
        load_image: ImageLoader,
        *,
        n: int,
        api_key: SecretStr | None = None,
        progress: ProgressSink | None = None,
    ) -> list[ProviderReply]:
        """``n`` variants from one call (OpenAI's ``n``), each with its share of the call's usage.

        A call for one image is ``reply``; more than one is never streamed. The list may be
        shorter than ``n`` if the answer was (never empty: no image is ``NoImageError``).
        """
        model = checked_model(PROVIDER, self.model_for(options))
        limit = openai_model(model).max_n
        if not 1 <= n <= limit:
            raise BadRequestError(
                PROVIDER, f"{model} makes 1 to {limit} images per call, not {n}; nothing was sent"
            )
        key = api_key_for(PROVIDER, "OPENAI_API_KEY", api_key, self._api_key)
        stop = CallStop()
        call = partial(self._call, history, options.openai, model, load_image, key, n, progress, stop)
        return await in_worker(self._threads, call, stop)

    def _call(
        self,
        history: Sequence[Turn],
        settings: OpenAIOptions,
        model: str,
        load_image: ImageLoader,
        key: str,
        n: int,
        progress: ProgressSink | None,
        stop: CallStop,
    ) -> list[ProviderReply]:
        """Blocking: build the request, send it, read and parse the answer."""
        inputs = select_edit_inputs(history)
        headers = {"Authorization": f"Bearer {key}"}
        request: Callable[[int | None], dict[str, Any]]
        if inputs.images:
            images, mask = self._edit_files(inputs, load_image)
            url = f"{self._base_url}/images/edits"

            def request(partials: int | None) -> dict[str, Any]:
                data, files = build_edit_form(
                    inputs.prompt,
                    images,
                    mask,
                    settings,
                    model=model,
                    user=self._safety_identifier,
                    n=n,
                    partial_images=partials,
                )
                return {"data": data, "files": files}
        else:
            url = f"{self._base_url}/images/generations"

            def request(partials: int | None) -> dict[str, Any]:
                body = build_generation_body(
                    inputs.prompt,
                    settings,
                    model=model,
                    user=self._safety_identifier,
                    n=n,
                    partial_images=partials,
                )
                return {"json": body}

        if progress is not None:
            progress(Progress(PROVIDER, Phase.WAITING, model=model))
        partials = self._partials_for(model, n)
        if partials is not None:
            streamed = self._streamed(
                url, headers, request(partials), model, settings, key, partials, progress, stop
            )
            if streamed is not None:
                return [streamed]
            self._refused_stream.add(model)
        with map_transport_errors(PROVIDER):
            response = self._http.post(url, headers=headers, timeout=self._timeout, **request(None))
        replies = read_reply(
            response,
            PROVIDER,
            api_key=key,
            error=lambda body: error_from_response(response.status_code, body, response.headers),
            parse=lambda body: parse_responses(
                body, model=model, output_format=settings.output_format, limit=n
            ),
        )
        if progress is not None:
            progress(Progress(PROVIDER, Phase.FINAL, model=model))
        return replies

    def _streamed(
        self,
        url: str,
        headers: dict[str, str],
        request: dict[str, Any],
        model: str,
        settings: OpenAIOptions,
        key: str,
        partials: int,
        progress: ProgressSink | None,
        stop: CallStop,
    ) -> ProviderReply | None:
        """The answer read from the event stream; None if the model refused to stream (a 400 naming it)."""
        with (
            key_hidden(key),
            map_transport_errors(PROVIDER),
            self._http.stream("POST", url, headers=headers, timeout=self._timeout, **request) as response,
        ):
            if response.status_code != 200:
                response.read()
                body = json_or_none(response)
                if refuses_streaming(response.status_code, body):
                    return None
                raise error_from_response(response.status_code, body, response.headers)
            return read_stream(
                response,
                stop,
                model=model,
                output_format=settings.output_format,
                expected=partials,
                progress=progress,
            )

    def _edit_files(
        self, inputs: EditInputs, load_image: ImageLoader
    ) -> tuple[list[tuple[str, bytes, str]], bytes | None]:
        """The form's images and mask: blob reads, mask resizing (once, whether the call streams or not)."""
        images = [
            (f"image-{i}.{extension_for(part.mime_type)}", load_image(part), part.mime_type)
            for i, part in enumerate(inputs.images, start=1)
        ]
        mask = None
        if inputs.mask is not None:
            mask = fit_mask(load_image(inputs.mask), _image_size(images[0][1], inputs.images[0]))
        return images, mask


def _image_size(data: bytes, part: ImagePart) -> tuple[int, int]:
    try:
        return image_size(data)
    except ValueError as exc:
        raise InputError(f"The stored image {part.sha256[:12]} could not be read to fit the mask.") from exc
