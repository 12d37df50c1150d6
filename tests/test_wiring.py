"""app.py builds each runtime value from the settings, and a dataclass's own default is the setting's."""

from __future__ import annotations

import pytest

import app as entry
from chat.config import DEFAULTS, Settings
from chat.conversation.fallback import RetryPolicy
from chat.conversation.service import InputLimits
from chat.limits.guard import Limits
from chat.media.images import ImageLimits
from chat.sharing.transfer import ImportLimits

NOT_SPACES: dict[str, str] = {}


def test_what_the_app_builds_from_the_defaults_is_each_dataclass_default() -> None:
    assert entry.input_limits(DEFAULTS) == InputLimits()
    assert entry.retry_policy(DEFAULTS) == RetryPolicy()
    assert entry.guard_limits(DEFAULTS, NOT_SPACES) == Limits()


def test_an_import_is_held_to_the_default_upload_limits() -> None:
    assert (ImportLimits().max_prompt_chars, ImportLimits().max_pixels) == (
        InputLimits().max_prompt_chars,
        ImageLimits().max_pixels,
    )


@pytest.mark.parametrize(
    ("setting", "built"),
    [
        ("max_upload_bytes", lambda s: entry.input_limits(s).images.max_bytes),
        ("max_upload_pixels", lambda s: entry.input_limits(s).images.max_pixels),
        ("max_input_side", lambda s: entry.input_limits(s).images.max_side),
        ("max_prompt_chars", lambda s: entry.input_limits(s).max_prompt_chars),
        ("max_images_per_message", lambda s: entry.input_limits(s).max_images_per_message),
        ("retry_attempts", lambda s: entry.retry_policy(s).max_attempts),
        ("retry_base_delay_s", lambda s: entry.retry_policy(s).base_delay_s),
        ("retry_max_total_s", lambda s: entry.retry_policy(s).max_total_s),
        ("rate_per_minute", lambda s: entry.guard_limits(s, NOT_SPACES).per_visitor_per_minute),
        ("rate_per_day", lambda s: entry.guard_limits(s, NOT_SPACES).per_visitor_per_day),
        ("global_rate_per_minute", lambda s: entry.guard_limits(s, NOT_SPACES).global_per_minute),
        ("daily_spend_usd", lambda s: entry.guard_limits(s, NOT_SPACES).daily_spend_usd),
    ],
)
def test_each_setting_reaches_the_value_built_from_it(setting, built) -> None:
    settings = Settings(_env_file=None, **{setting: 7})

    assert built(settings) == 7 != built(DEFAULTS)


def test_a_reservation_against_the_cap_outlives_its_replica_by_the_longest_turn() -> None:
    settings = Settings(_env_file=None, request_timeout_s=7, openai_timeout_s=11, retry_attempts=2)

    assert entry.guard_limits(settings, NOT_SPACES).reservation_ttl_s == 2 * (7 + 11) + 60
    assert Limits().reservation_ttl_s == 3 * (180 + 300) + 60
