"""FallbackPolicy: error type -> outcome, with an injected sleep and clock (nothing waits)."""

from __future__ import annotations

import pytest

from chat.conversation.fallback import FallbackPolicy, RetryPolicy
from chat.domain import GenerationOptions, Phase, Progress, ProviderReply, Role, Route, TextPart, Turn
from chat.errors import (
    AuthError,
    BadRequestError,
    BlockedError,
    MissingKeyError,
    NoImageError,
    ProviderTimeoutError,
    RateLimitedError,
    UnavailableError,
)
from tests.fakes import FakeClock, FakeProvider, reply_with_image
from tests.pictures import png

HISTORY = [Turn(role=Role.USER, parts=(TextPart("warmer light"),))]


def options(route: Route = Route.AUTO) -> GenerationOptions:
    return GenerationOptions(model="gemini-3.1-flash-image", route=route)


def openai_reply() -> ProviderReply:
    return ProviderReply(
        provider="openai", model="gpt-image-2", parts=reply_with_image(png((1, 1, 1))).parts[1:]
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def gemini() -> FakeProvider:
    return FakeProvider("gemini")


@pytest.fixture
def openai() -> FakeProvider:
    return FakeProvider("openai")


def policy(clock: FakeClock, *providers: FakeProvider, retry: RetryPolicy | None = None) -> FallbackPolicy:
    return FallbackPolicy(
        {p.name: p for p in providers},
        retry=retry or RetryPolicy(),
        sleep=clock.sleep,
        clock=clock,
        jitter=lambda d: d,
    )


async def test_first_answer_wins(clock, gemini, openai):
    gemini.queue.append(reply_with_image(png((1, 2, 3))))
    outcome = await policy(clock, gemini, openai).answer(HISTORY, options(), lambda p: b"")
    assert outcome.reply is not None and outcome.error is None
    assert [(a.provider, a.outcome) for a in outcome.attempts] == [("gemini", "ok")]
    assert openai.calls == [] and clock.sleeps == []


async def test_transient_failures_are_retried_with_exponential_backoff(clock, gemini, openai):
    gemini.queue += [UnavailableError("gemini", "503 UNAVAILABLE"), ProviderTimeoutError("gemini", "504")]
    gemini.queue.append(reply_with_image(png((1, 2, 3))))
    outcome = await policy(clock, gemini, openai).answer(HISTORY, options(), lambda p: b"")
    assert outcome.reply is not None
    assert clock.sleeps == [1.0, 2.0]
    assert [a.outcome for a in outcome.attempts] == ["unavailable", "timeout", "ok"]
    assert openai.calls == []


async def test_retry_delay_from_the_provider_is_honoured(clock, gemini, openai):
    gemini.queue += [RateLimitedError("gemini", "429", retry_after=7.0), reply_with_image(png((1, 2, 3)))]
    await policy(clock, gemini, openai).answer(HISTORY, options(), lambda p: b"")
    assert clock.sleeps == [7.0]


async def test_a_long_retry_delay_falls_back_at_once(clock, gemini, openai):
    gemini.queue.append(RateLimitedError("gemini", "429 daily quota", retry_after=3600.0))
    openai.queue.append(openai_reply())
    outcome = await policy(clock, gemini, openai).answer(HISTORY, options(), lambda p: b"")
    assert clock.sleeps == [] and len(gemini.calls) == 1
    assert [(a.provider, a.outcome) for a in outcome.attempts] == [
        ("gemini", "rate_limited"),
        ("openai", "ok"),
    ]


async def test_total_waiting_time_is_bounded(clock, gemini, openai):
    gemini.queue += [UnavailableError("gemini", "503")] * 10
    openai.queue.append(openai_reply())
    retry = RetryPolicy(max_attempts=10, base_delay_s=4.0, max_delay_s=20.0, max_total_s=15.0)
    outcome = await policy(clock, gemini, openai, retry=retry).answer(HISTORY, options(), lambda p: b"")
    assert clock.sleeps == [4.0, 8.0]  # a third wait (16 s) would pass the 15 s budget
    assert outcome.reply is not None and outcome.reply.provider == "openai"


@pytest.mark.parametrize(
    ("error", "gemini_calls"),
    [
        (UnavailableError("gemini", "503 UNAVAILABLE"), 3),
        (ProviderTimeoutError("gemini", "no answer in time"), 3),
        (RateLimitedError("gemini", "429", retry_after=1.0), 3),
        (NoImageError("gemini", "finish reason NO_IMAGE"), 1),
        (BlockedError("gemini", "finish reason IMAGE_SAFETY", reason="IMAGE_SAFETY"), 1),
        (MissingKeyError("gemini", "GEMINI_API_KEY"), 1),
    ],
)
async def test_auto_falls_back_to_openai(clock, gemini, openai, error, gemini_calls):
    gemini.queue += [error] * 3
    openai.queue.append(openai_reply())
    outcome = await policy(clock, gemini, openai).answer(HISTORY, options(), lambda p: b"")
    assert outcome.reply is not None and outcome.reply.provider == "openai"
    assert len(gemini.calls) == gemini_calls and len(openai.calls) == 1
    assert outcome.attempts[-1].provider == "openai" and outcome.attempts[0].outcome == error.kind


async def test_the_fallbacks_own_waiting_still_says_why_it_was_asked(clock, gemini, openai):
    """Only a call's newest snapshot is shown: OpenAI's "waiting", sent the moment it is asked,
    would hide the fallback's reason for the whole call, so it is reported as the fallback."""
    gemini.queue.append(NoImageError("gemini", "finish reason NO_IMAGE"))
    draft = Progress("openai", Phase.DRAFT, "gpt-image-2", drafts_expected=1)
    openai.shows = [Progress("openai", Phase.WAITING, "gpt-image-2"), draft]
    openai.queue.append(openai_reply())
    seen: list[Progress] = []
    await policy(clock, gemini, openai).answer(HISTORY, options(), lambda p: b"", progress=seen.append)
    fell_back, waiting, drafted = seen
    assert fell_back.phase is Phase.FALLING_BACK and fell_back.note.startswith("Gemini")
    assert (waiting.phase, waiting.note, waiting.model) == (Phase.FALLING_BACK, fell_back.note, "gpt-image-2")
    assert drafted == draft  # what the call itself shows next is its own


@pytest.mark.parametrize(
    "error", [AuthError("gemini", "403 PERMISSION_DENIED"), BadRequestError("gemini", "400 INVALID_ARGUMENT")]
)
async def test_errors_the_user_must_fix_do_not_fall_back(clock, gemini, openai, error):
    gemini.queue.append(error)
    outcome = await policy(clock, gemini, openai).answer(HISTORY, options(), lambda p: b"")
    assert outcome.error is error and openai.calls == []


async def test_both_failing_gives_one_message_naming_both(clock, gemini, openai):
    gemini.queue.append(BlockedError("gemini", "finish reason IMAGE_SAFETY", reason="IMAGE_SAFETY"))
    openai.queue += [UnavailableError("openai", "503 server_error")] * 3
    outcome = await policy(clock, gemini, openai).answer(HISTORY, options(), lambda p: b"")
    assert outcome.reply is None and outcome.error.provider == "openai"
    message = outcome.user_message()
    assert message.startswith("Gemini refused this request for safety (IMAGE_SAFETY).")
    assert "Tried OpenAI too: OpenAI is unavailable right now" in message


async def test_text_only_answer_survives_a_failed_fallback(clock, gemini, openai):
    text_reply = ProviderReply(provider="gemini", model="m", parts=(TextPart("Which car?"),))
    gemini.queue.append(NoImageError("gemini", "text only", reply=text_reply))
    openai.queue.append(BlockedError("openai", "moderation_blocked", reason="moderation_blocked"))
    outcome = await policy(clock, gemini, openai).answer(HISTORY, options(), lambda p: b"")
    assert isinstance(outcome.error, NoImageError) and outcome.error.reply is text_reply


async def test_unconfigured_fallback_is_skipped(clock, gemini, openai):
    openai.configured = False
    gemini.queue.append(BlockedError("gemini", "SAFETY", reason="SAFETY"))
    outcome = await policy(clock, gemini, openai).answer(HISTORY, options(), lambda p: b"")
    assert openai.calls == [] and outcome.user_message().startswith("Gemini refused")


async def test_gemini_only_never_calls_openai(clock, gemini, openai):
    gemini.queue.append(NoImageError("gemini", "NO_IMAGE"))
    outcome = await policy(clock, gemini, openai).answer(HISTORY, options(Route.GEMINI), lambda p: b"")
    assert outcome.error is not None and openai.calls == []


async def test_openai_only_never_calls_gemini(clock, gemini, openai):
    openai.queue.append(openai_reply())
    outcome = await policy(clock, gemini, openai).answer(HISTORY, options(Route.OPENAI), lambda p: b"")
    assert outcome.reply.provider == "openai" and gemini.calls == []


async def test_the_worst_case_of_a_turn_is_every_provider_its_route_may_call(clock, gemini, openai):
    both = policy(clock, gemini, openai)

    assert both.worst_case_cost(options(), input_images=1) == pytest.approx(0.1 + 0.1)
    assert both.worst_case_cost(options(route=Route.GEMINI), input_images=1) == pytest.approx(0.1)
    assert policy(clock, gemini).worst_case_cost(options(route=Route.OPENAI), input_images=1) == 0.0


def test_the_model_of_a_provider_is_the_providers_to_say(clock, gemini):
    assert policy(clock, gemini).model_for("gemini", options()) == options().model
    assert policy(clock, gemini).model_for("elsewhere", options()) == options().model


class ManyProvider(FakeProvider):
    """OpenAI's side of variants: one call, up to ``n`` images (its queue holds lists or errors)."""

    def __init__(self) -> None:
        super().__init__("openai")
        self.ns: list[int] = []

    async def reply_many(self, history, options, load_image, *, n, api_key=None, progress=None):
        self.ns.append(n)
        item = self.queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item


def variants(route: Route, n: int) -> GenerationOptions:
    return GenerationOptions(model="gemini-3.1-flash-image", route=route, variants=n)


async def test_only_a_route_with_one_provider_that_makes_many_images_asks_once(clock, gemini):
    many = ManyProvider()
    chosen = policy(clock, gemini, many)
    assert chosen.makes_many(variants(Route.OPENAI, 3))
    assert not chosen.makes_many(variants(Route.OPENAI, 1))
    assert not chosen.makes_many(variants(Route.AUTO, 3))  # each variant may fall back on its own
    assert not chosen.makes_many(variants(Route.GEMINI, 3))  # Gemini refuses candidateCount > 1


async def test_one_call_for_n_images_is_retried_once_for_all_and_a_short_answer_says_so(clock):
    many = ManyProvider()
    many.queue = [UnavailableError("openai", "503"), [openai_reply(), openai_reply()]]
    outcomes = await policy(clock, many).answer_many(HISTORY, variants(Route.OPENAI, 3), lambda p: b"")
    assert many.ns == [3, 3] and clock.sleeps == [1.0]
    assert [o.reply is not None for o in outcomes] == [True, True, False]
    assert isinstance(outcomes[2].error, NoImageError) and "2 of the 3 images" in outcomes[2].error.detail
    assert all([a.outcome for a in o.attempts] == ["unavailable", "ok"] for o in outcomes)


async def test_a_failed_call_for_n_images_fails_every_variant_with_its_reason(clock):
    many = ManyProvider()
    many.queue = [BadRequestError("openai", "400: bad mask")]
    outcomes = await policy(clock, many).answer_many(HISTORY, variants(Route.OPENAI, 2), lambda p: b"")
    assert [o.reply for o in outcomes] == [None, None]
    assert all(isinstance(o.error, BadRequestError) for o in outcomes)
