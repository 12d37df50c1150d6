"""OpenAIImagesClient's stream over httpx.MockTransport: the form, drafts as progress, the answer,
errors in and before the stream, the fallback for a model that refuses to stream, variants."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from pydantic import SecretStr

from chat.domain import GenerationOptions, OpenAIOptions, Phase, Progress
from chat.errors import BadRequestError, BlockedError, RateLimitedError, UnavailableError
from chat.providers.openai import OpenAIImagesClient
from chat.providers.openai.prices import OPENAI_PRICE, PARTIAL_IMAGE_TOKENS
from chat.providers.openai.stream import _payload
from tests.chat.providers.test_openai_client import EDIT_HISTORY, OPTIONS, TEXT_ONLY, load, multipart

USAGE = {
    "input_tokens": 50,
    "input_tokens_details": {"text_tokens": 10, "image_tokens": 40},
    "output_tokens": 1000,
}
FINAL = b"final image"


def event(payload: dict[str, object]) -> bytes:
    return f"event: {payload['type']}\ndata: {json.dumps(payload)}\n\n".encode()


def partial(index: int, prefix: str = "image_edit") -> bytes:
    data = base64.b64encode(f"draft {index}".encode()).decode()
    return event(
        {
            "type": f"{prefix}.partial_image",
            "b64_json": data,
            "partial_image_index": index,
            "output_format": "png",
        }
    )


def completed(prefix: str = "image_edit") -> bytes:
    data = base64.b64encode(FINAL).decode()
    return event({"type": f"{prefix}.completed", "b64_json": data, "output_format": "png", "usage": USAGE})


def streaming(*chunks: bytes, status: int = 200, seen: list[httpx.Request] | None = None):
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return httpx.Response(status, content=b"".join(chunks), headers={"content-type": "text/event-stream"})

    return handler


def client(handler, **kwargs) -> OpenAIImagesClient:
    http = httpx.Client(transport=httpx.MockTransport(handler))
    return OpenAIImagesClient(http, api_key=SecretStr("sk-test-123"), base_url="https://oa.test/v1", **kwargs)


async def test_a_streamed_edit_shows_drafts_and_answers_with_the_completed_image() -> None:
    seen: list[httpx.Request] = []
    shown: list[Progress] = []
    reply = await client(streaming(partial(0), partial(1), completed(), seen=seen)).reply(
        EDIT_HISTORY, OPTIONS, load, progress=shown.append
    )
    fields = {name: body for name, _, _, body in multipart(seen[0])}
    assert (fields["stream"], fields["partial_images"], fields["n"]) == (b"true", b"2", b"1")
    assert [(p.phase, [d.data for d in p.drafts], p.drafts_expected) for p in shown] == [
        (Phase.WAITING, [], None),
        (Phase.DRAFT, [b"draft 0"], 2),
        (Phase.DRAFT, [b"draft 0", b"draft 1"], 2),
        (Phase.FINAL, [b"draft 0", b"draft 1"], 2),
    ]
    assert reply.final_image().data == FINAL and len(reply.parts) == 1
    image_out = 1000 + 2 * PARTIAL_IMAGE_TOKENS
    assert (reply.usage.input_tokens, reply.usage.image_tokens) == (50, image_out)
    assert reply.usage.cost_usd == pytest.approx(
        OPENAI_PRICE.cost(text_in=10, image_in=40, image_out=image_out)
    )


async def test_streamed_and_plain_answers_store_the_same_image() -> None:
    plain_body = {
        "data": [{"b64_json": base64.b64encode(FINAL).decode()}],
        "output_format": "png",
        "usage": USAGE,
    }
    plain = await client(lambda _r: httpx.Response(200, json=plain_body), stream=False).reply(
        EDIT_HISTORY, OPTIONS, load
    )
    streamed = await client(streaming(completed())).reply(EDIT_HISTORY, OPTIONS, load)  # no draft came
    assert (streamed.parts, streamed.model, streamed.usage) == (plain.parts, plain.model, plain.usage)


async def test_a_generation_streams_as_json() -> None:
    seen: list[httpx.Request] = []
    reply = await client(
        streaming(partial(0, "image_generation"), completed("image_generation"), seen=seen), partial_images=3
    ).reply(TEXT_ONLY, OPTIONS, load)
    body = json.loads(seen[0].content)
    assert (body["stream"], body["partial_images"], seen[0].url.path) == (True, 3, "/v1/images/generations")
    assert reply.final_image().data == FINAL
    assert reply.usage.image_tokens == 1000 + PARTIAL_IMAGE_TOKENS  # one draft came, one is billed


@pytest.mark.parametrize(
    ("model", "kwargs"),
    [
        ("chatgpt-image-latest", {}),  # the catalogue says it does not stream
        ("gpt-image-from-the-future", {}),  # an id nobody knows: not streamed
        ("gpt-image-2", {"stream": False}),  # RETOUCH_STREAMING off
        ("gpt-image-2", {"partial_images": 0}),  # no drafts asked for: nothing to stream
    ],
)
async def test_no_stream_is_asked_for_when_it_should_not_be(model: str, kwargs: dict[str, object]) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"data": [{"b64_json": "aW1n"}]})

    options = GenerationOptions(model="gemini-3.1-flash-image", openai=OpenAIOptions(model=model))
    await client(handler, **kwargs).reply(EDIT_HISTORY, options, load)
    fields = {name for name, _, _, _ in multipart(seen[0])}
    assert not fields & {"stream", "partial_images"}


async def test_a_model_that_refuses_the_stream_is_asked_again_plainly_and_remembered() -> None:
    seen: list[httpx.Request] = []
    refusal = {"error": {"message": "stream is not supported for this model.", "type": "invalid_request_error",
                         "param": "stream", "code": "unsupported_parameter"}}  # fmt: skip

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if b'name="stream"' in request.read():
            return httpx.Response(400, json=refusal)
        return httpx.Response(200, json={"data": [{"b64_json": "aW1n"}], "usage": USAGE})

    provider = client(handler)
    shown: list[Progress] = []
    first = await provider.reply(EDIT_HISTORY, OPTIONS, load, progress=shown.append)
    assert first.final_image().data == b"img" and first.usage.image_tokens == 1000  # no draft, none billed
    assert [p.phase for p in shown] == [Phase.WAITING, Phase.FINAL]
    await provider.reply(EDIT_HISTORY, OPTIONS, load)
    streamed = ["stream" in {name for name, _, _, _ in multipart(r)} for r in seen]
    assert streamed == [True, False, False]  # the second turn does not ask for the stream again
    assert provider.worst_case_cost(OPTIONS, input_images=1) < client(handler).worst_case_cost(
        OPTIONS, input_images=1
    )


async def test_another_400_is_not_a_refusal_of_the_stream() -> None:
    body = {
        "error": {"message": "Invalid size", "type": "invalid_request_error", "param": "size", "code": None}
    }
    seen: list[httpx.Request] = []
    with pytest.raises(BadRequestError, match="Invalid size"):
        await client(streaming(json.dumps(body).encode(), status=400, seen=seen)).reply(
            EDIT_HISTORY, OPTIONS, load
        )
    assert len(seen) == 1


async def test_an_error_before_the_stream_is_mapped_as_a_response_is_and_hides_the_key() -> None:
    body = {"error": {"message": "Slow down, sk-test-123", "type": "requests", "code": "rate_limit_exceeded"}}

    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, json=body, headers={"retry-after": "3"})

    with pytest.raises(RateLimitedError) as caught:
        await client(handler).reply(EDIT_HISTORY, OPTIONS, load)
    assert caught.value.retry_after == 3 and "sk-test-123" not in str(caught.value)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ({"type": "server_error", "message": "The server had an error"}, UnavailableError),
        (
            {"type": "image_generation_user_error", "code": "moderation_blocked", "message": "safety system"},
            BlockedError,
        ),
        ({"type": "invalid_request_error", "param": "prompt", "message": "bad prompt"}, BadRequestError),
        (
            {"type": "tokens", "code": "rate_limit_exceeded", "message": "Rate limit reached"},
            RateLimitedError,
        ),
    ],
)
async def test_an_error_event_is_mapped_as_the_same_error_in_a_response(
    error: dict[str, str], expected: type[Exception]
) -> None:
    stream = streaming(partial(0), event({"type": "error", "error": error}))
    with pytest.raises(expected, match=error["message"]):
        await client(stream).reply(EDIT_HISTORY, OPTIONS, load)


@pytest.mark.parametrize(
    "chunks",
    [
        (partial(0),),  # cut after a draft
        (partial(0), completed()[:40]),  # cut inside the completed event
        (b"event: image_edit.completed\ndata: {not json\n\n",),
    ],
    ids=["after-a-draft", "inside-completed", "not-json"],
)
async def test_a_stream_without_a_whole_completed_event_is_unavailable(chunks: tuple[bytes, ...]) -> None:
    with pytest.raises(UnavailableError):
        await client(streaming(*chunks)).reply(EDIT_HISTORY, OPTIONS, load)


async def test_variants_come_from_one_plain_call_and_share_its_usage() -> None:
    seen: list[httpx.Request] = []
    images = [base64.b64encode(f"variant {i}".encode()).decode() for i in range(3)]
    usage = {
        "input_tokens": 100,
        "input_tokens_details": {"text_tokens": 10, "image_tokens": 90},
        "output_tokens": 3001,
    }

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"data": [{"b64_json": b} for b in images], "usage": usage})

    shown: list[Progress] = []
    replies = await client(handler).reply_many(EDIT_HISTORY, OPTIONS, load, n=3, progress=shown.append)
    fields = {name: body for name, _, _, body in multipart(seen[0])}
    assert fields["n"] == b"3" and "stream" not in fields  # variants are never streamed
    assert [r.final_image().data for r in replies] == [b"variant 0", b"variant 1", b"variant 2"]
    assert [r.usage.image_tokens for r in replies] == [1001, 1000, 1000]
    assert sum(r.usage.input_tokens for r in replies) == 100
    whole = OPENAI_PRICE.cost(text_in=10, image_in=90, image_out=3001)
    assert sum(r.usage.cost_usd for r in replies) == pytest.approx(whole)
    assert [p.phase for p in shown] == [Phase.WAITING, Phase.FINAL]


@pytest.mark.parametrize("n", [0, 11])
async def test_variants_outside_the_models_limit_are_refused_before_sending(n: int) -> None:
    seen: list[httpx.Request] = []
    with pytest.raises(BadRequestError, match="1 to 10"):
        await client(streaming(seen=seen)).reply_many(EDIT_HISTORY, OPTIONS, load, n=n)
    assert seen == []


def test_the_worst_case_counts_the_drafts_and_the_variants() -> None:
    streamed = client(streaming()).worst_case_cost(OPTIONS, input_images=1)
    plain = client(streaming(), stream=False).worst_case_cost(OPTIONS, input_images=1)
    assert streamed - plain == pytest.approx(OPENAI_PRICE.cost(image_out=2 * PARTIAL_IMAGE_TOKENS))
    three = client(streaming()).worst_case_cost(OPTIONS, input_images=1, n=3)
    assert three > 2.5 * plain


@pytest.mark.parametrize(
    ("data", "image"),
    [
        (b'{"type":"image_edit.partial_image","b64_json":"QUJD","partial_image_index":0}', b"QUJD"),
        (b'{"type": "image_edit.completed", "b64_json": "QUJD", "usage": {}}', b"QUJD"),
        (b'{"b64_json":"QU\\/D","type":"image_edit.completed"}', "QU/D"),  # an escape: parsed as JSON
    ],
)
def test_an_events_base64_is_cut_out_of_it_rather_than_parsed(data: bytes, image: bytes | str) -> None:
    payload = _payload(data)
    assert payload["b64_json"] == image
    assert payload["type"].startswith("image_edit.")


def test_an_event_whose_base64_is_cut_short_is_no_answer() -> None:
    with pytest.raises(UnavailableError, match="not valid JSON"):
        _payload(b'{"type":"image_edit.completed","b64_json":"QUJD')
