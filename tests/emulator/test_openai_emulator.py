"""Tests of the emulator's OpenAI Images routes: auth, models, validation, outputs, masks, faults, log.

Like ``test_emulator.py``, most tests run a fresh app in-process through
``httpx.ASGITransport``; the last ones use the session server over a real socket.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.emulator import create_app, read_provenance
from tests.emulator.fixtures import EmulatorControl
from tests.emulator.openai_models import MODELS
from tests.pictures import encode, hole_png, opened, picture, picture_png

GEMINI = "gemini-3.1-flash-image"
FileItem = tuple[str, tuple[str, bytes, str]]
SIZE = (64, 48)
HOLE = (8, 8, 32, 24)  # where the usual mask lets the model edit


# ---------------------------------------------------------------- helpers


def image_file(data: bytes, field: str = "image", name: str = "in.png", mime: str = "image/png") -> FileItem:
    return (field, (name, data, mime))


def decoded(response: httpx.Response, index: int = 0) -> bytes:
    return base64.b64decode(response.json()["data"][index]["b64_json"])


def error_of(response: httpx.Response) -> dict[str, Any]:
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def multipart(fields: list[tuple[str, str]], files: list[FileItem]) -> tuple[bytes, str]:
    """An explicit multipart body (httpx would switch to urlencoded when there are no files)."""
    boundary = "retouch-test-boundary"
    chunks = []
    for name, value in fields:
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
        chunks.append(head.encode() + value.encode() + b"\r\n")
    for name, (filename, data, mime) in files:
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            f"Content-Type: {mime}\r\n\r\n"
        )
        chunks.append(head.encode() + data + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


async def edit(
    client: httpx.AsyncClient,
    prompt: str | None = "make it warmer",
    files: list[FileItem] | None = None,
    key: str | None = "test-key",
    **fields: Any,
) -> httpx.Response:
    """POST an edit; a list value sends the field repeatedly; ``files`` defaults to one PNG."""
    pairs = [("prompt", prompt)] if prompt is not None else []
    for name, value in fields.items():
        pairs += [(name, str(v)) for v in value] if isinstance(value, list) else [(name, str(value))]
    body, content_type = multipart(pairs, [image_file(picture_png())] if files is None else files)
    headers = {"content-type": content_type}
    if key:
        headers["authorization"] = f"Bearer {key}"
    return await client.post("/v1/images/edits", content=body, headers=headers)


async def generate(
    client: httpx.AsyncClient, body: Any = None, key: str | None = "test-key", **fields: Any
) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    if isinstance(body, bytes):
        headers["content-type"] = "application/json"
        return await client.post("/v1/images/generations", content=body, headers=headers)
    return await client.post(
        "/v1/images/generations", json=body or {"prompt": "a lighthouse", **fields}, headers=headers
    )


async def gemini_request(client: httpx.AsyncClient, prompt: str) -> httpx.Response:
    body = {
        "contents": [{"role": "user", "parts": [{"text": prompt}]}],
        "generationConfig": {"responseModalities": ["TEXT", "IMAGE"]},
    }
    return await client.post(
        f"/v1beta/models/{GEMINI}:generateContent", json=body, headers={"x-goog-api-key": "k"}
    )


async def queue(client: httpx.AsyncClient, *faults: str) -> httpx.Response:
    return await client.post("/_emulator/faults", json={"faults": list(faults)})


async def queued(client: httpx.AsyncClient) -> list[str]:
    return (await client.get("/_emulator/faults")).json()["faults"]


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as http:
        yield http


# ---------------------------------------------------------------- auth and routing


@pytest.mark.parametrize(
    "headers", [{}, {"authorization": "Basic dXNlcjpwdw=="}, {"authorization": "Bearer "}]
)
async def test_missing_key_is_401(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    response = await client.post("/v1/images/generations", json={"prompt": "x"}, headers=headers)
    assert response.status_code == 401
    error = error_of(response)
    assert error["message"].startswith("You didn't provide an API key.")
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", None, None)


async def test_invalid_key_is_401_and_masked(client: httpx.AsyncClient) -> None:
    response = await edit(client, key="invalid-key-0123456789abcd")
    assert response.status_code == 401
    error = error_of(response)
    assert error["code"] == "invalid_api_key" and error["type"] == "invalid_request_error"
    assert error["message"].startswith("Incorrect API key provided: inval")
    assert "abcd." in error["message"] and "invalid-key-0123456789abcd" not in error["message"]


@pytest.mark.parametrize(
    ("key", "echoed"),
    [
        ("invalid-key-4444", "invalid-****4444"),
        ("invalid-sk-proj-abcdefgh-wxyz", "invalid-*****************wxyz"),
    ],
)
async def test_a_wrong_key_is_echoed_as_the_real_api_masks_it(
    client: httpx.AsyncClient, key: str, echoed: str
) -> None:
    """First 8 and last 4 characters, stars between (continuedev/continue#9634, 2026)."""
    error = error_of(await generate(client, key=key))
    assert error["message"] == (
        f"Incorrect API key provided: {echoed}. You can find your API key at https://platform.openai.com/account/api-keys."
    )


async def test_a_short_wrong_key_is_echoed_whole(client: httpx.AsyncClient) -> None:
    """As the real API does ("Incorrect API key provided: Toxic.", continuedev/continue#10276)."""
    error = error_of(await generate(client, key="invalid-42"))
    assert error["message"].startswith("Incorrect API key provided: invalid-42. ")


async def test_unverified_organization_is_403_naming_the_model(client: httpx.AsyncClient) -> None:
    response = await edit(client, key="unverified-org", model="gpt-image-1.5")
    assert response.status_code == 403
    error = error_of(response)
    assert error["message"].startswith("Your organization must be verified to use the model `gpt-image-1.5`.")
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", None, None)


async def test_key_is_checked_before_model_and_parameters(client: httpx.AsyncClient) -> None:
    response = await edit(client, key="invalid-x", model="dall-e-2", response_format="url", files=[])
    assert response.status_code == 401
    assert (await generate(client, b"{not json", key=None)).status_code == 401


@pytest.mark.parametrize("model", ["gpt-image-1", "dall-e-2", "dall-e-3", "gpt-image-3", "gpt-4o"])
async def test_shut_down_and_unknown_models_are_404(client: httpx.AsyncClient, model: str) -> None:
    for response in (
        await edit(client, model=model),
        await generate(client, {"prompt": "x", "model": model}),
    ):
        assert response.status_code == 404
        error = error_of(response)
        assert error["message"] == f"The model `{model}` does not exist or you do not have access to it."
        assert (error["type"], error["param"], error["code"]) == (
            "invalid_request_error",
            None,
            "model_not_found",
        )


@pytest.mark.parametrize("model", sorted(MODELS))
async def test_current_models_edit_and_generate(client: httpx.AsyncClient, model: str) -> None:
    edited = await edit(client, model=model)
    assert edited.status_code == 200, edited.text
    assert read_provenance(decoded(edited))["model"] == model
    generated = await generate(client, {"prompt": "x", "model": model})
    assert generated.status_code == 200
    assert read_provenance(decoded(generated))["model"] == model


async def test_model_defaults_to_gpt_image_2(client: httpx.AsyncClient) -> None:
    assert read_provenance(decoded(await edit(client)))["model"] == "gpt-image-2"
    assert read_provenance(decoded(await generate(client)))["model"] == "gpt-image-2"


async def test_unknown_path_and_wrong_method_use_openai_envelope(client: httpx.AsyncClient) -> None:
    missing = await client.post("/v1/images/variations", headers={"authorization": "Bearer k"})
    assert missing.status_code == 404
    assert error_of(missing)["message"] == "Invalid URL (POST /v1/images/variations)"
    wrong = await client.get("/v1/images/edits")
    assert wrong.status_code == 405
    assert error_of(wrong)["message"] == "Invalid URL (GET /v1/images/edits)"
    assert (await client.get("/_emulator/received")).json() == [
        {"method": "POST", "target": "/v1/images/variations", "status": 404},
        {"method": "GET", "target": "/v1/images/edits", "status": 405},
    ]


async def test_responses_carry_a_request_id(client: httpx.AsyncClient) -> None:
    ok, failed = await edit(client), await edit(client, key=None)
    ids = {ok.headers["x-request-id"], failed.headers["x-request-id"]}
    assert len(ids) == 2 and all(i.startswith("req_") for i in ids)


# ---------------------------------------------------------------- edit validation


def _files(*items: FileItem) -> list[FileItem]:
    return list(items)


_OCTET = image_file(picture_png(), mime="application/octet-stream")
_JUNK = image_file(b"\x89PNG\r\n\x1a\nnot really")
_GIF = image_file(encode(picture(), "GIF"), name="in.gif")
_RGB_MASK = image_file(picture_png(), "mask", "mask.png")
_JPEG_MASK = image_file(encode(picture(), "JPEG"), "mask", "mask.jpg", "image/jpeg")
_SMALL_MASK = image_file(hole_png((32, 24), (0, 0, 8, 8)), "mask", "mask.png")
_MISMATCH = "Invalid mask image: mask and image must have the same dimensions (mask: 32x24, image: 64x48)."

# (id, form fields, files or None for one PNG, param, code, message fragment)
INVALID_EDITS: list[tuple[str, dict[str, Any], list[FileItem] | None, str | None, str | None, str]] = [
    ("no-image", {}, [], "image", "missing_required_parameter", "Missing required parameter: 'image'."),
    ("no-prompt", {"prompt": None}, None, "prompt", "missing_required_parameter", "'prompt'"),
    ("empty-prompt", {"prompt": ""}, None, "prompt", "empty_string", "empty string"),
    ("long-prompt", {"prompt": "x" * 32_001}, None, "prompt", "string_above_max_length", "32000"),
    ("octet-stream", {}, [_OCTET], "image", "unsupported_file_mimetype", "('application/octet-stream')"),
    ("junk-image", {}, [_JUNK], "image", "invalid_image_file", "Invalid image file"),
    ("gif-as-png", {}, [_GIF], "image", "invalid_image_file", "Invalid image file"),
    (
        "image-as-text",
        {"image": "https://example.com/a.png"},
        [],
        "image",
        "invalid_type",
        "expected a file, but got a string",
    ),
    (
        "17-images",
        {},
        [image_file(picture_png(), "image[]")] * 17,
        "image",
        "array_above_max_length",
        "maximum length 16",
    ),
    ("mask-size", {}, [image_file(picture_png()), _SMALL_MASK], "mask", "invalid_mask_image", _MISMATCH),
    (
        "mask-no-alpha",
        {},
        [image_file(picture_png()), _RGB_MASK],
        "mask",
        "invalid_mask_image",
        "missing alpha channel",
    ),
    ("mask-jpeg", {}, [image_file(picture_png()), _JPEG_MASK], "mask", "invalid_mask_image", "must be a PNG"),
    ("mask-as-text", {"mask": "everything"}, None, "mask", "invalid_type", "expected a file"),
    ("n-zero", {"n": 0}, None, "n", "integer_below_min_value", "Expected a value >= 1"),
    ("n-eleven", {"n": 11}, None, "n", "integer_above_max_value", "Expected a value <= 10"),
    ("n-word", {"n": "two"}, None, "n", "invalid_type", "expected an integer"),
    (
        "legacy-size",
        {"model": "gpt-image-1.5", "size": "512x512"},
        None,
        "size",
        "invalid_value",
        "'512x512'",
    ),
    (
        "custom-size-on-1.5",
        {"model": "gpt-image-1.5", "size": "1536x864"},
        None,
        "size",
        "invalid_value",
        "Supported values are: '1024x1024', '1024x1536', '1536x1024', and 'auto'.",
    ),
    (
        "custom-size-on-latest",
        {"model": "chatgpt-image-latest", "size": "1536x864"},
        None,
        "size",
        "invalid_value",
        "",
    ),
    ("size-not-16", {"size": "1000x1000"}, None, "size", "invalid_value", "multiples of 16"),
    ("size-ratio", {"size": "3840x1024"}, None, "size", "invalid_value", "between 1:3 and 3:1"),
    ("size-too-big", {"size": "4096x2304"}, None, "size", "invalid_value", "3840x2160"),
    ("size-short-side", {"size": "2400x2400"}, None, "size", "invalid_value", "3840x2160"),
    ("size-word", {"size": "big"}, None, "size", "invalid_value", "'WIDTHxHEIGHT'"),
    ("xhigh-on-2", {"quality": "xhigh"}, None, "quality", "invalid_value", "Invalid value: 'xhigh'."),
    ("standard-quality", {"quality": "standard"}, None, "quality", "invalid_value", "'standard'"),
    (
        "background",
        {"background": "none"},
        None,
        "background",
        "invalid_value",
        "'transparent', 'opaque', and 'auto'",
    ),
    (
        "gif-output",
        {"output_format": "gif"},
        None,
        "output_format",
        "invalid_value",
        "'png', 'webp', and 'jpeg'",
    ),
    (
        "transparent-jpeg",
        {"background": "transparent", "output_format": "jpeg"},
        None,
        "background",
        "invalid_value",
        "Transparent backgrounds",
    ),
    (
        "compression-png",
        {"output_compression": 50},
        None,
        "output_compression",
        "invalid_value",
        "'webp' and 'jpeg'",
    ),
    (
        "compression-default-png",
        {"output_compression": 100, "output_format": "png"},
        None,
        "output_compression",
        "invalid_value",
        "",
    ),
    (
        "compression-101",
        {"output_compression": 101, "output_format": "jpeg"},
        None,
        "output_compression",
        "integer_above_max_value",
        "",
    ),
    (
        "fidelity-on-2",
        {"input_fidelity": "low"},
        None,
        "input_fidelity",
        "unsupported_parameter",
        "input_fidelity is not supported for this model.",
    ),
    (
        "fidelity-on-2.5",
        {"model": "gpt-image-2.5-sunburst", "input_fidelity": "high"},
        None,
        "input_fidelity",
        "unsupported_parameter",
        "input_fidelity is not supported",
    ),
    (
        "fidelity-on-latest",
        {"model": "chatgpt-image-latest", "input_fidelity": "high"},
        None,
        "input_fidelity",
        "unsupported_parameter",
        "input_fidelity is not supported",
    ),
    (
        "high-fidelity-on-mini",
        {"model": "gpt-image-1-mini", "input_fidelity": "high"},
        None,
        "input_fidelity",
        "invalid_value",
        "Supported values are: 'low'.",
    ),
    (
        "response-format",
        {"response_format": "b64_json"},
        None,
        "response_format",
        "unknown_parameter",
        "Unknown parameter: 'response_format'.",
    ),
    ("unknown", {"colour": "red"}, None, "colour", "unknown_parameter", "Unknown parameter: 'colour'."),
    ("moderation-on-edit", {"moderation": "low"}, None, "moderation", "unknown_parameter", ""),
    ("style", {"style": "vivid"}, None, "style", "unknown_parameter", ""),
    (
        "stream-on-a-model-that-does-not-stream",
        {"stream": "true", "model": "chatgpt-image-latest"},
        None,
        "stream",
        "unsupported_parameter",
        "stream is not supported for this model.",
    ),
    ("stream-with-n", {"stream": "true", "n": 2}, None, "n", "unsupported_parameter", "n=1 only"),
    (
        "partial-images-above-3",
        {"stream": "true", "partial_images": 4},
        None,
        "partial_images",
        "integer_above_max_value",
        "",
    ),
    ("markup", {"markup": "x"}, None, "markup", "unsupported_parameter", "not emulated"),
    ("duplicate", {"n": [1, 2]}, None, "n", "invalid_value", "Duplicate parameter: 'n'."),
    ("unknown-marker", {"prompt": "[fault:explode]"}, None, "prompt", None, "explode"),
    ("wrong-prefix", {"prompt": "[fault:openai:block]"}, None, "prompt", None, "does not exist for openai"),
]


@pytest.mark.parametrize(
    ("fields", "files", "param", "code", "message"),
    [case[1:] for case in INVALID_EDITS],
    ids=[case[0] for case in INVALID_EDITS],
)
async def test_invalid_edits_are_400(
    client: httpx.AsyncClient,
    fields: dict[str, Any],
    files: list[FileItem] | None,
    param: str | None,
    code: str | None,
    message: str,
) -> None:
    fields = dict(fields)
    prompt = fields.pop("prompt", "make it warmer")
    response = await edit(client, prompt, files, **fields)
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)
    assert message in error["message"]


async def test_oversized_image_and_mask_are_400(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.emulator import openai_request

    data = picture_png()
    monkeypatch.setattr(openai_request, "MAX_IMAGE_BYTES", len(data))  # the limit is "less than"
    too_big = error_of(await edit(client, files=[image_file(data)]))
    assert (too_big["param"], too_big["code"]) == ("image", "file_too_large")
    monkeypatch.setattr(openai_request, "MAX_IMAGE_BYTES", len(data) + 1)
    mask = hole_png(SIZE, HOLE)
    monkeypatch.setattr(openai_request, "MAX_MASK_BYTES", len(mask))
    too_big = error_of(await edit(client, files=[image_file(data), image_file(mask, "mask", "m.png")]))
    assert (too_big["param"], too_big["code"]) == ("mask", "file_too_large")


async def test_edits_need_multipart(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/images/edits", json={"prompt": "x", "image": "abc"}, headers={"authorization": "Bearer k"}
    )
    assert response.status_code == 400
    assert "expected multipart/form-data" in error_of(response)["message"]


VALID_EDITS: list[tuple[str, dict[str, Any]]] = [
    ("custom-size-2", {"size": "1536x864"}),
    ("custom-size-2.5", {"model": "gpt-image-2.5-flare-2026-09-08", "size": "768x2304"}),
    ("max-landscape", {"size": "3840x2160", "quality": "low"}),
    ("max-portrait", {"model": "gpt-image-2.6-sunburst", "size": "2160x3840", "quality": "low"}),
    ("standard-size-1.5", {"model": "gpt-image-1.5", "size": "1536x1024"}),
    ("fidelity-high-1.5", {"model": "gpt-image-1.5", "input_fidelity": "high"}),
    ("fidelity-low-1.5", {"model": "gpt-image-1.5", "input_fidelity": "low"}),
    ("fidelity-low-mini", {"model": "gpt-image-1-mini", "input_fidelity": "low"}),
    ("xhigh-2.5", {"model": "gpt-image-2.5-sunburst", "quality": "xhigh"}),
    ("max-2.6", {"model": "gpt-image-2.6-flare", "quality": "max"}),
    ("webp-compressed", {"output_format": "webp", "output_compression": 40}),
    ("jpeg-compressed", {"output_format": "jpeg", "output_compression": 0}),
    ("transparent-webp", {"background": "transparent", "output_format": "webp"}),
    (
        "extras",
        {
            "user": "u1",
            "safety_identifier": "h-123",
            "stream": "false",
            "partial_images": 2,
            "complexity": "high",
        },
    ),
    ("auto-everything", {"size": "auto", "quality": "auto", "background": "auto"}),
    ("longest-prompt", {"prompt": "y" * 32_000}),
]


@pytest.mark.parametrize("fields", [case[1] for case in VALID_EDITS], ids=[case[0] for case in VALID_EDITS])
async def test_valid_edits_are_accepted(client: httpx.AsyncClient, fields: dict[str, Any]) -> None:
    fields = dict(fields)
    prompt = fields.pop("prompt", "make it warmer")
    response = await edit(client, prompt, **fields)
    assert response.status_code == 200, response.text
    body = response.json()
    size = fields.get("size", "auto")
    assert body["size"] == ("64x48" if size == "auto" else size)
    assert opened(decoded(response)).size == tuple(int(v) for v in body["size"].split("x"))


async def test_image_formats_are_accepted(client: httpx.AsyncClient) -> None:
    files = [
        image_file(encode(picture(), "JPEG"), "image[]", "a.jpg", "image/jpeg"),
        image_file(encode(picture(), "WEBP"), "image[]", "b.webp", "image/webp"),
        image_file(picture_png(), "image[]"),
    ]
    assert (await edit(client, files=files)).status_code == 200


# ---------------------------------------------------------------- generation validation


INVALID_GENERATIONS: list[tuple[str, Any, str | None, str | None, str]] = [
    ("bad-json", b'{"prompt": ', None, None, "We could not parse the JSON body of your request."),
    ("not-an-object", b"[1, 2]", None, "invalid_type", "expected a JSON object"),
    ("no-prompt", {"n": 1}, "prompt", "missing_required_parameter", "Missing required parameter: 'prompt'."),
    ("prompt-number", {"prompt": 5}, "prompt", "invalid_type", "expected a string, but got a number"),
    ("model-number", {"prompt": "x", "model": 2}, "model", "invalid_type", ""),
    ("n-string", {"prompt": "x", "n": "2"}, "n", "invalid_type", "expected an integer, but got a string"),
    ("n-bool", {"prompt": "x", "n": True}, "n", "invalid_type", "got a boolean"),
    ("image", {"prompt": "x", "image": "abc"}, "image", "unknown_parameter", "Unknown parameter: 'image'."),
    ("mask", {"prompt": "x", "mask": "abc"}, "mask", "unknown_parameter", ""),
    ("input-fidelity", {"prompt": "x", "input_fidelity": "low"}, "input_fidelity", "unknown_parameter", ""),
    (
        "response-format",
        {"prompt": "x", "response_format": "url"},
        "response_format",
        "unknown_parameter",
        "",
    ),
    (
        "moderation",
        {"prompt": "x", "moderation": "strict"},
        "moderation",
        "invalid_value",
        "'low' and 'auto'",
    ),
    (
        "size-on-mini",
        {"prompt": "x", "model": "gpt-image-1-mini", "size": "1024x1792"},
        "size",
        "invalid_value",
        "",
    ),
    ("compression-png", {"prompt": "x", "output_compression": 80}, "output_compression", "invalid_value", ""),
    ("svg", {"prompt": "x", "svg": {"model": "m"}}, "svg", "unsupported_parameter", "not emulated"),
]


@pytest.mark.parametrize(
    ("body", "param", "code", "message"),
    [case[1:] for case in INVALID_GENERATIONS],
    ids=[case[0] for case in INVALID_GENERATIONS],
)
async def test_invalid_generations_are_400(
    client: httpx.AsyncClient, body: Any, param: str | None, code: str | None, message: str
) -> None:
    response = await generate(client, body)
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)
    assert message in error["message"]


async def test_generation_accepts_moderation_and_nulls(client: httpx.AsyncClient) -> None:
    body = {"prompt": "x", "moderation": "low", "quality": None, "size": None, "n": 2, "user": "u"}
    response = await generate(client, body)
    assert response.status_code == 200
    assert len(response.json()["data"]) == 2


# ---------------------------------------------------------------- outputs, provenance, usage


async def test_same_request_gives_identical_bytes(client: httpx.AsyncClient) -> None:
    first, second = await edit(client, "sepia"), await edit(client, "sepia")
    assert decoded(first) == decoded(second)
    assert first.json() == second.json()
    assert decoded(await edit(client, "neon")) != decoded(first)


async def test_response_shape(client: httpx.AsyncClient) -> None:
    body = (await edit(client, quality="high", n=2)).json()
    assert set(body) == {"created", "background", "data", "output_format", "quality", "size", "usage"}
    assert isinstance(body["created"], int)
    assert (body["background"], body["output_format"], body["quality"], body["size"]) == (
        "opaque",
        "png",
        "high",
        "64x48",
    )
    assert [set(item) for item in body["data"]] == [{"b64_json"}, {"b64_json"}]


async def test_n_outputs_differ_but_share_size(client: httpx.AsyncClient) -> None:
    response = await edit(client, n=3)
    outputs = [decoded(response, i) for i in range(3)]
    assert len(set(outputs)) == 3
    assert {opened(o).size for o in outputs} == {(64, 48)}
    assert [read_provenance(o)["index"] for o in outputs] == [0, 1, 2]


async def test_output_size_follows_request_or_first_input(client: httpx.AsyncClient) -> None:
    files = [image_file(picture_png((300, 200)), "image[]"), image_file(picture_png((64, 64)), "image[]")]
    assert opened(decoded(await edit(client, files=files))).size == (300, 200)
    assert opened(decoded(await edit(client, files=files, size="1024x1536"))).size == (1024, 1536)
    big = [image_file(picture_png((4096, 1024)))]
    response = await edit(client, files=big)
    assert opened(decoded(response)).size == (2048, 512)
    assert response.json()["size"] == "2048x512"


@pytest.mark.parametrize(("fmt", "pil"), [("png", "PNG"), ("jpeg", "JPEG"), ("webp", "WEBP")])
async def test_output_format_and_provenance_in_every_format(
    client: httpx.AsyncClient, fmt: str, pil: str
) -> None:
    response = await edit(client, "warm [sunset] & <glow>", output_format=fmt)
    data = decoded(response)
    assert opened(data).format == pil
    assert response.json()["output_format"] == fmt
    assert read_provenance(data)["prompt"] == "warm [sunset] & <glow>"


async def test_transparent_background_is_rgba_with_transparent_frame(client: httpx.AsyncClient) -> None:
    response = await edit(client, background="transparent")
    assert response.json()["background"] == "transparent"
    image = opened(decoded(response))
    assert image.mode == "RGBA"
    assert image.getpixel((0, 0))[3] == 0 and image.getpixel((32, 24))[3] == 255


async def test_provenance_of_several_images_and_a_mask(client: httpx.AsyncClient) -> None:
    inputs = [picture_png(shift=0), encode(picture(shift=40), "JPEG"), picture_png((20, 20))]
    mask = hole_png(SIZE, HOLE)
    files = [
        image_file(inputs[0], "image[]", "a.png"),
        image_file(inputs[1], "image[]", "b.jpg", "image/jpeg"),
        image_file(inputs[2], "image[]", "c.png"),
        image_file(mask, "mask", "mask.png"),
    ]
    response = await edit(client, "blend them", files=files, model="gpt-image-1.5", size="1024x1024")
    assert read_provenance(decoded(response)) == {
        "provider": "openai",
        "endpoint": "edits",
        "model": "gpt-image-1.5",
        "prompt": "blend them",
        "input_sha256": [sha(d) for d in inputs],
        "mask_sha256": sha(mask),
        "size": "1024x1024",
        "index": 0,
    }


async def test_single_image_field_and_repeated_image_fields_are_equivalent(client: httpx.AsyncClient) -> None:
    data = picture_png()
    single = await edit(client, files=[image_file(data, "image")])
    bracketed = await edit(client, files=[image_file(data, "image[]")])
    assert decoded(single) == decoded(bracketed)


async def test_mask_limits_the_edit_to_transparent_pixels(client: httpx.AsyncClient) -> None:
    source = picture()
    hole = (8, 8, 32, 24)
    files = [image_file(encode(source)), image_file(hole_png(SIZE, hole), "mask", "mask.png")]
    output = opened(decoded(await edit(client, "paint a red door", files=files))).convert("RGB")
    assert output.size == source.size
    inside = outside_changed = 0
    for y in range(source.height):
        for x in range(source.width):
            same = output.getpixel((x, y)) == source.getpixel((x, y))
            if hole[0] <= x < hole[2] and hole[1] <= y < hole[3]:
                inside += not same
            else:
                outside_changed += not same
    assert outside_changed == 0
    assert inside == (hole[2] - hole[0]) * (hole[3] - hole[1])  # a 25-35 % tint changes every pixel


async def test_without_mask_the_whole_image_changes(client: httpx.AsyncClient) -> None:
    source = picture()
    output = opened(decoded(await edit(client, files=[image_file(encode(source))]))).convert("RGB")
    assert output.getpixel((0, 0)) != source.getpixel((0, 0))
    assert output.getpixel((63, 47)) != source.getpixel((63, 47))


async def test_mask_from_a_palette_png_with_transparency(client: httpx.AsyncClient) -> None:
    mask = Image.new("P", (64, 48), 1)
    mask.putpalette([0, 0, 0, 255, 255, 255])
    mask.paste(0, (0, 0, 16, 16))
    mask.info["transparency"] = 0
    files = [image_file(picture_png()), image_file(encode(mask), "mask", "mask.png")]
    output = opened(decoded(await edit(client, files=files))).convert("RGB")
    assert output.getpixel((40, 40)) == picture().getpixel((40, 40))
    assert output.getpixel((4, 4)) != picture().getpixel((4, 4))


async def test_generation_output_and_provenance(client: httpx.AsyncClient) -> None:
    response = await generate(client, {"prompt": "a lighthouse at dusk", "model": "gpt-image-2.5-flare"})
    assert response.status_code == 200
    data = decoded(response)
    assert opened(data).size == (1024, 1024)
    assert read_provenance(data) == {
        "provider": "openai",
        "endpoint": "generations",
        "model": "gpt-image-2.5-flare",
        "prompt": "a lighthouse at dusk",
        "input_sha256": [],
        "mask_sha256": None,
        "size": "1024x1024",
        "index": 0,
    }
    other = await generate(client, {"prompt": "a forest", "model": "gpt-image-2.5-flare"})
    assert decoded(other) != data


async def test_usage_formula(client: httpx.AsyncClient) -> None:
    generated = (await generate(client, {"prompt": "x" * 40, "quality": "high"})).json()["usage"]
    assert generated == {
        "input_tokens": 10,
        "input_tokens_details": {"text_tokens": 10, "image_tokens": 0},
        "output_tokens": 4160,
        "output_tokens_details": {"image_tokens": 4160, "text_tokens": 0},
        "total_tokens": 4170,
    }
    files = [image_file(picture_png((1024, 1024)), "image[]"), image_file(picture_png(), "image[]")]
    edited = (await edit(client, "abcde", files=files, quality="low", size="1024x1536", n=2)).json()["usage"]
    # text ceil(5/4)=2; images 765 (1024x1024 -> 768x768, 4 tiles) + 255 (1 tile); output 408 * 2
    assert edited["input_tokens_details"] == {"text_tokens": 2, "image_tokens": 765 + 255}
    assert edited["output_tokens"] == 816
    assert edited["total_tokens"] == 2 + 765 + 255 + 816
    default = (await generate(client)).json()
    assert (default["quality"], default["usage"]["output_tokens"]) == ("medium", 1056)


# ---------------------------------------------------------------- faults


@pytest.mark.parametrize(
    ("marker", "status", "type_", "code"),
    [
        ("429", 429, "requests", "rate_limit_exceeded"),
        ("500", 500, "server_error", None),
        ("503", 503, "server_error", None),
        ("504", 504, "server_error", None),
        ("moderation", 400, "image_generation_user_error", "moderation_blocked"),
    ],
)
async def test_error_faults(
    client: httpx.AsyncClient, marker: str, status: int, type_: str, code: str | None
) -> None:
    for response in (
        await edit(client, f"make it blue [fault:{marker}]"),
        await generate(client, {"prompt": f"[fault:openai:{marker}] a cat"}),
    ):
        assert response.status_code == status
        error = error_of(response)
        assert (error["type"], error["param"], error["code"]) == (type_, None, code)
        if marker == "429":
            assert response.headers["retry-after"] == "2"
            assert "gpt-image-2" in error["message"]
        if marker == "moderation":
            assert error["message"].startswith("Your request was rejected as a result of our safety system.")


async def test_empty_fault(client: httpx.AsyncClient) -> None:
    response = await edit(client, "[fault:empty]")
    assert response.status_code == 200
    body = response.json()
    assert body["data"] == [] and body["usage"]["output_tokens"] == 0


async def test_malformed_fault(client: httpx.AsyncClient) -> None:
    response = await generate(client, {"prompt": "[fault:malformed]"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content.startswith(b'{"created": ')
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)


async def test_truncated_b64_fault(client: httpx.AsyncClient) -> None:
    response = await edit(client, "[fault:truncated_b64]")
    assert response.status_code == 200
    data = decoded(response)  # valid base64 ...
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(OSError):  # ... of a cut-off PNG
        opened(data)


async def test_slow_fault_delays_then_answers(client: httpx.AsyncClient) -> None:
    started = time.perf_counter()
    response = await edit(client, "[fault:slow:0.2] then [fault:503]")
    assert time.perf_counter() - started >= 0.2
    assert response.status_code == 503
    started = time.perf_counter()
    assert (await generate(client, {"prompt": "[fault:slow:0.1]"})).status_code == 200
    assert time.perf_counter() - started >= 0.1


async def test_queued_fault_applies_to_openai_and_skips_invalid_requests(client: httpx.AsyncClient) -> None:
    await queue(client, "429", "500")
    assert (await edit(client, response_format="url")).status_code == 400  # invalid: not consumed
    assert (await edit(client, key=None)).status_code == 401
    assert (await edit(client)).status_code == 429
    assert (await generate(client, {"prompt": "[fault:503]"})).status_code == 500  # queue first, then marker
    assert (await generate(client, {"prompt": "[fault:503]"})).status_code == 503
    assert (await edit(client)).status_code == 200


async def test_unprefixed_shared_fault_goes_to_whichever_provider_comes_first(
    client: httpx.AsyncClient,
) -> None:
    await queue(client, "503", "503")
    assert (await edit(client)).status_code == 503
    assert (await gemini_request(client, "hi")).status_code == 503
    assert (await edit(client)).status_code == 200
    assert (await gemini_request(client, "hi")).status_code == 200


async def test_prefixed_faults_are_kept_for_their_provider(client: httpx.AsyncClient) -> None:
    response = await queue(client, "gemini:503", "fault:openai:429", "[fault:gemini:slow:0.01]")
    assert response.json() == {"faults": ["gemini:503", "openai:429", "gemini:slow:0.01"]}
    assert (await edit(client)).status_code == 429  # skips the Gemini fault ahead of it
    assert await queued(client) == ["gemini:503", "gemini:slow:0.01"]
    assert (await edit(client)).status_code == 200
    assert (await gemini_request(client, "hi")).status_code == 503
    assert (await gemini_request(client, "hi")).status_code == 200  # slow, then the normal answer
    assert await queued(client) == []


async def test_provider_only_faults_bind_to_their_provider(client: httpx.AsyncClient) -> None:
    await queue(client, "moderation", "block")
    assert (await gemini_request(client, "hi")).json()["promptFeedback"]["blockReason"] == "SAFETY"
    assert await queued(client) == ["moderation"]
    assert (await edit(client)).json()["error"]["code"] == "moderation_blocked"
    await queue(client, "image_safety")
    assert (await edit(client)).status_code == 200
    assert await queued(client) == ["image_safety"]


async def test_prefixed_markers_fail_one_provider_in_the_same_turn(client: httpx.AsyncClient) -> None:
    prompt = "make the sky purple [fault:gemini:503]"
    assert (await gemini_request(client, prompt)).status_code == 503
    fallback = await edit(client, prompt)
    assert fallback.status_code == 200
    assert read_provenance(decoded(fallback))["prompt"] == prompt
    prompt = "the other way round [fault:openai:503]"
    assert (await gemini_request(client, prompt)).status_code == 200
    assert (await edit(client, prompt)).status_code == 503
    # Gemini-only markers are ignored by OpenAI, OpenAI-only markers by Gemini.
    assert (await edit(client, "[fault:block]")).status_code == 200
    assert (await gemini_request(client, "[fault:truncated_b64]")).status_code == 200


@pytest.mark.parametrize(
    "spec", ["openai:block", "gemini:moderation", "azure:503", "openai:", "openai:gemini:503"]
)
async def test_bad_prefixed_fault_specs_are_400(client: httpx.AsyncClient, spec: str) -> None:
    assert (await queue(client, spec)).status_code == 400
    assert await queued(client) == []
    assert (await gemini_request(client, f"[fault:{spec}]")).status_code == 400


async def test_latency_applies_to_openai() -> None:
    transport = httpx.ASGITransport(app=create_app(latency_ms=120))
    async with httpx.AsyncClient(transport=transport, base_url="http://slow") as http:
        started = time.perf_counter()
        assert (await generate(http)).status_code == 200
        assert time.perf_counter() - started >= 0.12


# ---------------------------------------------------------------- request log


async def test_request_log_for_multipart_edits(client: httpx.AsyncClient) -> None:
    first, second, mask = picture_png(), picture_png(shift=9), hole_png(SIZE, HOLE)
    files = [
        image_file(first, "image[]", "one.png"),
        image_file(second, "image[]", "two.png"),
        image_file(mask, "mask", "mask.png"),
    ]
    response = await edit(client, "log me", files=files, model="gpt-image-1.5", n=1, size="1024x1024")
    (entry,) = (await client.get("/_emulator/requests")).json()
    assert entry["provider"] == "openai"
    assert entry["path"] == "/v1/images/edits"
    assert entry["model"] == "gpt-image-1.5"
    assert entry["headers"]["authorization"] == "Bearer test-key"
    assert entry["headers"]["content-type"].startswith("multipart/form-data; boundary=")
    assert entry["form"] == {"prompt": "log me", "model": "gpt-image-1.5", "n": "1", "size": "1024x1024"}
    assert entry["body"] is None
    assert entry["files"] == [
        {
            "field": "image[]",
            "filename": "one.png",
            "content_type": "image/png",
            "size": len(first),
            "sha256": sha(first),
        },
        {
            "field": "image[]",
            "filename": "two.png",
            "content_type": "image/png",
            "size": len(second),
            "sha256": sha(second),
        },
        {
            "field": "mask",
            "filename": "mask.png",
            "content_type": "image/png",
            "size": len(mask),
            "sha256": sha(mask),
        },
    ]
    assert (entry["status"], entry["request_id"]) == (200, response.headers["x-request-id"])
    assert base64.b64encode(first).decode()[:40] not in json.dumps(entry)


async def test_request_log_for_json_failures_and_both_providers(client: httpx.AsyncClient) -> None:
    await generate(client, {"prompt": "a", "model": "gpt-image-1-mini"})
    await generate(client, b"{broken")
    await edit(client, key=None)
    await gemini_request(client, "hi")
    await edit(client, "x", n=[1, 2])
    entries = (await client.get("/_emulator/requests")).json()
    assert [(e["provider"], e["status"]) for e in entries] == [
        ("openai", 200),
        ("openai", 400),
        ("openai", 401),
        ("gemini", 200),
        ("openai", 400),
    ]
    assert entries[0]["body"] == {"prompt": "a", "model": "gpt-image-1-mini"}
    assert (entries[0]["model"], entries[0]["form"], entries[0]["files"]) == ("gpt-image-1-mini", None, [])
    assert entries[1]["body"] == "{broken" and entries[1]["model"] is None
    assert "authorization" not in entries[2]["headers"] and entries[2]["form"]["prompt"] == "make it warmer"
    assert entries[3]["model"] == GEMINI and entries[3]["body"]["contents"]
    assert entries[4]["form"]["n"] == ["1", "2"]


async def test_health_lists_openai_models(client: httpx.AsyncClient) -> None:
    health = (await client.get("/_emulator/health")).json()
    assert set(health["openai_models"]) == set(MODELS)
    assert "gpt-image-1" not in health["openai_models"] and "dall-e-3" not in health["openai_models"]


# ---------------------------------------------------------------- real server


def test_session_server_serves_openai_and_shares_the_queue(
    emulator_url: str, emulator: EmulatorControl
) -> None:
    emulator.queue_faults("gemini:500", "openai:503")
    url = f"{emulator_url}/v1/images/edits"
    headers = {"authorization": "Bearer k"}
    files = [image_file(picture_png())]
    assert httpx.post(url, data={"prompt": "x"}, files=files, headers=headers).status_code == 503
    assert httpx.post(url, data={"prompt": "x"}, files=files, headers=headers).status_code == 200
    assert [(e["provider"], e["status"]) for e in emulator.requests()] == [("openai", 503), ("openai", 200)]
    gemini = httpx.post(
        f"{emulator_url}/v1beta/models/{GEMINI}:generateContent",
        json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
        headers={"x-goog-api-key": "k"},
    )
    assert gemini.status_code == 500
