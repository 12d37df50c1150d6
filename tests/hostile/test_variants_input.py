"""Whatever a page sends as the Variants option reaches the option parser, which refuses it in
words or takes it: never an error before the handler (which the page would show as a full queue)."""

from __future__ import annotations

import pytest

from tests.app_process import AppRun
from tests.hostile.events import call, events


@pytest.mark.parametrize(
    ("variants", "said"),
    [
        (9, "Variants must be between 1 and 4."),
        (0, "Variants must be between 1 and 4."),
        ("4; DROP TABLE turn", "Variants"),
        ({"n": 4}, "Variants"),
        (None, None),  # no value: one answer
    ],
)
def test_a_hostile_variants_value_is_refused_in_words_or_taken(
    app: AppRun, variants: object, said: str | None
):
    submit = next(e for e in events(app.url) if e.trigger == "submit")
    names = [None] * len(submit.inputs)
    inputs: list[object] = [{"text": "a fox", "files": []}, "", "", "hostile-variants-owner-01", *names[4:]]
    inputs[-1] = variants  # the Variants slider is the event's last input
    result = call(app.url, submit, inputs)
    assert result.error is None, result.raw[-600:]
    chat = result.last[0]
    if said is None:
        assert "\u26a0" not in str(chat[-1]["content"])  # answered
    else:
        assert said in str(chat[-1]["content"])
