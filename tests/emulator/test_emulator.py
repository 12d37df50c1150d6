"""Tests of the provider emulator itself: wire format, validation, signatures, faults, control routes.

Most tests run the app in-process through ``httpx.ASGITransport`` (a fresh app per
test, so no shared state); the few that need real sockets (timeouts, the fixture,
the CLI) use the uvicorn-backed fixtures.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.emulator import create_app, read_provenance
from tests.emulator.fixtures import EmulatorControl, run_emulator
from tests.emulator.state import StockImage
from tests.pictures import png

FLASH = "gemini-3.1-flash-image"
PRO = "gemini-3-pro-image"
LITE = "gemini-3.1-flash-lite-image"
NB21 = "gemini-nano-banana-2.1"
MISSING_SIGNATURE = "Image part is missing a thought_signature in content position 2, part position {}."


# ---------------------------------------------------------------- helpers


SIZE = (64, 48)
PHOTO = png((200, 30, 30), SIZE)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def text(value: str, **extra: Any) -> dict[str, Any]:
    return {"text": value, **extra}


def image(data: bytes, mime: str = "image/png", **extra: Any) -> dict[str, Any]:
    return {"inlineData": {"mimeType": mime, "data": b64(data)}, **extra}


def user(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "parts": list(parts)}


def request_body(
    *contents: dict[str, Any], config: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"contents": list(contents), **extra}
    if config is not None:
        body["generationConfig"] = config
    return body


def edit_request(prompt: str = "make it warmer", **config: Any) -> dict[str, Any]:
    return request_body(
        user(image(PHOTO), text(prompt)), config={"responseModalities": ["TEXT", "IMAGE"], **config}
    )


def parts_of(response: httpx.Response) -> list[dict[str, Any]]:
    return response.json()["candidates"][0]["content"]["parts"]


def output_image(response: httpx.Response) -> bytes:
    images = [p for p in parts_of(response) if "inlineData" in p and not p.get("thought")]
    return base64.b64decode(images[-1]["inlineData"]["data"])


def image_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as opened:
        return opened.size


def error_of(response: httpx.Response) -> dict[str, Any]:
    error = response.json()["error"]
    assert set(error) == {"code", "message", "status", "details"}
    assert error["code"] == response.status_code
    return error


async def generate(
    client: httpx.AsyncClient,
    body: Any,
    model: str = FLASH,
    key: str | None = "test-key",
    version: str = "v1beta",
) -> httpx.Response:
    headers = {"x-goog-api-key": key} if key else {}
    url = f"/{version}/models/{model}:generateContent"
    if isinstance(body, (bytes, str)):
        return await client.post(url, content=body, headers={**headers, "content-type": "application/json"})
    return await client.post(url, json=body, headers=headers)


def next_turn(first: dict[str, Any], response: httpx.Response, prompt: str) -> dict[str, Any]:
    """The follow-up request: history + the model content as received + a new user turn."""
    body = copy.deepcopy(first)
    body["contents"] += [response.json()["candidates"][0]["content"], user(text(prompt))]
    return body


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as http:
        yield http


# ---------------------------------------------------------------- auth and routing


async def test_missing_key_is_permission_denied(client: httpx.AsyncClient) -> None:
    response = await generate(client, edit_request(), key=None)
    assert response.status_code == 403
    error = error_of(response)
    assert error["status"] == "PERMISSION_DENIED"
    assert error["message"] == (
        "Method doesn't allow unregistered callers (callers without established identity). "
        "Please use API Key or other form of API consumer identity to call this API."
    )


async def test_key_in_query_is_accepted(client: httpx.AsyncClient) -> None:
    response = await client.post(f"/v1beta/models/{FLASH}:generateContent?key=abc", json=edit_request())
    assert response.status_code == 200


async def test_invalid_key(client: httpx.AsyncClient) -> None:
    response = await generate(client, edit_request(), key="invalid-123")
    assert response.status_code == 400
    error = error_of(response)
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["message"] == "API key not valid. Please pass a valid API key."
    assert error["details"] == [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "API_KEY_INVALID",
            "domain": "googleapis.com",
            "metadata": {"service": "generativelanguage.googleapis.com"},
        }
    ]


async def test_denied_key(client: httpx.AsyncClient) -> None:
    response = await generate(client, edit_request(), key="denied-key")
    assert response.status_code == 403
    assert error_of(response)["status"] == "PERMISSION_DENIED"


@pytest.mark.parametrize(
    "model",
    [
        "gemini-2.5-flash-image",
        "gemini-2.0-flash-exp-image-generation",
        "gemini-3-pro-image-preview",
        "gemini-3.1-flash-image-preview",
    ],
)
async def test_retired_models_are_not_found(client: httpx.AsyncClient, model: str) -> None:
    response = await generate(client, edit_request(), model=model)
    assert response.status_code == 404
    error = error_of(response)
    assert error["status"] == "NOT_FOUND"
    assert error["message"] == (
        f"models/{model} is not found for API version v1beta, or is not supported for generateContent. "
        "Call ListModels to see the list of available models and their supported methods."
    )


async def test_v1_route_works_and_names_its_version(client: httpx.AsyncClient) -> None:
    assert (await generate(client, edit_request(), version="v1")).status_code == 200
    missing = await generate(client, edit_request(), model="gemini-2.5-flash-image", version="v1")
    assert "for API version v1," in error_of(missing)["message"]


@pytest.mark.parametrize(
    ("model", "mime"), [(PRO, "image/jpeg"), (FLASH, "image/png"), (LITE, "image/png"), (NB21, "image/png")]
)
async def test_current_models_answer_with_their_mime(
    client: httpx.AsyncClient, model: str, mime: str
) -> None:
    response = await generate(client, edit_request(), model=model)
    assert response.status_code == 200
    data = response.json()
    assert data["modelVersion"] == model
    assert parts_of(response)[-1]["inlineData"]["mimeType"] == mime
    assert read_provenance(output_image(response))["model"] == model


async def test_unknown_path_and_wrong_method_use_error_envelope(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1beta/nothing-here")
    assert response.status_code == 404
    assert error_of(response)["status"] == "NOT_FOUND"
    wrong_method = await client.get(f"/v1beta/models/{FLASH}:generateContent")
    assert wrong_method.status_code == 405
    error_of(wrong_method)


async def test_every_request_line_is_received_as_sent_matched_or_not(client: httpx.AsyncClient) -> None:
    """Where a hostile model id would have steered a request: raw path and query, and the answer."""
    await generate(client, edit_request())
    await generate(client, edit_request(), model="%2e%2e%2fv1%2ffoo")
    await generate(client, edit_request(), model=f"{FLASH}:generateContent?key=x")
    await generate(client, edit_request(), model="a/b")
    await client.post("/v1/foo:generateContent", headers={"x-goog-api-key": "k"})
    assert (await client.get("/_emulator/received")).json() == [
        {"method": "POST", "target": f"/v1beta/models/{FLASH}:generateContent", "status": 200},
        {"method": "POST", "target": "/v1beta/models/%2e%2e%2fv1%2ffoo:generateContent", "status": 404},
        {
            "method": "POST",
            "target": f"/v1beta/models/{FLASH}:generateContent?key=x:generateContent",
            "status": 200,
        },
        {"method": "POST", "target": "/v1beta/models/a/b:generateContent", "status": 404},
        {"method": "POST", "target": "/v1/foo:generateContent", "status": 404},
    ]
    # Only matched generate requests are in the request log; the control routes are in neither.
    assert len((await client.get("/_emulator/requests")).json()) == 2


async def test_unknown_paths_still_answer_404_in_the_google_envelope(client: httpx.AsyncClient) -> None:
    response = await generate(client, edit_request(), model="a/b")
    assert response.status_code == 404
    assert error_of(response) == {
        "code": 404,
        "message": "Method not found: /v1beta/models/a/b:generateContent",
        "status": "NOT_FOUND",
        "details": [],
    }


async def test_received_can_be_cleared(client: httpx.AsyncClient) -> None:
    await client.get("/nothing")
    assert (await client.delete("/_emulator/received")).json() == {"cleared": 1}
    assert (await client.get("/_emulator/received")).json() == []


# ---------------------------------------------------------------- validation


def _bad(config: dict[str, Any]) -> dict[str, Any]:
    return edit_request(**config)


INVALID_REQUESTS: list[tuple[str, Any, str, str]] = [
    ("malformed-json", b'{"contents": [', FLASH, "Invalid JSON payload received"),
    ("not-an-object", b"[1, 2]", FLASH, "Expected an object"),
    ("contents-missing", {"generationConfig": {}}, FLASH, "contents is not specified"),
    ("contents-empty", {"contents": []}, FLASH, "contents is not specified"),
    ("parts-empty", {"contents": [{"role": "user", "parts": []}]}, FLASH, "must not be empty"),
    ("part-without-data", request_body(user({"thought": False})), FLASH, "required oneof field 'data'"),
    (
        "part-with-two-data",
        request_body(user({"text": "a", "inlineData": {"mimeType": "image/png", "data": b64(PHOTO)}})),
        FLASH,
        "oneof field 'data' is already set",
    ),
    ("unknown-role", request_body({"role": "assistant", "parts": [text("hi")]}), FLASH, "valid role"),
    (
        "starts-with-model",
        request_body({"role": "model", "parts": [text("hi")]}),
        FLASH,
        "starting with user",
    ),
    (
        "two-candidates",
        _bad({"candidateCount": 2}),
        FLASH,
        f"Multiple candidates is not enabled for models/{FLASH}",
    ),
    ("lowercase-size", _bad({"imageConfig": {"imageSize": "1k"}}), FLASH, "Invalid image size: 1k"),
    (
        "512-on-pro",
        _bad({"imageConfig": {"imageSize": "512"}}),
        PRO,
        "not supported by models/gemini-3-pro-image",
    ),
    ("2K-on-lite", _bad({"imageConfig": {"imageSize": "2K"}}), LITE, "Image size 2K is not supported"),
    ("bad-ratio", _bad({"imageConfig": {"aspectRatio": "7:3"}}), FLASH, "Unsupported aspect ratio: 7:3"),
    ("1:8-on-pro", _bad({"imageConfig": {"aspectRatio": "1:8"}}), PRO, "Unsupported aspect ratio: 1:8"),
    ("1:4-on-lite", _bad({"imageConfig": {"aspectRatio": "1:4"}}), LITE, "Unsupported aspect ratio: 1:4"),
    (
        "audio",
        _bad({"responseModalities": ["TEXT", "AUDIO"]}),
        FLASH,
        "does not support the requested response",
    ),
    ("video", _bad({"responseModalities": ["VIDEO"]}), FLASH, "does not support the requested response"),
    ("unknown-modality", _bad({"responseModalities": ["PICTURE"]}), FLASH, "response_modalities[0]"),
    (
        "misplaced-field",
        _bad({"aspectRatio": "1:1"}),
        FLASH,
        "Unknown name \"aspectRatio\" at 'generation_config'",
    ),
    ("unknown-top-level", {**edit_request(), "config": {}}, FLASH, 'Unknown name "config"'),
    (
        "level-and-budget",
        _bad({"thinkingConfig": {"thinkingLevel": "HIGH", "thinkingBudget": 100}}),
        FLASH,
        "only one of thinking budget and thinking level",
    ),
    (
        "duplicate-spelling",
        request_body(
            user({"inlineData": {"mimeType": "image/png", "mime_type": "image/png", "data": "aGk="}})
        ),
        FLASH,
        'Duplicate value for field "mime_type"',
    ),
    (
        "bad-safety-category",
        {**edit_request(), "safetySettings": [{"category": "HARM_CATEGORY_IMAGE_HATE", "threshold": "OFF"}]},
        FLASH,
        "HARM_CATEGORY_IMAGE_HATE",
    ),
    (
        "bad-safety-threshold",
        {
            **edit_request(),
            "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_EVERYTHING"}],
        },
        FLASH,
        "BLOCK_EVERYTHING",
    ),
    (
        "vertex-safety-method",
        {
            **edit_request(),
            "safetySettings": [
                {"category": "HARM_CATEGORY_HARASSMENT", "threshold": "OFF", "method": "SEVERITY"}
            ],
        },
        FLASH,
        'Unknown name "method"',
    ),
    (
        "pdf-input",
        request_body(user(image(b"%PDF-1.4", "application/pdf"), text("x"))),
        FLASH,
        "mimeType parameter",
    ),
    (
        "bad-base64",
        request_body(user({"inlineData": {"mimeType": "image/png", "data": "not base64!!"}}, text("x"))),
        FLASH,
        "Base64 decoding failed",
    ),
    (
        "empty-inline-data",
        request_body(user({"inlineData": {"mimeType": "image/png", "data": ""}})),
        FLASH,
        "empty",
    ),
]


@pytest.mark.parametrize(
    ("body", "model", "message"),
    [case[1:] for case in INVALID_REQUESTS],
    ids=[case[0] for case in INVALID_REQUESTS],
)
async def test_invalid_requests_are_400(
    client: httpx.AsyncClient, body: Any, model: str, message: str
) -> None:
    response = await generate(client, body, model=model)
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["status"] == "INVALID_ARGUMENT"
    assert message in error["message"]


@pytest.mark.parametrize(
    "field",
    [
        "personGeneration",
        "outputMimeType",
        "outputCompressionQuality",
        "imageOutputOptions",
        "prominentPeople",
    ],
)
async def test_vertex_only_image_config_fields_are_400(client: httpx.AsyncClient, field: str) -> None:
    response = await generate(client, edit_request(imageConfig={"aspectRatio": "1:1", field: "x"}))
    assert response.status_code == 400
    assert f'Unknown name "{field}"' in error_of(response)["message"]


@pytest.mark.parametrize(
    ("data", "mime"),
    [
        (b"\x89PNG\r\n\x1a\n garbage", "image/png"),
        (PHOTO[:60], "image/png"),
        (b"\xff\xd8\xff\xe0 nope", "image/jpeg"),
    ],
)
async def test_undecodable_image_is_400(client: httpx.AsyncClient, data: bytes, mime: str) -> None:
    response = await generate(client, request_body(user(image(data, mime), text("edit"))))
    assert response.status_code == 400
    assert error_of(response)["message"] == (
        "Unable to process input image. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting"
    )


@pytest.mark.parametrize(
    ("model", "config"),
    [
        (FLASH, {"imageConfig": {"imageSize": "512", "aspectRatio": "1:8"}}),
        (NB21, {"imageConfig": {"imageSize": "4K", "aspectRatio": "4:1"}}),
        (LITE, {"imageConfig": {"imageSize": "1K", "aspectRatio": "21:9"}}),
        (PRO, {"imageConfig": {"imageSize": "2K"}, "responseModalities": ["Text", "Image"]}),
        (FLASH, {"thinkingConfig": {"thinkingLevel": "HIGH", "includeThoughts": False}}),
        (FLASH, {"candidateCount": 1}),
    ],
)
async def test_valid_configs_are_accepted(
    client: httpx.AsyncClient, model: str, config: dict[str, Any]
) -> None:
    response = await generate(client, edit_request(**config), model=model)
    assert response.status_code == 200, response.text


async def test_all_developer_safety_settings_are_accepted(client: httpx.AsyncClient) -> None:
    categories = ["HARASSMENT", "HATE_SPEECH", "SEXUALLY_EXPLICIT", "DANGEROUS_CONTENT"]
    thresholds = ["BLOCK_LOW_AND_ABOVE", "BLOCK_MEDIUM_AND_ABOVE", "BLOCK_ONLY_HIGH", "BLOCK_NONE", "OFF"]
    settings = [
        {"category": f"HARM_CATEGORY_{c}", "threshold": thresholds[i % len(thresholds)]}
        for i, c in enumerate(categories)
    ]
    response = await generate(client, {**edit_request(), "safetySettings": settings})
    assert response.status_code == 200


# ---------------------------------------------------------------- casing and base64


async def test_snake_case_and_url_safe_base64_give_the_same_answer(client: httpx.AsyncClient) -> None:
    data = png((250, 251, 252), (90, 70))
    camel_body = {
        "systemInstruction": {"parts": [{"text": "You edit photos."}]},
        "contents": [user(image(data), text("brighten"))],
        "generationConfig": {
            "responseModalities": ["TEXT", "IMAGE"],
            "imageConfig": {"aspectRatio": "4:3", "imageSize": "1K"},
            "thinkingConfig": {"includeThoughts": True, "thinkingLevel": "HIGH"},
            "candidateCount": 1,
        },
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
    }
    snake_body = {
        "system_instruction": {"parts": [{"text": "You edit photos."}]},
        "contents": [
            {
                "role": "user",
                "parts": [
                    {
                        "inline_data": {
                            "mime_type": "image/png",
                            "data": base64.urlsafe_b64encode(data).decode().rstrip("="),
                        }
                    },
                    {"text": "brighten"},
                ],
            }
        ],
        "generation_config": {
            "response_modalities": ["text", "image"],
            "image_config": {"aspect_ratio": "4:3", "image_size": "1K"},
            "thinking_config": {"include_thoughts": True, "thinking_level": "HIGH"},
            "candidate_count": 1,
        },
        "safety_settings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
    }
    camel = await generate(client, camel_body)
    snake = await generate(client, snake_body)
    assert camel.status_code == snake.status_code == 200
    assert parts_of(camel) == parts_of(snake)
    assert parts_of(camel)[0]["thought"] is True
    assert image_size(output_image(camel)) == (1184, 880)


async def test_sdk_style_mixed_casing_is_accepted(client: httpx.AsyncClient) -> None:
    body = {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {
                        "inlineData": {
                            "mime_type": "image/png",
                            "data": base64.urlsafe_b64encode(PHOTO).decode(),
                        }
                    }
                ],
            }
        ],
        "generationConfig": {"thinkingConfig": {"include_thoughts": True}},
    }
    assert (await generate(client, body)).status_code == 200


# ---------------------------------------------------------------- output


async def test_same_request_gives_identical_bytes(client: httpx.AsyncClient) -> None:
    first = await generate(client, edit_request("make the sky purple"))
    second = await generate(client, edit_request("make the sky purple"))
    assert first.content == second.content
    other = await generate(client, edit_request("make the sky green"))
    assert output_image(other) != output_image(first)
    assert other.json()["responseId"] != first.json()["responseId"]


async def test_output_pixels_follow_the_prompt(client: httpx.AsyncClient) -> None:
    one = Image.open(io.BytesIO(output_image(await generate(client, edit_request("a")))))
    two = Image.open(io.BytesIO(output_image(await generate(client, edit_request("b")))))
    assert one.size == two.size == (64, 48)
    assert one.getpixel((0, 0)) != two.getpixel((0, 0))


async def test_provenance_describes_the_inputs(client: httpx.AsyncClient) -> None:
    import hashlib

    first_input, second_input = png((1, 2, 3), SIZE), png((4, 5, 6), SIZE)
    body = request_body(user(image(first_input), image(second_input), text("merge them")))
    response = await generate(client, body)
    assert read_provenance(output_image(response)) == {
        "model": FLASH,
        "prompt": "merge them",
        "contents": 1,
        "input_sha256": [hashlib.sha256(first_input).hexdigest(), hashlib.sha256(second_input).hexdigest()],
    }
    pro = await generate(client, body, model=PRO)
    jpeg = output_image(pro)
    assert jpeg.startswith(b"\xff\xd8")
    assert read_provenance(jpeg)["model"] == PRO


async def test_heic_input_is_accepted_but_not_used_as_base(client: httpx.AsyncClient) -> None:
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(32)
    response = await generate(client, request_body(user(image(heic, "image/heic"), text("brighter"))))
    assert response.status_code == 200
    data = output_image(response)
    assert image_size(data) == (1024, 1024)
    assert len(read_provenance(data)["input_sha256"]) == 1


async def test_no_input_image_synthesizes_a_square(client: httpx.AsyncClient) -> None:
    response = await generate(client, request_body(user(text("a red fox"))))
    data = output_image(response)
    assert image_size(data) == (1024, 1024)
    assert read_provenance(data)["input_sha256"] == []
    assert parts_of(response)[0]["text"] == "Here is the generated image."


@pytest.mark.parametrize(
    ("image_config", "input_size", "expected"),
    [
        ({"aspectRatio": "1:1"}, (64, 48), (1024, 1024)),
        ({"aspectRatio": "16:9", "imageSize": "2K"}, (64, 48), (2736, 1536)),
        ({"aspectRatio": "16:9"}, (64, 48), (1360, 768)),
        ({"imageSize": "512", "aspectRatio": "1:1"}, (64, 48), (512, 512)),
        ({"imageSize": "1K"}, (300, 300), (1024, 1024)),
        (None, (300, 200), (300, 200)),
        (None, (3000, 1500), (2048, 1024)),
    ],
)
async def test_output_size(
    client: httpx.AsyncClient,
    image_config: dict[str, str] | None,
    input_size: tuple[int, int],
    expected: tuple[int, int],
) -> None:
    config = {"imageConfig": image_config} if image_config else {}
    body = request_body(user(image(png(size=input_size)), text("resize")), config=config)
    assert image_size(output_image(await generate(client, body))) == expected


async def test_1k_edit_is_fast(client: httpx.AsyncClient) -> None:
    body = request_body(user(image(png(size=(1024, 1024))), text("fast")))
    await generate(client, body)  # warm-up
    started = time.perf_counter()
    assert (await generate(client, body)).status_code == 200
    assert time.perf_counter() - started < 0.5  # well under 200 ms in practice; loose for slow CI


async def test_parts_and_signatures_of_a_normal_answer(client: httpx.AsyncClient) -> None:
    response = await generate(client, edit_request())
    data = response.json()
    candidate = data["candidates"][0]
    assert candidate["finishReason"] == "STOP"
    assert candidate["index"] == 0
    assert candidate["content"]["role"] == "model"
    text_part, image_part = candidate["content"]["parts"]
    assert text_part["text"] == "Here is the edited image." and text_part["thoughtSignature"]
    assert image_part["thoughtSignature"]
    assert image_part["inlineData"]["mimeType"] == "image/png"
    assert data["modelVersion"] == FLASH and data["responseId"]


async def test_image_only_modality_has_no_text(client: httpx.AsyncClient) -> None:
    parts = parts_of(await generate(client, edit_request(responseModalities=["IMAGE"])))
    assert len(parts) == 1
    assert "inlineData" in parts[0] and parts[0]["thoughtSignature"]


async def test_include_thoughts_adds_unsigned_thought_parts(client: httpx.AsyncClient) -> None:
    config = {"thinkingConfig": {"includeThoughts": True}}
    flash = parts_of(await generate(client, edit_request(**config)))
    assert flash[0]["thought"] is True and "thoughtSignature" not in flash[0]
    assert [("thought" in p, "inlineData" in p) for p in flash] == [
        (True, False),
        (False, False),
        (False, True),
    ]
    pro = parts_of(await generate(client, edit_request(**config), model=PRO))
    assert pro[1]["thought"] is True and pro[1]["inlineData"]["mimeType"] == "image/jpeg"
    assert "thoughtSignature" not in pro[1]
    assert len(pro) == 4


@pytest.mark.parametrize(
    ("model", "size", "image_tokens"),
    [
        (FLASH, "512", 747),
        (FLASH, "1K", 1120),
        (FLASH, "2K", 1680),
        (FLASH, "4K", 2520),
        (PRO, "2K", 1120),
        (PRO, "4K", 2000),
    ],
)
async def test_usage_metadata(client: httpx.AsyncClient, model: str, size: str, image_tokens: int) -> None:
    body = request_body(
        user(image(PHOTO), image(png((0, 0, 0), SIZE)), text("x" * 40)),
        config={"imageConfig": {"imageSize": size}},
    )
    usage = (await generate(client, body, model=model)).json()["usageMetadata"]
    assert usage["promptTokenCount"] == 10 + 2 * 1120
    assert usage["promptTokensDetails"] == [
        {"modality": "TEXT", "tokenCount": 10},
        {"modality": "IMAGE", "tokenCount": 2240},
    ]
    text_tokens = len("Here is the edited image.") // 4 + 1
    assert usage["candidatesTokensDetails"] == [
        {"modality": "TEXT", "tokenCount": text_tokens},
        {"modality": "IMAGE", "tokenCount": image_tokens},
    ]
    assert usage["candidatesTokenCount"] == text_tokens + image_tokens
    assert usage["totalTokenCount"] == (
        usage["promptTokenCount"] + usage["candidatesTokenCount"] + usage["thoughtsTokenCount"]
    )


# ---------------------------------------------------------------- thought signatures


@pytest.mark.parametrize("model", [FLASH, PRO, LITE, NB21])
async def test_signature_round_trip_is_accepted(client: httpx.AsyncClient, model: str) -> None:
    first = edit_request(thinkingConfig={"includeThoughts": True})
    reply = await generate(client, first, model=model)
    second = next_turn(first, reply, "now add a hat")
    answer = await generate(client, second, model=model)
    assert answer.status_code == 200, answer.text
    third = next_turn(second, answer, "and a scarf")
    final = await generate(client, third, model=model)
    assert final.status_code == 200, final.text
    provenance = read_provenance(output_image(final))
    assert provenance["contents"] == 5
    assert provenance["prompt"] == "and a scarf"


async def test_signatures_survive_a_restart_with_the_same_secret() -> None:
    first = edit_request()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app()), base_url="http://a") as one:
        reply = await generate(one, first)
    body = next_turn(first, reply, "again")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app()), base_url="http://b") as two:
        assert (await generate(two, body)).status_code == 200
    other_secret = httpx.ASGITransport(app=create_app(secret=b"another secret"))
    async with httpx.AsyncClient(transport=other_secret, base_url="http://c") as three:
        response = await generate(three, body)
        assert response.status_code == 400
        assert error_of(response)["message"].startswith("Thought signature is not valid")


def _drop(body: dict[str, Any], content: int, part: int) -> dict[str, Any]:
    body = copy.deepcopy(body)
    del body["contents"][content]["parts"][part]["thoughtSignature"]
    return body


async def test_dropped_image_signature_is_400_with_positions(client: httpx.AsyncClient) -> None:
    first = edit_request()
    body = next_turn(first, await generate(client, first), "again")
    response = await generate(client, _drop(body, 1, 1))
    assert response.status_code == 400
    error = error_of(response)
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["message"] == MISSING_SIGNATURE.format(2)


async def test_image_only_answer_reports_part_position_1(client: httpx.AsyncClient) -> None:
    first = edit_request(responseModalities=["IMAGE"])
    body = next_turn(first, await generate(client, first), "again")
    response = await generate(client, _drop(body, 1, 0))
    assert error_of(response)["message"] == MISSING_SIGNATURE.format(1)


async def test_dropped_text_signature_is_400(client: httpx.AsyncClient) -> None:
    first = edit_request()
    body = next_turn(first, await generate(client, first), "again")
    response = await generate(client, _drop(body, 1, 0))
    assert error_of(response)["message"] == (
        "Text part is missing a thought_signature in content position 2, part position 1."
    )


async def test_later_turns_are_checked_too(client: httpx.AsyncClient) -> None:
    first = edit_request(thinkingConfig={"includeThoughts": True})
    second = next_turn(first, await generate(client, first), "b")
    third = next_turn(second, await generate(client, second), "c")
    response = await generate(client, _drop(third, 3, 2))  # thought, text, image
    assert error_of(response)["message"] == (
        "Image part is missing a thought_signature in content position 4, part position 3."
    )


async def test_thought_parts_need_no_signature_but_first_real_part_does(client: httpx.AsyncClient) -> None:
    first = edit_request(thinkingConfig={"includeThoughts": True})
    body = next_turn(first, await generate(client, first, model=PRO), "again")
    model_parts = body["contents"][1]["parts"]
    assert [p.get("thought", False) for p in model_parts] == [True, True, False, False]
    assert (await generate(client, body, model=PRO)).status_code == 200
    response = await generate(client, _drop(body, 1, 2), model=PRO)
    assert error_of(response)["message"] == (
        "Text part is missing a thought_signature in content position 2, part position 3."
    )


async def test_swapped_signatures_are_not_valid(client: httpx.AsyncClient) -> None:
    first = edit_request()
    body = next_turn(first, await generate(client, first), "again")
    text_part, image_part = body["contents"][1]["parts"]
    text_part["thoughtSignature"], image_part["thoughtSignature"] = (
        image_part["thoughtSignature"],
        text_part["thoughtSignature"],
    )
    response = await generate(client, body)
    assert response.status_code == 400
    assert (
        error_of(response)["message"]
        == "Thought signature is not valid in content position 2, part position 1."
    )


async def test_signature_on_a_different_image_is_not_valid(client: httpx.AsyncClient) -> None:
    first = edit_request()
    body = next_turn(first, await generate(client, first), "again")
    body["contents"][1]["parts"][1]["inlineData"]["data"] = b64(png((9, 9, 9), SIZE))
    response = await generate(client, body)
    assert (
        error_of(response)["message"]
        == "Thought signature is not valid in content position 2, part position 2."
    )


@pytest.mark.parametrize("mutate", ["flip", "truncate", "garbage"])
async def test_tampered_signature_is_not_valid(client: httpx.AsyncClient, mutate: str) -> None:
    first = edit_request()
    body = next_turn(first, await generate(client, first), "again")
    part = body["contents"][1]["parts"][1]
    raw = bytearray(base64.b64decode(part["thoughtSignature"]))
    if mutate == "flip":
        raw[10] ^= 0xFF
    elif mutate == "truncate":
        raw = raw[:-1]
    part["thoughtSignature"] = "%%%" if mutate == "garbage" else b64(bytes(raw))
    response = await generate(client, body)
    assert response.status_code == 400
    assert error_of(response)["message"].startswith("Thought signature is not valid")


async def test_signature_from_another_model_family_is_not_valid(client: httpx.AsyncClient) -> None:
    first = edit_request()
    body = next_turn(first, await generate(client, first, model=FLASH), "again")
    response = await generate(client, body, model=PRO)
    assert error_of(response)["message"].startswith("Thought signature is not valid")


@pytest.mark.parametrize(
    "dummy",
    [
        "skip_thought_signature_validator",
        "context_engineering_is_the_way_to_go",
        b64(b"skip_thought_signature_validator"),
        b64(b"context_engineering_is_the_way_to_go"),
    ],
)
async def test_dummy_signatures_work_for_text_only(client: httpx.AsyncClient, dummy: str) -> None:
    first = edit_request()
    body = next_turn(first, await generate(client, first), "again")
    body["contents"][1]["parts"][0]["thoughtSignature"] = dummy
    assert (await generate(client, body)).status_code == 200
    body["contents"][1]["parts"][1]["thoughtSignature"] = dummy
    response = await generate(client, body)
    assert (
        error_of(response)["message"]
        == "Thought signature is not valid in content position 2, part position 2."
    )


async def test_hand_built_history_without_signatures_is_rejected(client: httpx.AsyncClient) -> None:
    body = request_body(
        user(text("draw a cat")),
        {"role": "model", "parts": [image(PHOTO)]},
        user(text("make it blue")),
    )
    response = await generate(client, body)
    assert error_of(response)["message"] == MISSING_SIGNATURE.format(1)


# ---------------------------------------------------------------- faults


@pytest.mark.parametrize(
    ("marker", "status", "grpc_status"),
    [
        ("429", 429, "RESOURCE_EXHAUSTED"),
        ("500", 500, "INTERNAL"),
        ("503", 503, "UNAVAILABLE"),
        ("504", 504, "DEADLINE_EXCEEDED"),
    ],
)
async def test_http_fault_markers(
    client: httpx.AsyncClient, marker: str, status: int, grpc_status: str
) -> None:
    response = await generate(client, edit_request(f"make it blue [fault:{marker}]"))
    assert response.status_code == status
    error = error_of(response)
    assert error["status"] == grpc_status
    if marker == "503":
        assert error["message"] == "The model is overloaded. Please try again later."
    if marker == "429":
        types = [d["@type"] for d in error["details"]]
        assert "type.googleapis.com/google.rpc.QuotaFailure" in types
        assert {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2s"} in error["details"]


async def test_block_fault(client: httpx.AsyncClient) -> None:
    data = (await generate(client, edit_request("[fault:block]"))).json()
    assert "candidates" not in data
    assert data["promptFeedback"]["blockReason"] == "SAFETY"
    assert data["promptFeedback"]["safetyRatings"]


async def test_image_safety_fault(client: httpx.AsyncClient) -> None:
    (candidate,) = (await generate(client, edit_request("[fault:image_safety]"))).json()["candidates"]
    assert candidate["finishReason"] == "IMAGE_SAFETY"
    assert "content" not in candidate


async def test_no_image_fault(client: httpx.AsyncClient) -> None:
    (candidate,) = (await generate(client, edit_request("[fault:no_image]"))).json()["candidates"]
    assert candidate["finishReason"] == "NO_IMAGE"
    assert candidate["content"].get("parts", []) == []


async def test_text_only_fault(client: httpx.AsyncClient) -> None:
    first = edit_request("[fault:text_only] draw")
    reply = await generate(client, first)
    (candidate,) = reply.json()["candidates"]
    assert candidate["finishReason"] == "STOP"
    (part,) = candidate["content"]["parts"]
    assert part["text"].startswith("I can't generate that image") and part["thoughtSignature"]
    assert (await generate(client, next_turn(first, reply, "try again"))).status_code == 200


async def test_empty_fault(client: httpx.AsyncClient) -> None:
    data = (await generate(client, edit_request("[fault:empty]"))).json()
    assert data["candidates"] == [{"index": 0}]


async def test_malformed_fault(client: httpx.AsyncClient) -> None:
    response = await generate(client, edit_request("[fault:malformed]"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)


async def test_slow_fault_delays_then_answers(client: httpx.AsyncClient) -> None:
    started = time.perf_counter()
    response = await generate(client, edit_request("[fault:slow:0.2] and then fail [fault:503]"))
    assert time.perf_counter() - started >= 0.2
    assert response.status_code == 503


async def test_unknown_marker_is_400(client: httpx.AsyncClient) -> None:
    response = await generate(client, edit_request("[fault:explode]"))
    assert response.status_code == 400
    assert "explode" in error_of(response)["message"]


async def test_marker_in_older_turn_is_ignored(client: httpx.AsyncClient) -> None:
    first = edit_request("[fault:text_only]")
    body = next_turn(first, await generate(client, first), "normal now")
    assert len(parts_of(await generate(client, body))) == 2


async def test_fault_queue_is_fifo_and_skips_invalid_requests(client: httpx.AsyncClient) -> None:
    queued = await client.post("/_emulator/faults", json={"faults": ["503", "fault:429", "[fault:no_image]"]})
    assert queued.json() == {"faults": ["503", "429", "no_image"]}
    assert (await generate(client, edit_request(candidateCount=3))).status_code == 400  # not consumed
    assert (await generate(client, edit_request())).status_code == 503
    assert (await generate(client, edit_request())).status_code == 429
    assert (await client.get("/_emulator/faults")).json() == {"faults": ["no_image"]}
    assert (await client.delete("/_emulator/faults")).json() == {"cleared": 1}
    assert (await generate(client, edit_request())).status_code == 200


async def test_queued_fault_wins_over_marker(client: httpx.AsyncClient) -> None:
    await client.post("/_emulator/faults", json={"faults": ["500"]})
    assert (await generate(client, edit_request("[fault:503]"))).status_code == 500
    assert (await generate(client, edit_request("[fault:503]"))).status_code == 503


@pytest.mark.parametrize(
    "payload", [{"faults": ["boom"]}, {"faults": "503"}, {"nope": []}, {"faults": ["slow:x"]}]
)
async def test_bad_fault_queue_requests(client: httpx.AsyncClient, payload: dict[str, Any]) -> None:
    response = await client.post("/_emulator/faults", json=payload)
    assert response.status_code == 400
    assert (await client.get("/_emulator/faults")).json() == {"faults": []}


async def test_latency_setting() -> None:
    transport = httpx.ASGITransport(app=create_app(latency_ms=120))
    async with httpx.AsyncClient(transport=transport, base_url="http://slow") as http:
        started = time.perf_counter()
        assert (await generate(http, edit_request())).status_code == 200
        assert time.perf_counter() - started >= 0.12
        assert (await http.get("/_emulator/health")).json()["latency_ms"] == 120


async def test_stock_answers_are_served_in_turn_and_replay_like_rendered_ones() -> None:
    """Benchmarks answer with ready images: no rendering on the app's CPU, signatures still valid."""
    stock = (
        StockImage("image/png", png((255, 0, 0), (48, 32))),
        StockImage("image/png", png((0, 0, 255), (48, 32))),
    )
    transport = httpx.ASGITransport(app=create_app(stock=stock))
    async with httpx.AsyncClient(transport=transport, base_url="http://stock") as http:
        first = parts_of(await generate(http, edit_request("one")))
        second = parts_of(await generate(http, edit_request("two")))
        third = parts_of(await generate(http, edit_request("three")))
        served = [base64.b64decode(p[-1]["inlineData"]["data"]) for p in (first, second, third)]
        assert served == [stock[0].data, stock[1].data, stock[0].data]
        replay = request_body(
            user(image(PHOTO), text("one")),
            {"role": "model", "parts": first},
            user(text("now bluer")),
            config={"responseModalities": ["TEXT", "IMAGE"]},
        )
        assert (await generate(http, replay)).status_code == 200


# ---------------------------------------------------------------- request log


async def test_request_log(client: httpx.AsyncClient) -> None:
    await client.post(
        f"/v1beta/models/{FLASH}:generateContent?key=q-key",
        json=edit_request("one"),
        headers={"X-Custom": "A"},
    )
    await generate(client, b"{broken", model=PRO)
    await generate(client, edit_request(), model="gemini-2.5-flash-image", key=None)
    entries = (await client.get("/_emulator/requests")).json()
    assert [(e["model"], e["status"]) for e in entries] == [
        (FLASH, 200),
        (PRO, 400),
        ("gemini-2.5-flash-image", 403),
    ]
    first = entries[0]
    assert first["path"] == f"/v1beta/models/{FLASH}:generateContent"
    assert first["query"] == {"key": "q-key"}
    assert first["headers"]["x-custom"] == "A"
    assert first["body"]["contents"][0]["parts"][1] == {"text": "one"}
    assert entries[1]["body"] == "{broken"
    assert (await client.delete("/_emulator/requests")).json() == {"cleared": 3}
    assert (await client.get("/_emulator/requests")).json() == []


async def test_request_log_keeps_the_newest_200(client: httpx.AsyncClient) -> None:
    for i in range(205):
        await generate(client, {"n": i}, model="gone")
    entries = (await client.get("/_emulator/requests")).json()
    assert len(entries) == 200
    assert entries[0]["body"] == {"n": 5} and entries[-1]["body"] == {"n": 204}


async def test_health(client: httpx.AsyncClient) -> None:
    health = (await client.get("/_emulator/health")).json()
    assert health["status"] == "ok"
    assert set(health["models"]) == {FLASH, PRO, LITE, NB21}


# ---------------------------------------------------------------- real server: fixtures and CLI


def test_session_fixture_serves_over_http(emulator_url: str, emulator: EmulatorControl) -> None:
    assert emulator_url.startswith("http://127.0.0.1:") and not emulator_url.endswith("/")
    response = httpx.post(
        f"{emulator_url}/v1beta/models/{FLASH}:generateContent",
        json=edit_request(),
        headers={"x-goog-api-key": "k"},
    )
    assert response.status_code == 200
    (entry,) = emulator.requests()
    assert entry["headers"]["x-goog-api-key"] == "k"
    emulator.queue_faults("503")
    assert (
        httpx.post(response.request.url, json=edit_request(), headers={"x-goog-api-key": "k"}).status_code
        == 503
    )


def test_slow_fault_triggers_client_timeouts(emulator_url: str, emulator: EmulatorControl) -> None:
    emulator.queue_faults("slow:0.5")
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{emulator_url}/v1beta/models/{FLASH}:generateContent",
            json=edit_request(),
            headers={"x-goog-api-key": "k"},
            timeout=0.1,
        )


def test_received_over_a_real_socket_keeps_the_raw_target(
    emulator_url: str, emulator: EmulatorControl
) -> None:
    headers = {"x-goog-api-key": "k"}
    httpx.post(f"{emulator_url}/v1beta/models/%2e%2e%2fv1%2ffoo:generateContent", json={}, headers=headers)
    httpx.post(f"{emulator_url}/v1beta/models/{FLASH}:generateContent?key=x", json=edit_request())
    assert emulator.received() == [
        {"method": "POST", "target": "/v1beta/models/%2e%2e%2fv1%2ffoo:generateContent", "status": 404},
        {"method": "POST", "target": f"/v1beta/models/{FLASH}:generateContent?key=x", "status": 200},
    ]
    emulator.reset()
    assert emulator.received() == []


def test_run_emulator_has_its_own_state(emulator_url: str, emulator: EmulatorControl) -> None:
    emulator.queue_faults("500")
    with run_emulator(latency_ms=0) as url:
        assert url != emulator_url
        response = httpx.post(
            f"{url}/v1beta/models/{FLASH}:generateContent",
            json=edit_request(),
            headers={"x-goog-api-key": "k"},
        )
        assert response.status_code == 200
        assert len(EmulatorControl(url).requests()) == 1
    assert emulator.requests() == []


def test_cli_prints_its_url_and_serves() -> None:
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.emulator", "--port", "0"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith(
            "Provider emulator (Gemini, OpenAI Images at /v1) listening on http://127.0.0.1:"
        )
        url = line.rsplit(" ", 1)[-1]
        # The socket already listens when the line is printed, so no waiting is needed.
        assert httpx.get(f"{url}/_emulator/health", timeout=10).json()["status"] == "ok"
    finally:
        process.terminate()
        process.wait(timeout=10)
