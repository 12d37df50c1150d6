"""OpenAI Images API over an injected ``httpx.Client``, in one worker thread: the fallback when Gemini fails.

Each call is self-contained (OpenAI keeps no image conversation): the previous output goes in
as the first input image, byte for byte as stored, so an edit continues from what the user sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import httpx
from pydantic import SecretStr

from chat.config import DEFAULTS
from chat.domain import (
    GenerationOptions,
    ImagePart,
    OpenAIOptions,
    ProgressSink,
    ProviderReply,
    Turn,
    extension_for,
)
from chat.errors import InputError
from chat.media.images import image_size
from chat.providers.http import (
    CallThreads,
    api_key_for,
    call_timeout,
    checked_model,
    in_worker,
    map_transport_errors,
    read_reply,
)
from chat.providers.openai.prices import worst_case_cost
from chat.providers.openai.wire import (
    PROVIDER,
    EditInputs,
    FormFile,
    ImageLoader,
    build_edit_form,
    build_generation_body,
    error_from_response,
    fit_mask,
    parse_response,
    select_edit_inputs,
)

__all__ = ["OpenAIImagesClient"]


class OpenAIImagesClient:
    """One provider adapter with the same ``reply`` contract as ``GeminiClient``."""

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
    ) -> None:
        self._http = http
        self._threads = threads
        self._api_key = api_key
        self._base_url = base_url.rstrip("/")
        self._default_model = default_model
        self._timeout = call_timeout(timeout_s)
        self._safety_identifier = safety_identifier

    @property
    def configured(self) -> bool:
        return bool(self._api_key and self._api_key.get_secret_value())

    def model_for(self, options: GenerationOptions) -> str:
        return options.openai.model or self._default_model

    def worst_case_cost(self, options: GenerationOptions, *, input_images: int) -> float:
        return worst_case_cost(input_images=input_images)

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
        reads, mask resizing), the POST, reading, decoding and parsing the answer.
        """
        model = checked_model(PROVIDER, self.model_for(options))
        key = api_key_for(PROVIDER, "OPENAI_API_KEY", api_key, self._api_key)
        call = partial(self._call, history, options.openai, model, load_image, key)
        return await in_worker(self._threads, call)

    def _call(
        self, history: Sequence[Turn], settings: OpenAIOptions, model: str, load_image: ImageLoader, key: str
    ) -> ProviderReply:
        """Blocking: build the request, send it, read and parse the answer."""
        inputs = select_edit_inputs(history)
        headers = {"Authorization": f"Bearer {key}"}
        if inputs.images:
            data, files = self._edit_form(inputs, settings, model, load_image)
            request: dict[str, Any] = {"data": data, "files": files}
            url = f"{self._base_url}/images/edits"
        else:
            body = build_generation_body(inputs.prompt, settings, model=model, user=self._safety_identifier)
            request = {"json": body}
            url = f"{self._base_url}/images/generations"
        with map_transport_errors(PROVIDER):
            response = self._http.post(url, headers=headers, timeout=self._timeout, **request)
        return read_reply(
            response,
            PROVIDER,
            api_key=key,
            error=lambda body: error_from_response(response.status_code, body, response.headers),
            parse=lambda body: parse_response(body, model=model, output_format=settings.output_format),
        )

    def _edit_form(
        self, inputs: EditInputs, settings: OpenAIOptions, model: str, load_image: ImageLoader
    ) -> tuple[dict[str, str], list[FormFile]]:
        """The multipart form: blob reads, mask resizing."""
        images = [
            (f"image-{i}.{extension_for(part.mime_type)}", load_image(part), part.mime_type)
            for i, part in enumerate(inputs.images, start=1)
        ]
        mask = None
        if inputs.mask is not None:
            mask = fit_mask(load_image(inputs.mask), _image_size(images[0][1], inputs.images[0]))
        return build_edit_form(
            inputs.prompt, images, mask, settings, model=model, user=self._safety_identifier
        )


def _image_size(data: bytes, part: ImagePart) -> tuple[int, int]:
    try:
        return image_size(data)
    except ValueError as exc:
        raise InputError(f"The stored image {part.sha256[:12]} could not be read to fit the mask.") from exc
