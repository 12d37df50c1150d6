"""Generation options from untrusted input: parsed once, refused with a sentence a user can act on."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import pytest

from chat.conversation.options import AUTO, MAX_STOP_SEQUENCE_CHARS, MAX_STOP_SEQUENCES, parse_options
from chat.domain import GenerationOptions, OpenAIOptions, Route
from chat.errors import InputError
from chat.providers.gemini.catalog import GEMINI_MODELS, SAFETY_THRESHOLDS
from chat.providers.model_ids import MODEL_ID_MAX_CHARS, MODEL_ID_RULE, is_model_id
from chat.providers.openai.catalog import OPENAI_MODELS

DEFAULT = "gemini-3.1-flash-image"
PRO = "gemini-3-pro-image"
OPENAI_DEFAULT = OpenAIOptions(model="gpt-image-2")
BASE_RATIOS = "1:1, 2:3, 3:2, 3:4, 4:3, 4:5, 5:4, 9:16, 16:9, 21:9"

#: Model ids a hostile visitor may send; a model id goes into Gemini's URL path. Also used by the
#: client tests (tests/chat/providers) and the end-to-end test (tests/hostile/test_model_ids.py).
HOSTILE_MODEL_IDS = (
    "../../v1/foo",  # dot segments: httpx resolves them, POST /v1/foo:generateContent
    "gemini-3.1-flash-image:generateContent?key=x",  # adds a query
    "%2e%2e%2fv1%2ffoo",  # encoded dot segments and slashes
    "a/b",
    "models/gemini-3-pro-image",
    "x#y",  # a fragment: the rest of the path is cut off
    "gemini-3.1-flash-image\n",  # "$" in a regex matches before a trailing newline
    " gemini-3.1-flash-image",
    "gemini 3",
    "gemini-" + "x" * 300,
    "Gemini-3-Pro-Image",
    "gemini-3.1-flash-imag\u0435",  # Cyrillic "е"
    "gemini..3",
    "..",
    "-gemini",
    "gemini-",
)
#: Ids either provider has used (../shared/reference, Nov 2026), shut down ones included.
REAL_MODEL_IDS = (
    *GEMINI_MODELS,
    *OPENAI_MODELS,
    "gemini-3-pro-image-preview",
    "gemini-3.1-flash-image-preview",
    "gemini-2.5-flash-image",
    "gemini-2.0-flash-exp-image-generation",
    "gemini-2.0-flash-preview-image-generation",
    "nano-banana-pro-preview",
    "gpt-image-2-2026-04-21",
    "gpt-image-2.5-sunburst-2026-09-08",
    "gpt-image-1",
    "dall-e-3",
    "imagen-4.0-generate-001",
)


def parse(data: dict[str, Any] | None) -> GenerationOptions:
    return parse_options(data, default_model=DEFAULT)


def refusal(data: dict[str, Any]) -> str:
    with pytest.raises(InputError) as caught:
        parse(data)
    return str(caught.value)


# --- defaults --------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [None, {}])
def test_no_options_set_only_the_default_model(data: dict | None) -> None:
    assert parse(data) == GenerationOptions(model=DEFAULT, openai=OPENAI_DEFAULT)


def test_every_field_empty_or_auto_means_unset() -> None:
    data = {
        "model": "",
        "temperature": "",
        "top_p": None,
        "top_k": AUTO,
        "max_output_tokens": "",
        "seed": AUTO,
        "stop_sequences": "",
        "aspect_ratio": AUTO,
        "image_size": "",
        "safety_threshold": AUTO,
    }
    assert parse(data) == GenerationOptions(model=DEFAULT, openai=OPENAI_DEFAULT)


@pytest.mark.parametrize("field", ["aspect_ratio", "image_size", "safety_threshold", "temperature", "seed"])
@pytest.mark.parametrize("value", ["", AUTO, None])
def test_auto_and_empty_leave_a_field_to_the_model(field: str, value: Any) -> None:
    assert getattr(parse({field: value}), field) is None


@pytest.mark.parametrize("model", [None, "", "   ", AUTO])
def test_missing_blank_or_auto_model_falls_back_to_the_default(model: str | None) -> None:
    assert parse({"model": model}).model == DEFAULT


# --- model ids -------------------------------------------------------------------------------


@pytest.mark.parametrize("model_id", [*REAL_MODEL_IDS, "gemini-9-ultra-image", "a", "m" * MODEL_ID_MAX_CHARS])
def test_every_real_and_any_well_formed_model_id_is_a_model_id(model_id: str) -> None:
    assert is_model_id(model_id)


@pytest.mark.parametrize("model_id", [*HOSTILE_MODEL_IDS, "m" * (MODEL_ID_MAX_CHARS + 1), "", None, 3, ["a"]])
def test_hostile_or_malformed_model_id_is_not_a_model_id(model_id: Any) -> None:
    assert not is_model_id(model_id)


@pytest.mark.parametrize("model_id", REAL_MODEL_IDS)
@pytest.mark.parametrize("field", ["model", "openai_model"])
def test_real_model_ids_are_accepted_for_either_provider(field: str, model_id: str) -> None:
    options = parse({field: model_id})
    assert (options.model if field == "model" else options.openai.model) == model_id


@pytest.mark.parametrize("model_id", HOSTILE_MODEL_IDS)
@pytest.mark.parametrize(("field", "label"), [("model", "Model"), ("openai_model", "OpenAI model")])
def test_hostile_model_id_is_refused_saying_what_a_model_id_is(field: str, label: str, model_id: str) -> None:
    message = refusal({field: model_id})
    assert message.startswith(f"{label} \u201c") and message.endswith(
        f"\u201d is not a model id: use {MODEL_ID_RULE}."
    )
    assert "\n" not in message and len(message) < 300  # one line, the long id cut


def test_a_refused_model_id_is_quoted_with_control_characters_escaped() -> None:
    assert refusal({"model": "gemini-3\n"}).startswith("Model \u201cgemini-3\\n\u201d is not a model id")


def test_nested_openai_model_is_checked_too() -> None:
    assert "is not a model id" in refusal({"openai": {"model": "../../v1/foo"}})


def test_model_id_with_surrounding_spaces_is_refused_not_trimmed() -> None:
    """What is checked is exactly what would be sent."""
    assert "is not a model id" in refusal({"model": f"  {PRO}\n"})


def test_an_invalid_default_model_is_refused_too() -> None:
    with pytest.raises(InputError, match="is not a model id"):
        parse_options({}, default_model="../v1/foo")


# --- every field -----------------------------------------------------------------------------


def test_every_field_is_parsed() -> None:
    options = parse(
        {
            "model": PRO,
            "temperature": 0.7,
            "top_p": 0.9,
            "top_k": 40,
            "max_output_tokens": 2048,
            "seed": 1234,
            "stop_sequences": ["END", "STOP"],
            "aspect_ratio": "16:9",
            "image_size": "2K",
            "safety_threshold": "BLOCK_ONLY_HIGH",
        }
    )
    assert options == GenerationOptions(
        openai=OPENAI_DEFAULT,
        model=PRO,
        temperature=0.7,
        top_p=0.9,
        top_k=40,
        max_output_tokens=2048,
        stop_sequences=("END", "STOP"),
        seed=1234,
        aspect_ratio="16:9",
        image_size="2K",
        safety_threshold="BLOCK_ONLY_HIGH",
    )


def test_numbers_given_as_strings_are_parsed_and_integer_fields_become_ints() -> None:
    options = parse(
        {"temperature": "1.5", "top_p": " 0.25 ", "top_k": "40", "max_output_tokens": "8192.0", "seed": "7"}
    )
    assert (options.temperature, options.top_p) == (1.5, 0.25)
    assert (options.top_k, options.max_output_tokens, options.seed) == (40, 8192, 7)
    for value in (options.top_k, options.max_output_tokens, options.seed):
        assert type(value) is int


def test_whole_floats_from_a_number_box_become_ints() -> None:
    options = parse({"top_k": 40.0, "max_output_tokens": 100.0, "seed": 0.0})
    assert (options.top_k, options.max_output_tokens, options.seed) == (40, 100, 0)
    assert all(type(v) is int for v in (options.top_k, options.max_output_tokens, options.seed))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", 0),
        ("temperature", 2),
        ("top_p", 0),
        ("top_p", 1),
        ("top_k", 1),
        ("top_k", 1000),
        ("max_output_tokens", 1),
        ("max_output_tokens", 65536),
        ("seed", 0),
        ("seed", 2**31 - 1),
    ],
)
def test_range_bounds_are_inclusive(field: str, value: int) -> None:
    assert getattr(parse({field: value}), field) == value


def test_seed_zero_is_kept_not_treated_as_unset() -> None:
    assert parse({"seed": 0}).seed == 0
    assert parse({"temperature": 0.0}).temperature == 0.0


@pytest.mark.parametrize("threshold", SAFETY_THRESHOLDS)
def test_every_safety_threshold_is_accepted(threshold: str) -> None:
    assert parse({"safety_threshold": threshold}).safety_threshold == threshold


@pytest.mark.parametrize("model_id", list(GEMINI_MODELS))
def test_every_catalogued_aspect_ratio_and_size_is_accepted_for_its_model(model_id: str) -> None:
    model = GEMINI_MODELS[model_id]
    for ratio in model.aspect_ratios:
        assert parse({"model": model_id, "aspect_ratio": ratio}).aspect_ratio == ratio
    for size in model.image_sizes:
        assert parse({"model": model_id, "image_size": size}).image_size == size


def test_parsed_options_round_trip_through_to_dict() -> None:
    options = parse({"model": PRO, "top_k": "3", "stop_sequences": "a\nb", "aspect_ratio": "4:3"})
    assert GenerationOptions.from_dict(options.to_dict()) == options


# --- refused values --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("temperature", -0.1, "Temperature must be between 0 and 2."),
        ("temperature", "2.01", "Temperature must be between 0 and 2."),
        ("temperature", math.inf, "Temperature must be between 0 and 2."),
        ("top_p", 1.5, "Top p must be between 0 and 1."),
        ("top_k", 0, "Top k must be between 1 and 1000."),
        ("top_k", 1001, "Top k must be between 1 and 1000."),
        ("max_output_tokens", 65537, "Max output tokens must be between 1 and 65536."),
        ("seed", -1, "Seed must be between 0 and 2147483647."),
        ("seed", 2**31, "Seed must be between 0 and 2147483647."),
    ],
)
def test_out_of_range_number_is_refused_naming_the_range(field: str, value: Any, message: str) -> None:
    assert refusal({field: value}) == message


@pytest.mark.parametrize("value", [math.nan, "nan", "NaN"])
def test_nan_is_refused(value: Any) -> None:
    assert refusal({"temperature": value}) == "Temperature must be between 0 and 2."


@pytest.mark.parametrize(
    ("value", "shown"),
    [("warm", "\u201cwarm\u201d"), ("0,7", "\u201c0,7\u201d"), ([0.5], "\u201c[0.5]\u201d")],
)
def test_non_number_is_refused_quoting_what_was_given(value: Any, shown: str) -> None:
    assert refusal({"temperature": value}) == f"Temperature must be a number, not {shown}."


@pytest.mark.parametrize(
    ("field", "label"), [("seed", "Seed"), ("top_k", "Top k"), ("max_output_tokens", "Max output tokens")]
)
@pytest.mark.parametrize("value", [1.5, "2.25"])
def test_fractional_value_for_an_integer_field_is_refused(field: str, label: str, value: Any) -> None:
    assert refusal({field: value}) == f"{label} must be a whole number."


NUMBER_OPTIONS = (
    ("temperature", "Temperature"),
    ("top_p", "Top p"),
    ("top_k", "Top k"),
    ("max_output_tokens", "Max output tokens"),
    ("seed", "Seed"),
    ("budget_usd", "Budget usd"),
)


@pytest.mark.parametrize(("field", "label"), NUMBER_OPTIONS)
@pytest.mark.parametrize("value", [True, False])
def test_a_boolean_is_not_a_number(field: str, label: str, value: bool) -> None:
    """float(True) is 1.0: a JSON true once set seed=1."""
    assert refusal({field: value}) == f"{label} must be a number, not \u201c{value}\u201d."


@pytest.mark.parametrize("value", [True, False])
def test_a_boolean_is_not_an_output_compression(value: bool) -> None:
    data = {"openai_output_format": "webp", "openai_output_compression": value}
    assert refusal(data) == f"Openai output compression must be a number, not \u201c{value}\u201d."


def test_an_integer_too_large_for_a_float_is_out_of_range() -> None:
    assert refusal({"seed": 10**400}) == "Seed must be between 0 and 2147483647."


def test_a_long_non_number_is_quoted_cut() -> None:
    message = refusal({"temperature": "x" * 10_000})
    assert message.startswith("Temperature must be a number, not \u201cxxx") and len(message) < 100


@pytest.mark.parametrize("data", ["aspect_ratio=16:9", ["model"], {"openai": "gpt-image-2"}])
def test_options_that_are_not_an_object_are_refused(data: Any) -> None:
    with pytest.raises(InputError, match="Options must be an object of names and values"):
        parse_options(data, default_model=DEFAULT)


def test_unknown_keys_are_refused_and_listed() -> None:
    assert (
        refusal({"temprature": 1, "colour": "red", "model": PRO}) == "Unknown option(s): colour, temprature."
    )


def test_aspect_ratio_the_model_does_not_support_is_refused_listing_the_choices() -> None:
    assert refusal({"model": PRO, "aspect_ratio": "8:1"}) == (
        f"{PRO} does not support aspect ratio \u201c8:1\u201d (choose from: {BASE_RATIOS})."
    )


def test_same_aspect_ratio_is_accepted_by_a_model_that_supports_it() -> None:
    assert parse({"model": DEFAULT, "aspect_ratio": "8:1"}).aspect_ratio == "8:1"


def test_image_size_the_model_does_not_support_is_refused_listing_the_choices() -> None:
    assert refusal({"model": PRO, "image_size": "512"}) == (
        f"{PRO} does not support image size \u201c512\u201d (choose from: 1K, 2K, 4K)."
    )


def test_default_model_decides_which_choices_are_allowed() -> None:
    assert parse_options({"image_size": "512"}, default_model=DEFAULT).image_size == "512"
    with pytest.raises(InputError, match="choose from: 1K, 2K, 4K"):
        parse_options({"image_size": "512"}, default_model=PRO)


def test_unknown_safety_threshold_is_refused_listing_the_choices() -> None:
    message = refusal({"safety_threshold": "BLOCK_SOME"})
    assert "\u201cBLOCK_SOME\u201d" in message
    assert "choose from: " + ", ".join(SAFETY_THRESHOLDS) in message


# --- stop sequences --------------------------------------------------------------------------


def test_stop_sequences_from_a_newline_string_drop_blank_lines() -> None:
    assert parse({"stop_sequences": "END\n\n  \r\nSTOP\r\n"}).stop_sequences == ("END", "STOP")


def test_stop_sequences_from_a_list_drop_blank_entries() -> None:
    assert parse({"stop_sequences": ["END", "", "   ", "STOP"]}).stop_sequences == ("END", "STOP")


def test_stop_sequences_keep_inner_spaces() -> None:
    assert parse({"stop_sequences": ["the end", "fin"]}).stop_sequences == ("the end", "fin")


@pytest.mark.parametrize("value", [None, "", [], "\n\n"])
def test_no_stop_sequences_is_an_empty_tuple(value: Any) -> None:
    assert parse({"stop_sequences": value}).stop_sequences == ()


def test_the_maximum_number_of_stop_sequences_is_accepted() -> None:
    items = [f"S{i}" for i in range(MAX_STOP_SEQUENCES)]
    assert parse({"stop_sequences": "\n".join(items)}).stop_sequences == tuple(items)


@pytest.mark.parametrize("as_text", [True, False])
def test_too_many_stop_sequences_are_refused(as_text: bool) -> None:
    items = [f"S{i}" for i in range(MAX_STOP_SEQUENCES + 1)]
    value = "\n".join(items) if as_text else items
    assert refusal({"stop_sequences": value}) == f"At most {MAX_STOP_SEQUENCES} stop sequences are allowed."


def test_blank_lines_do_not_count_towards_the_stop_sequence_limit() -> None:
    value = "\n\n".join(f"S{i}" for i in range(MAX_STOP_SEQUENCES))
    assert len(parse({"stop_sequences": value}).stop_sequences) == MAX_STOP_SEQUENCES


def test_a_stop_sequence_of_the_maximum_length_is_accepted() -> None:
    longest = "x" * MAX_STOP_SEQUENCE_CHARS
    assert parse({"stop_sequences": [longest]}).stop_sequences == (longest,)


@pytest.mark.parametrize("as_text", [True, False])
def test_a_too_long_stop_sequence_is_refused(as_text: bool) -> None:
    items = ["END", "x" * (MAX_STOP_SEQUENCE_CHARS + 1)]
    value = "\n".join(items) if as_text else items
    assert refusal({"stop_sequences": value}) == (
        f"A stop sequence can be at most {MAX_STOP_SEQUENCE_CHARS} characters long."
    )


@pytest.mark.parametrize("value", [5, True, {"END": 1}, ["END", 5], [["END"]]])
def test_stop_sequences_that_are_not_text_are_refused(value: Any) -> None:
    assert (
        refusal({"stop_sequences": value})
        == "Stop sequences must be text: one per line, or a list of strings."
    )


# --- models we do not know -------------------------------------------------------------------


def test_unknown_model_id_is_accepted_with_the_conservative_capabilities() -> None:
    options = parse({"model": "gemini-9-ultra-image", "aspect_ratio": "21:9", "temperature": "1"})
    assert (options.model, options.aspect_ratio, options.temperature) == ("gemini-9-ultra-image", "21:9", 1.0)


def test_unknown_model_refuses_wide_aspect_ratios() -> None:
    assert refusal({"model": "gemini-9-ultra-image", "aspect_ratio": "8:1"}) == (
        f"gemini-9-ultra-image does not support aspect ratio \u201c8:1\u201d (choose from: {BASE_RATIOS})."
    )


def test_unknown_model_refuses_any_explicit_image_size_but_accepts_auto() -> None:
    assert parse({"model": "gemini-9-ultra-image", "image_size": AUTO}).image_size is None
    with pytest.raises(InputError, match="does not support image size \u201c1K\u201d"):
        parse({"model": "gemini-9-ultra-image", "image_size": "1K"})


def test_unknown_default_model_is_used_as_given() -> None:
    assert parse_options({}, default_model="gemini-next-image") == GenerationOptions(
        openai=OPENAI_DEFAULT, model="gemini-next-image"
    )


# --- provider route and OpenAI settings ----------------------------------------------------------


def test_route_and_openai_settings_flat_or_nested() -> None:
    flat = parse(
        {
            "route": "openai",
            "openai_model": "gpt-image-1.5",
            "openai_size": "1536x1024",
            "openai_quality": "high",
            "openai_background": "opaque",
            "openai_output_format": "jpeg",
            "openai_output_compression": "80",
            "openai_input_fidelity": "high",
        }
    )
    assert flat.route is Route.OPENAI
    assert flat.openai == OpenAIOptions(
        model="gpt-image-1.5",
        size="1536x1024",
        quality="high",
        background="opaque",
        output_format="jpeg",
        output_compression=80,
        input_fidelity="high",
    )
    nested = parse({"route": "openai", "openai": asdict(flat.openai)})
    assert nested == flat
    assert parse(flat.to_dict()) == flat


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"route": "dall-e"}, "not one of"),
        ({"openai_model": "gpt-image-1.5", "openai_size": "1000x1000"}, "does not support size"),
        ({"openai_size": "1000x1000"}, "does not support size"),
        ({"openai_input_fidelity": "high"}, "input fidelity"),
        ({"openai_quality": "max"}, "quality"),
        ({"openai_output_compression": 50}, "only to WebP or JPEG"),
        ({"openai_output_format": "webp", "openai_output_compression": 101}, "between 0 and 100"),
    ],
)
def test_bad_openai_settings_are_refused_with_a_reason(data: dict[str, Any], words: str) -> None:
    assert words in refusal(data)


def test_arbitrary_size_is_accepted_where_the_model_allows_it() -> None:
    assert parse({"openai_size": "2048x1152"}).openai.size == "2048x1152"
