"""4 variants at 1 s provider latency: all four shown <= 1.3 s after Enter (they run in parallel).

How: the emulator in its own process answers every Gemini request after ``--latency-ms``
(default 1000); ``python app.py`` runs on it (SQLite, disk images). In Debian's chromium
(Playwright), with Variants set to 4, a new conversation's first message (a 512x384 photo and a
sentence) is sent with Enter; the time is from the key press until the grid under the chat shows
four images (``#variants-grid img``). Then the same through the API: ``gradio_client``'s
``/send`` with ``options.variants = 4``, from the call until the transcript with four answers
is back. And, for comparison, the browser's time for one answer (Variants = 1, until the answer's
image is in the chat). ``--rounds`` of each (default 5); a serial run would take 4 x latency.

Writes ``bench/results/variants.json`` (every round, and the machine).

    python -m bench.variants [--quick] [--rounds N] [--latency-ms L]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from gradio_client import Client, handle_file
from playwright.sync_api import sync_playwright

from bench.common import app_process, emulator_process, jpeg_bytes, machine, photo, table, write_json
from tests.test_browser import ARGS, CHROMIUM

TARGET_S = 1.3


def browser_rounds(url: str, picture: Path, rounds: int, variants: int = 4) -> list[float]:
    """Seconds from Enter until every variant is on the page (the grid's four, or a lone answer
    in the chat), one new conversation a round."""
    times = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        page = browser.new_context(viewport={"width": 1500, "height": 1300}).new_page()
        page.goto(url)
        page.wait_for_selector("#box textarea")
        for round_ in range(rounds):
            if round_:
                page.click("#new-conversation")
                page.wait_for_function("() => document.querySelectorAll('#variants-grid img').length === 0")
            number = page.locator("#variants input[type=number]")
            number.fill(str(variants))
            number.press("Enter")
            # A new name each round: a file input given the file it holds already fires no change.
            named = picture.with_name(f"street-{round_}.jpg")
            named.write_bytes(picture.read_bytes())
            page.locator("#box input[type=file]").set_input_files(str(named))
            page.wait_for_selector("#box img")
            page.fill("#box textarea", "make the sky stormy")
            started = time.perf_counter()
            page.keyboard.press("Enter")
            shown = "#variants-grid img" if variants > 1 else "#chat img"
            page.wait_for_function(
                f"() => document.querySelectorAll('{shown}').length >= {variants if variants > 1 else 2}",
                timeout=30_000,
                polling=5,
            )
            times.append(time.perf_counter() - started)
        browser.close()
    return times


def api_rounds(url: str, picture: Path, rounds: int) -> list[float]:
    """Seconds of one ``/send`` with four variants, until its transcript is back."""
    client = Client(url, verbose=False)
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        transcript: dict[str, Any] = client.predict(
            "", "make the sky stormy", [handle_file(str(picture))], {"variants": 4}, api_name="/send"
        )
        times.append(time.perf_counter() - started)
        answers = [t for t in transcript["turns"] if t["role"] == "assistant" and t["status"] == "ok"]
        assert len(answers) == 4, transcript
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of each")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--latency-ms", type=float, default=1000)
    args = parser.parse_args()
    rounds = 2 if args.quick else args.rounds
    with tempfile.TemporaryDirectory() as tmp, emulator_process(args.latency_ms) as emulator:
        picture = Path(tmp) / "street.jpg"
        picture.write_bytes(jpeg_bytes(photo(512).resize((512, 384))))
        with app_process(Path(tmp) / "data", emulator.url) as app:
            browser = browser_rounds(app.url, picture, rounds)
            single = browser_rounds(app.url, picture, rounds, variants=1)
            api = api_rounds(app.url, picture, rounds)
    result = {
        "machine": machine(),
        "latency_ms": args.latency_ms,
        "target_s": TARGET_S,
        "browser_s": browser,
        "api_s": api,
        "browser_one_answer_s": single,
        "browser_median_s": statistics.median(browser),
        "api_median_s": statistics.median(api),
    }
    path = write_json("variants", args.quick, result)
    rows = [["", "median s", "max s", "target s"]]
    rows += [
        [name, f"{statistics.median(v):.3f}", f"{max(v):.3f}", TARGET_S]
        for name, v in (("browser", browser), ("api", api), ("browser, 1 answer", single))
    ]
    print(table(rows), f"\nwritten {path}")  # noqa: T201 - the summary table


if __name__ == "__main__":
    main()
