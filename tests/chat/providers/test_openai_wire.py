"""Neutral history <-> OpenAI Images API form/JSON, compared with literal values (no HTTP)."""

from __future__ import annotations

import base64

import pytest
from PIL import Image

from chat.config import DEFAULTS
from chat.domain import (
    LOCAL_PROVIDER,
    ImageData,
    ImagePart,
    ImageRole,
    OpenAIOptions,
    Role,
    TextPart,
    Turn,
    TurnError,
    Usage,
    frozen_metadata,
)
from chat.errors import (
    AuthError,
    BadRequestError,
    BlockedError,
    NoImageError,
    ProviderTimeoutError,
    RateLimitedError,
    UnavailableError,
)
from chat.providers.openai.catalog import OPENAI_MODELS, openai_model
from chat.providers.openai.wire import (
    EditInputs,
    build_edit_form,
    build_generation_body,
    error_from_response,
    fit_mask,
    parse_response,
    select_edit_inputs,
)
from tests.pictures import encode, noise, opened

PHOTO = ImagePart("a" * 64, "image/jpeg")
SECOND = ImagePart("c" * 64, "image/png")
EDIT1 = ImagePart(
    "b" * 64, "image/png", provider_metadata=frozen_metadata({"gemini": {"thoughtSignature": "c2lnLTE="}})
)
EDIT2 = ImagePart("e" * 64, "image/png")
THOUGHT = ImagePart("d" * 64, "image/png", thought=True)
MASK = ImagePart("f" * 64, "image/png", role=ImageRole.MASK)
MARKED = ImagePart("9" * 64, "image/png", role=ImageRole.MARKED)


def user(*parts) -> Turn:
    return Turn(role=Role.USER, parts=tuple(parts))


def answer(*parts, provider: str = "gemini") -> Turn:
    return Turn(role=Role.ASSISTANT, parts=tuple(parts), provider=provider, model="m")


def failed() -> Turn:
    return Turn(role=Role.ASSISTANT, parts=(), provider="gemini", error=TurnError("x", "503"))


class TestCatalog:
    def test_default_is_gpt_image_2_and_shut_down_models_are_absent(self):
        assert DEFAULTS.openai_image_model == "gpt-image-2"
        assert list(OPENAI_MODELS) == [
            "gpt-image-2",
            "gpt-image-2.5-sunburst",
            "gpt-image-2.5-flare",
            "gpt-image-2.6-sunburst",
            "gpt-image-2.6-flare",
            "gpt-image-1.5",
            "gpt-image-1-mini",
            "chatgpt-image-latest",
        ]

    def test_unknown_model_gets_the_conservative_set(self):
        caps = openai_model("gpt-image-9")
        assert (caps.qualities, caps.arbitrary_size, caps.input_fidelity, caps.output_formats) == (
            ("low", "medium", "high", "auto"),
            False,
            (),
            ("png", "webp", "jpeg"),
        )

    @pytest.mark.parametrize(
        ("size", "ok"),
        [
            ("1024x1024", True),
            ("auto", True),
            ("2048x1152", True),
            ("2160x3840", True),
            ("3840x2160", True),
            ("3856x2160", False),  # too wide
            ("1000x1000", False),  # not divisible by 16
            ("3072x1008", False),  # wider than 3:1
            ("0x0", False),
            ("big", False),
        ],
    )
    def test_arbitrary_sizes_on_gpt_image_2(self, size, ok):
        assert openai_model("gpt-image-2").accepts_size(size) is ok

    def test_fixed_size_models_reject_arbitrary_sizes(self):
        assert openai_model("gpt-image-1.5").accepts_size("2048x1152") is False
        assert openai_model("gpt-image-1.5").accepts_size("1536x1024") is True


class TestSelectEditInputs:
    def test_first_turn_with_upload(self):
        assert select_edit_inputs([user(PHOTO, TextPart("make the sky stormy"))]) == EditInputs(
            prompt="make the sky stormy", images=[PHOTO], mask=None
        )

    def test_second_turn_edits_the_previous_output(self):
        history = [
            user(PHOTO, TextPart("stormy sky")),
            answer(TextPart("Here"), THOUGHT, EDIT1),
            user(TextPart("now remove the car")),
        ]
        assert select_edit_inputs(history) == EditInputs(
            prompt="now remove the car", images=[EDIT1], mask=None
        )

    def test_new_attachments_follow_the_previous_output(self):
        history = [
            user(PHOTO, TextPart("stormy sky")),
            answer(EDIT1),
            user(SECOND, TextPart("put this dog in it")),
        ]
        assert select_edit_inputs(history) == EditInputs(
            prompt="put this dog in it", images=[EDIT1, SECOND], mask=None
        )

    def test_mask_is_returned_and_marked_image_is_never_sent(self):
        history = [
            user(PHOTO, TextPart("stormy sky")),
            answer(EDIT1),
            user(MARKED, MASK, TextPart("remove this")),
        ]
        assert select_edit_inputs(history) == EditInputs(prompt="remove this", images=[EDIT1], mask=MASK)

    def test_failed_answers_are_skipped_and_their_user_turns_merge(self):
        history = [
            user(PHOTO, TextPart("stormy sky")),
            answer(EDIT1),
            user(TextPart("remove the car")),
            failed(),
            user(SECOND, TextPart("and add this dog")),
            failed(),
        ]
        assert select_edit_inputs(history) == EditInputs(
            prompt="remove the car\n\nand add this dog", images=[EDIT1, SECOND], mask=None
        )

    def test_failed_first_turn_keeps_its_upload(self):
        history = [user(PHOTO, TextPart("stormy sky")), failed(), user(TextPart("try again"))]
        assert select_edit_inputs(history) == EditInputs(
            prompt="stormy sky\n\ntry again", images=[PHOTO], mask=None
        )

    def test_latest_output_of_any_provider_is_the_previous_image(self):
        history = [
            user(PHOTO, TextPart("stormy sky")),
            answer(EDIT1),
            user(TextPart("remove the car")),
            answer(EDIT2, provider="openai"),
            user(TextPart("brighter")),
        ]
        assert select_edit_inputs(history).images == [EDIT2]

    def test_without_text_the_last_earlier_request_is_the_prompt(self):
        history = [user(PHOTO, TextPart("stormy sky")), answer(EDIT1), user(SECOND)]
        assert select_edit_inputs(history) == EditInputs(
            prompt="stormy sky", images=[EDIT1, SECOND], mask=None
        )

    def test_a_quick_edit_is_the_previous_image_and_never_the_prompt(self):
        quick = Turn(
            role=Role.ASSISTANT,
            parts=(EDIT2,),
            provider=LOCAL_PROVIDER,
            model="rotate 180\u00b0",
            usage=Usage(),
        )
        history = [
            user(PHOTO, TextPart("stormy sky")),
            answer(EDIT1),
            user(TextPart("rotate 180\u00b0 (local)")),
            quick,
            user(SECOND),
        ]
        assert select_edit_inputs(history) == EditInputs(
            prompt="stormy sky", images=[EDIT2, SECOND], mask=None
        )

    def test_without_any_text_the_image_is_reproduced(self):
        assert select_edit_inputs([user(PHOTO)]).prompt == "Reproduce this image faithfully."

    def test_no_images_means_generation(self):
        assert select_edit_inputs([user(TextPart("a red bicycle"))]) == EditInputs(
            prompt="a red bicycle", images=[], mask=None
        )

    def test_reuploaded_previous_output_is_sent_once(self):
        history = [user(PHOTO, TextPart("stormy sky")), answer(EDIT1), user(EDIT1, TextPart("again"))]
        assert select_edit_inputs(history).images == [EDIT1]


class TestBuildEditForm:
    def test_one_image_is_the_image_field(self):
        data, files = build_edit_form(
            "stormy sky",
            [("image-1.png", b"img-1", "image/png")],
            None,
            OpenAIOptions(),
            model="gpt-image-2",
            user=None,
        )
        assert data == {"prompt": "stormy sky", "model": "gpt-image-2", "n": "1"}
        assert files == [("image", ("image-1.png", b"img-1", "image/png"))]

    def test_several_images_repeat_image_brackets_and_mask_is_a_png_file(self):
        data, files = build_edit_form(
            "put the dog in",
            [("image-1.png", b"img-1", "image/png"), ("image-2.jpg", b"img-2", "image/jpeg")],
            b"mask-bytes",
            OpenAIOptions(),
            model="gpt-image-2",
            user="user-7",
        )
        assert data == {
            "prompt": "put the dog in",
            "model": "gpt-image-2",
            "n": "1",
            "safety_identifier": "user-7",
        }
        assert files == [
            ("image[]", ("image-1.png", b"img-1", "image/png")),
            ("image[]", ("image-2.jpg", b"img-2", "image/jpeg")),
            ("mask", ("mask.png", b"mask-bytes", "image/png")),
        ]

    def test_every_option_the_model_accepts(self):
        options = OpenAIOptions(
            model="ignored-here",
            size="1536x1024",
            quality="high",
            background="opaque",
            output_format="webp",
            output_compression=80,
            input_fidelity="high",
        )
        data, _ = build_edit_form(
            "p", [("i.png", b"x", "image/png")], None, options, model="gpt-image-1.5", user=None
        )
        assert data == {
            "prompt": "p",
            "model": "gpt-image-1.5",
            "n": "1",
            "size": "1536x1024",
            "quality": "high",
            "background": "opaque",
            "output_format": "webp",
            "output_compression": "80",
            "input_fidelity": "high",
        }
        assert "response_format" not in data

    @pytest.mark.parametrize(
        ("model", "options", "expected"),
        [
            ("gpt-image-2", OpenAIOptions(input_fidelity="high"), {}),
            ("gpt-image-1.5", OpenAIOptions(input_fidelity="low"), {"input_fidelity": "low"}),
            ("gpt-image-1-mini", OpenAIOptions(input_fidelity="high"), {}),
            ("gpt-image-1-mini", OpenAIOptions(input_fidelity="low"), {"input_fidelity": "low"}),
            ("chatgpt-image-latest", OpenAIOptions(input_fidelity="low"), {}),
            ("gpt-image-2", OpenAIOptions(size="2048x1152"), {"size": "2048x1152"}),
            ("gpt-image-2.6-flare", OpenAIOptions(size="1152x2048"), {"size": "1152x2048"}),
            ("gpt-image-1.5", OpenAIOptions(size="2048x1152"), {}),
            ("gpt-image-2", OpenAIOptions(size="1000x1000"), {}),
            ("gpt-image-1.5", OpenAIOptions(size="512x512"), {}),
            ("gpt-image-2", OpenAIOptions(quality="xhigh"), {}),
            ("gpt-image-2.5-sunburst", OpenAIOptions(quality="max"), {"quality": "max"}),
            (
                "gpt-image-2",
                OpenAIOptions(output_format="png", output_compression=50),
                {"output_format": "png"},
            ),
            (
                "gpt-image-2",
                OpenAIOptions(output_format="jpeg", output_compression=50),
                {"output_format": "jpeg", "output_compression": "50"},
            ),
            ("gpt-image-2", OpenAIOptions(output_compression=50), {}),
            (
                "gpt-image-2",
                OpenAIOptions(output_format="webp", output_compression=101),
                {"output_format": "webp"},
            ),
            ("gpt-image-2", OpenAIOptions(output_format="gif"), {}),
            ("gpt-image-2", OpenAIOptions(background="transparent"), {"background": "transparent"}),
            (
                "gpt-image-2",
                OpenAIOptions(background="transparent", output_format="jpeg"),
                {"output_format": "jpeg"},
            ),
            ("gpt-image-2", OpenAIOptions(background="clear"), {}),
        ],
    )
    def test_options_the_model_does_not_accept_are_dropped(self, model, options, expected):
        data, _ = build_edit_form("p", [("i.png", b"x", "image/png")], None, options, model=model, user=None)
        assert data == {"prompt": "p", "model": model, "n": "1", **expected}


class TestBuildGenerationBody:
    def test_json_body_without_input_fidelity(self):
        options = OpenAIOptions(size="1024x1024", quality="low", output_format="jpeg", input_fidelity="high")
        assert build_generation_body("a red bicycle", options, model="gpt-image-1.5", user="u-1") == {
            "prompt": "a red bicycle",
            "model": "gpt-image-1.5",
            "n": 1,
            "size": "1024x1024",
            "quality": "low",
            "output_format": "jpeg",
            "safety_identifier": "u-1",
        }

    def test_defaults_send_only_prompt_model_and_n(self):
        assert build_generation_body("x", OpenAIOptions(), model="gpt-image-2", user=None) == {
            "prompt": "x",
            "model": "gpt-image-2",
            "n": 1,
        }


class TestFitMask:
    def test_alpha_mask_of_the_right_size_keeps_its_alpha(self):
        image = Image.new("RGBA", (32, 16), (0, 0, 0, 255))
        image.putpixel((3, 4), (0, 0, 0, 0))
        fitted = opened(fit_mask(encode(image), (32, 16)))
        assert (fitted.format, fitted.mode, fitted.size) == ("PNG", "RGBA", (32, 16))
        assert fitted.getpixel((3, 4))[3] == 0
        assert fitted.getpixel((0, 0))[3] == 255

    def test_mask_is_resized_nearest_to_the_image_size(self):
        image = Image.new("RGBA", (4, 4), (0, 0, 0, 255))
        for x in range(2):
            for y in range(2):
                image.putpixel((x, y), (0, 0, 0, 0))
        fitted = opened(fit_mask(encode(image), (40, 20)))
        assert fitted.size == (40, 20)
        histogram = fitted.getchannel("A").histogram()
        assert [value for value, count in enumerate(histogram) if count] == [0, 255]
        assert fitted.getpixel((19, 9))[3] == 0
        assert fitted.getpixel((20, 10))[3] == 255

    def test_painting_without_alpha_edits_where_painted(self):
        image = Image.new("L", (8, 8), 0)
        image.putpixel((1, 1), 255)
        image.putpixel((2, 2), 40)
        fitted = opened(fit_mask(encode(image), (8, 8)))
        assert fitted.mode == "RGBA"
        assert [fitted.getpixel(p)[3] for p in ((1, 1), (2, 2), (0, 0))] == [0, 0, 255]

    def test_fully_opaque_rgba_is_read_as_a_painting(self):
        image = Image.new("RGBA", (8, 8), (0, 0, 0, 255))
        image.putpixel((5, 5), (255, 255, 255, 255))
        fitted = opened(fit_mask(encode(image), (8, 8)))
        assert [fitted.getpixel(p)[3] for p in ((5, 5), (0, 0))] == [0, 255]

    def test_large_mask_stays_under_4_mb(self):
        noisy = encode(noise((1040, 1024), "RGBA", seed=7))
        assert len(noisy) > 4 * 1024 * 1024
        fitted = fit_mask(noisy, (1040, 1024))
        assert len(fitted) < 4 * 1024 * 1024
        assert opened(fitted).size == (1040, 1024)


class TestParseResponse:
    USAGE = {
        "input_tokens": 50,
        "input_tokens_details": {"text_tokens": 10, "image_tokens": 40},
        "output_tokens": 4160,
        "total_tokens": 4210,
    }

    def test_first_b64_image_and_its_usage_priced(self):
        body = {
            "created": 1,
            "data": [{"b64_json": base64.b64encode(b"img").decode()}, {"b64_json": "b3RoZXI="}],
            "output_format": "webp",
            "size": "1024x1024",
            "usage": self.USAGE,
        }
        reply = parse_response(body, model="gpt-image-2", output_format=None)
        assert reply.provider == "openai"
        assert reply.model == "gpt-image-2"
        assert reply.finish_reason is None
        assert reply.parts == (ImageData(b"img", "image/webp"),)
        # gpt-image-1's rates (chat/providers/pricing.py): text in $5, image in $10, image out $40 per 1M
        expected = (10 * 5.0 + 40 * 10.0 + 4160 * 40.0) / 1e6
        assert reply.usage == Usage(input_tokens=50, image_tokens=4160, cost_usd=expected)
        assert reply.usage.total_tokens == 4210

    def test_mime_from_requested_format_else_png(self):
        body = {"data": [{"b64_json": "aW1n"}]}
        assert parse_response(body, model="m", output_format="jpeg").final_image().mime_type == "image/jpeg"
        assert parse_response(body, model="m", output_format=None).final_image().mime_type == "image/png"

    def test_nothing_of_the_answer_is_kept_as_metadata(self):
        # OpenAI keeps no conversation, so there is nothing it must get back on a later call.
        body = {"data": [{"b64_json": "aW1n", "revised_prompt": "a red bike"}], "size": "1024x1024"}
        image = parse_response(body, model="m", output_format=None).final_image()
        assert dict(image.provider_metadata) == {}

    @pytest.mark.parametrize("body", [{"data": []}, {}, {"data": [{"url": "https://x.test/a.png"}]}])
    def test_no_base64_image_is_no_image(self, body):
        with pytest.raises(NoImageError):
            parse_response(body, model="m", output_format=None)

    def test_bad_base64_is_unavailable(self):
        with pytest.raises(UnavailableError):
            parse_response({"data": [{"b64_json": "not base64!"}]}, model="m", output_format=None)


def err(code: str | None, message: str, kind: str = "invalid_request_error") -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


class TestErrors:
    @pytest.mark.parametrize(
        ("status", "body", "kind", "detail"),
        [
            (
                400,
                err("invalid_value", "Invalid mask size"),
                BadRequestError,
                "400 invalid_value: Invalid mask size",
            ),
            (
                400,
                err(None, "Unknown parameter"),
                BadRequestError,
                "400 invalid_request_error: Unknown parameter",
            ),
            (401, err("invalid_api_key", "Bad key"), AuthError, "401 invalid_api_key: Bad key"),
            (403, err(None, "Organization must be verified", "permission_error"), AuthError, None),
            (
                404,
                err("model_not_found", "No such model"),
                BadRequestError,
                "404 model_not_found: No such model",
            ),
            (408, None, ProviderTimeoutError, "408: HTTP 408"),
            (429, err("insufficient_quota", "You exceeded your current quota"), AuthError, None),
            (
                500,
                err(None, "server error", "server_error"),
                UnavailableError,
                "500 server_error: server error",
            ),
            (502, "Bad gateway", UnavailableError, "502: HTTP 502"),
            (503, None, UnavailableError, None),
            (504, None, ProviderTimeoutError, None),
        ],
    )
    def test_status_maps_to_one_type(self, status, body, kind, detail):
        error = error_from_response(status, body, {})
        assert type(error) is kind
        assert error.provider == "openai" and error.status_code == status
        if detail is not None:
            assert error.detail == detail

    def test_moderation_code_is_blocked(self):
        error = error_from_response(400, err("moderation_blocked", "Rejected by the safety system"), {})
        assert type(error) is BlockedError
        assert error.reason == "moderation_blocked"
        assert error.detail == "400 moderation_blocked: Rejected by the safety system"

    def test_image_user_error_with_moderation_wording_is_blocked(self):
        body = err(
            None, "Your request was rejected as a result of our safety system.", "image_generation_user_error"
        )
        error = error_from_response(400, body, {})
        assert type(error) is BlockedError and error.reason == "moderation_blocked"

    def test_image_user_error_without_moderation_wording_is_a_bad_request(self):
        body = err(None, "Invalid image file.", "image_generation_user_error")
        assert type(error_from_response(400, body, {})) is BadRequestError

    def test_rate_limit_reads_retry_after_seconds(self):
        error = error_from_response(429, err("rate_limit_exceeded", "Slow down"), {"Retry-After": "12"})
        assert type(error) is RateLimitedError
        assert error.retry_after == 12.0
        assert error.detail == "429 rate_limit_exceeded: Slow down"

    def test_rate_limit_prefers_retry_after_ms(self):
        error = error_from_response(
            429, err("rate_limit_exceeded", "x"), {"retry-after-ms": "1500", "retry-after": "2"}
        )
        assert error.retry_after == 1.5

    def test_rate_limit_without_header(self):
        assert error_from_response(429, err("rate_limit_exceeded", "x"), {}).retry_after is None

    @pytest.mark.parametrize("echoed", ["sk-proj-abc*****wxyz", "inval*******4444", "Toxic"])
    def test_key_echoed_in_message_is_redacted(self, echoed):
        body = err("invalid_api_key", f"Incorrect API key provided: {echoed}. See the docs.")
        error = error_from_response(401, body, {})
        assert error.detail == "401 invalid_api_key: Incorrect API key provided: [key hidden]. See the docs"
        assert echoed not in error.user_message()
