"""A hostile model id never steers a request: the real app refuses it, and the provider receives nothing.

The Gemini model id is a URL path segment (``/v1beta/models/{id}:generateContent``): before the
check, ``../../v1/foo`` made the app POST ``/v1/foo:generateContent`` with the server's key, and
``…:generateContent?key=x`` added a query. The emulator records every request line it receives,
unknown paths included, so "nothing was sent" is checked where it matters.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from chat.config import DEFAULTS
from chat.providers.model_ids import MODEL_ID_RULE
from tests.app_process import AppRun
from tests.chat.test_options import HOSTILE_MODEL_IDS
from tests.emulator.fixtures import EmulatorControl

ROUTE = {"model": "gemini", "openai_model": "openai"}
LABEL = {"model": "Model", "openai_model": "OpenAI model"}


@pytest.fixture(scope="module")
def client(app: AppRun) -> Iterator[Client]:
    yield Client(app.url, verbose=False, download_files=False)


@pytest.mark.parametrize("model", HOSTILE_MODEL_IDS)
@pytest.mark.parametrize("field", ["model", "openai_model"])
def test_a_hostile_model_id_is_refused_and_nothing_is_sent(
    client: Client, emulator: EmulatorControl, field: str, model: str
) -> None:
    options = {field: model, "route": ROUTE[field]}
    with pytest.raises(AppError) as info:
        client.predict("", "a red fox", None, options, api_name="/send")
    message = str(info.value)
    assert (
        message.startswith(f"{LABEL[field]} \u201c") and f"is not a model id: use {MODEL_ID_RULE}." in message
    )
    assert "\n" not in message
    assert emulator.received() == []


def test_well_formed_ids_reach_only_their_endpoints(client: Client, emulator: EmulatorControl) -> None:
    gemini = client.predict("", "a red fox", None, {"model": DEFAULTS.gemini_model}, api_name="/send")
    openai = client.predict(
        "",
        "a red fox",
        None,
        {"openai_model": DEFAULTS.openai_image_model, "route": "openai"},
        api_name="/send",
    )
    assert [gemini["turns"][-1]["status"], openai["turns"][-1]["status"]] == ["ok", "ok"]
    assert emulator.received() == [
        {
            "method": "POST",
            "target": f"/v1beta/models/{DEFAULTS.gemini_model}:streamGenerateContent?alt=sse",
            "status": 200,
        },
        {"method": "POST", "target": "/v1/images/generations", "status": 200},
    ]
    assert [r["model"] for r in emulator.requests()] == [DEFAULTS.gemini_model, DEFAULTS.openai_image_model]


def test_the_app_logged_no_traceback_for_the_refusals(app: AppRun) -> None:
    assert "Traceback" not in app.log_text()
