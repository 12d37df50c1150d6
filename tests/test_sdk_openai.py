"""The official ``openai`` SDK talks to the provider emulator's OpenAI Images routes.

This is the evidence that the emulator speaks the real wire format: the SDK builds
the multipart edit (``image`` for one file, repeated ``image[]`` for several, ``mask``)
and the JSON generation exactly as it would against OpenAI, parses the answers into
``ImagesResponse``, and maps the error envelopes to its exception classes.
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from PIL import Image

from tests.emulator import read_provenance
from tests.emulator.fixtures import EmulatorControl
from tests.pictures import hole_png, picture_png

MODEL = "gpt-image-2"
SIZE = (96, 64)
LEFT_HALF = (0, 0, 48, 64)  # the mask edits the left half only


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _b64_images(response: openai.types.ImagesResponse) -> list[bytes]:
    assert response.data
    return [base64.b64decode(item.b64_json or "") for item in response.data]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _client(emulator_url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=f"{emulator_url}/v1", max_retries=0)


@pytest.fixture
def client(emulator_url: str) -> Iterator[openai.OpenAI]:
    with _client(emulator_url, "test-key") as sdk_client:
        yield sdk_client


def test_edit_with_a_mask(client: openai.OpenAI, emulator: EmulatorControl, tmp_path: Path) -> None:
    source, mask = picture_png(SIZE), hole_png(SIZE, LEFT_HALF)
    response = client.images.edit(
        model=MODEL,
        image=_write(tmp_path / "photo.png", source),
        mask=_write(tmp_path / "mask.png", mask),
        prompt="paint the left half blue",
        size="1024x1024",
        quality="low",
    )
    (output,) = _b64_images(response)
    assert (response.size, response.quality, response.output_format) == ("1024x1024", "low", "png")
    assert response.usage is not None and response.usage.input_tokens_details.image_tokens > 0
    assert Image.open(io.BytesIO(output)).size == (1024, 1024)
    origin = read_provenance(output)
    assert (origin["provider"], origin["endpoint"], origin["model"]) == ("openai", "edits", MODEL)
    assert origin["input_sha256"] == [_sha(source)] and origin["mask_sha256"] == _sha(mask)

    (entry,) = emulator.requests()
    assert entry["headers"]["authorization"] == "Bearer test-key"
    assert entry["form"]["prompt"] == "paint the left half blue" and entry["form"]["model"] == MODEL
    assert [(f["field"], f["filename"], f["content_type"]) for f in entry["files"]] == [
        ("image", "photo.png", "image/png"),
        ("mask", "mask.png", "image/png"),
    ]


def test_mask_semantics_survive_the_sdk(client: openai.OpenAI) -> None:
    source = picture_png(SIZE)
    response = client.images.edit(
        model=MODEL,
        image=("photo.png", source, "image/png"),
        mask=("mask.png", hole_png(SIZE, LEFT_HALF), "image/png"),
        prompt="recolour",
    )
    (output,) = _b64_images(response)
    before = Image.open(io.BytesIO(source)).convert("RGB")
    after = Image.open(io.BytesIO(output)).convert("RGB")
    assert after.getpixel((90, 30)) == before.getpixel((90, 30))  # right half: untouched
    assert after.getpixel((10, 30)) != before.getpixel((10, 30))  # left half: edited


def test_edit_with_two_images(client: openai.OpenAI, emulator: EmulatorControl, tmp_path: Path) -> None:
    first, second = picture_png(SIZE), picture_png((64, 64), shift=50)
    response = client.images.edit(
        model="gpt-image-2.5-sunburst",
        image=[_write(tmp_path / "a.png", first), _write(tmp_path / "b.png", second)],
        prompt="put the second picture into the first",
        n=2,
    )
    outputs = _b64_images(response)
    assert len(outputs) == 2 and outputs[0] != outputs[1]
    assert Image.open(io.BytesIO(outputs[0])).size == (96, 64)  # the first input decides the size
    assert read_provenance(outputs[1])["input_sha256"] == [_sha(first), _sha(second)]
    (entry,) = emulator.requests()
    assert [f["field"] for f in entry["files"]] == ["image[]", "image[]"]
    assert [f["sha256"] for f in entry["files"]] == [_sha(first), _sha(second)]


def test_bare_bytes_are_rejected_like_the_real_api(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.edit(model=MODEL, image=picture_png(SIZE), prompt="x")
    assert caught.value.code == "unsupported_file_mimetype"
    assert "application/octet-stream" in caught.value.message


async def test_generate_with_the_async_client(emulator_url: str, emulator: EmulatorControl) -> None:
    async with openai.AsyncOpenAI(api_key="test-key", base_url=f"{emulator_url}/v1", max_retries=0) as client:
        response = await client.images.generate(
            model="gpt-image-1.5", prompt="a lighthouse", size="1536x1024", output_format="webp"
        )
    (output,) = _b64_images(response)
    image = Image.open(io.BytesIO(output))
    assert (image.format, image.size) == ("WEBP", (1536, 1024))
    assert read_provenance(output)["endpoint"] == "generations"
    assert response.usage is not None and response.usage.output_tokens == 1584  # medium, 1.5 x 1056
    (entry,) = emulator.requests()
    assert entry["body"] == {
        "prompt": "a lighthouse",
        "model": "gpt-image-1.5",
        "size": "1536x1024",
        "output_format": "webp",
    }


def test_invalid_key_is_authentication_error(emulator_url: str) -> None:
    with _client(emulator_url, "invalid-key") as client, pytest.raises(openai.AuthenticationError) as caught:
        client.images.generate(model=MODEL, prompt="x")
    assert caught.value.status_code == 401 and caught.value.code == "invalid_api_key"


def test_unverified_organization_is_permission_denied(emulator_url: str) -> None:
    with (
        _client(emulator_url, "unverified-key") as client,
        pytest.raises(openai.PermissionDeniedError) as caught,
    ):
        client.images.generate(model=MODEL, prompt="x")
    assert "must be verified" in caught.value.message


def test_moderation_is_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.edit(
            model=MODEL, image=("a.png", picture_png(SIZE), "image/png"), prompt="[fault:moderation] x"
        )
    assert caught.value.code == "moderation_blocked"
    assert caught.value.type == "image_generation_user_error"


def test_invalid_parameter_is_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.edit(
            model=MODEL, image=("a.png", picture_png(SIZE), "image/png"), prompt="x", input_fidelity="high"
        )
    assert (caught.value.param, caught.value.code) == ("input_fidelity", "unsupported_parameter")


def test_rate_limit_is_rate_limit_error(client: openai.OpenAI, emulator: EmulatorControl) -> None:
    emulator.queue_faults("gemini:503", "openai:429")
    with pytest.raises(openai.RateLimitError) as caught:
        client.images.generate(model=MODEL, prompt="x")
    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.response.headers["retry-after"] == "2"
    assert caught.value.request_id and caught.value.request_id.startswith("req_")
    assert [(e["provider"], e["status"]) for e in emulator.requests()] == [("openai", 429)]
    assert emulator.faults() == ["gemini:503"]  # kept for the next Gemini request


def test_server_error_is_internal_server_error(client: openai.OpenAI, emulator: EmulatorControl) -> None:
    emulator.queue_faults("503")
    with pytest.raises(openai.InternalServerError) as caught:
        client.images.generate(model=MODEL, prompt="x")
    assert caught.value.status_code == 503


@pytest.mark.parametrize("model", ["dall-e-3", "gpt-image-1"])
def test_shut_down_model_is_not_found(client: openai.OpenAI, model: str) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.images.generate(model=model, prompt="x")
    assert caught.value.code == "model_not_found"
    assert f"`{model}`" in caught.value.message
