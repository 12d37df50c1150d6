"""From the emulator sending a draft to the draft visible in the browser (target: p50 <= 150 ms).

The real app (``python app.py``, ``GEMINI_MODEL=gemini-3-pro-image``, streaming on as by default)
on the emulator (``python -m tests.emulator --chunk-delay-ms D``: each chunk of a streamed answer
waits D ms, so a draft stays on screen a while and the final image comes later), driven by Debian's
chromium through Playwright as a user would: type a prompt, press Enter, wait for the final image.
Pro's answer has one thought image (a draft) per turn, so the figure is over many turns; a new
conversation every ``--per-conversation`` turns keeps the chat the size of a real one.

Both ends use the machine's wall clock: the emulator notes ``time.time()`` just before it sends
each draft's event (``"drafts"`` in its request log, tests/emulator/streaming.py), the page's
MutationObserver notes ``Date.now()`` when an ``img`` whose src names that draft (``draft-<sha256>``,
chat/ui/files.py) appears in the chat and when it has loaded. Pairs are made by the sha256. Where the
time goes, from the browser's side: the draft file's Resource Timing (request start, response end)
splits "sent -> shown" into the app and Gradio until the page has the message (``to_dom``), the
file's fetch, and decoding until ``load``.

    python -m bench.progress_latency [--turns 25] [--per-conversation 5] [--chunk-delay-ms 300]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, sync_playwright

from bench.common import app_process, emulator_process, summary_ms, table, write_json
from tests.test_browser import ARGS, CHROMIUM

MODEL = "gemini-3-pro-image"
TIMEOUT_MS = 60_000
TARGET_P50_MS = 150.0

#: Installed once in the page: every draft ``img`` of the chat, when it appeared and when it loaded.
OBSERVE_JS = """() => {
  window.draftsSeen = [];
  performance.setResourceTimingBufferSize(100000);  // Gradio's own files fill the default 250
  const seen = new Set();
  const note = (img) => {
    if (seen.has(img) || !img.src.includes('draft-')) { return; }
    seen.add(img);
    const record = {src: img.src, added: Date.now(), loaded: null};
    window.draftsSeen.push(record);
    const loaded = () => { if (record.loaded === null) { record.loaded = Date.now(); } };
    if (img.complete && img.naturalWidth > 0) { loaded(); } else { img.addEventListener('load', loaded); }
  };
  const scan = (node) => {
    if (node.nodeType !== 1) { return; }
    if (node.tagName === 'IMG') { note(node); }
    node.querySelectorAll('img').forEach(note);
  };
  new MutationObserver((mutations) => {
    for (const m of mutations) {
      if (m.type === 'attributes') { scan(m.target); } else { m.addedNodes.forEach(scan); }
    }
  }).observe(document.querySelector('#chat'), {subtree: true, childList: true, attributes: true,
                                                attributeFilter: ['src']});
}"""

#: The draft files' Resource Timing, on the wall clock (``timeOrigin`` + the entry's times).
TIMINGS_JS = """() => performance.getEntriesByType('resource')
  .filter(e => e.name.includes('draft-'))
  .map(e => ({src: e.name, start: performance.timeOrigin + e.startTime,
              end: performance.timeOrigin + e.responseEnd}))"""


def final_image_count(page: Page) -> int:
    return int(
        page.evaluate(
            "() => [...document.querySelectorAll('#chat img')].filter(i => !i.src.includes('draft-')).length"
        )
    )


def one_turn(page: Page, prompt: str) -> None:
    """Send ``prompt`` and wait until its answer replaced the draft (the Stop button gone again)."""
    finals = final_image_count(page)
    page.fill("#box textarea", prompt)
    page.keyboard.press("Enter")
    page.wait_for_selector("#stop", state="visible", timeout=TIMEOUT_MS)
    page.wait_for_function(
        """(n) => [...document.querySelectorAll('#chat img')].filter(i => !i.src.includes('draft-')).length > n
                  && !document.querySelector('#chat').innerText.includes('the final image replaces it')""",
        arg=finals,
        timeout=TIMEOUT_MS,
    )
    page.wait_for_selector("#stop", state="hidden", timeout=TIMEOUT_MS)


def sha_of(src: str) -> str:
    return src.rsplit("draft-", 1)[1].split(".", 1)[0]


def pair(
    sent: list[dict[str, Any]], seen: list[dict[str, Any]], timings: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """One row per draft sent: its latencies (ms) to the page's ``img``, to its load, and the fetch."""
    shown = {sha_of(s["src"]): s for s in seen}
    fetched: dict[str, dict[str, Any]] = {}
    for timing in timings:
        fetched.setdefault(sha_of(timing["src"]), timing)  # the first fetch of a draft is the one shown
    rows = []
    for draft in sent:
        sha, at = draft["sha256"], draft["sent_at"] * 1000
        row: dict[str, Any] = {"sha256": sha, "sent_at_ms": round(at, 1)}
        if sha in shown:
            row["to_dom_ms"] = round(shown[sha]["added"] - at, 1)
            if shown[sha]["loaded"] is not None:
                row["to_loaded_ms"] = round(shown[sha]["loaded"] - at, 1)
        if sha in fetched:
            row["fetch_start_ms"] = round(fetched[sha]["start"] - at, 1)
            row["fetch_ms"] = round(fetched[sha]["end"] - fetched[sha]["start"], 1)
        rows.append(row)
    return rows


def busy_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine so far, from /proc/stat (psutil is a bench extra)."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def run(turns: int, per_conversation: int, chunk_delay_ms: float, tmp: Path) -> dict[str, Any]:
    sent: list[dict[str, Any]] = []
    with (
        emulator_process(chunk_delay_ms=chunk_delay_ms, log_path=tmp / "emulator.log") as emulator,
        app_process(tmp / "data", emulator.url, extra_env={"GEMINI_MODEL": MODEL}) as app,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        page = browser.new_context(viewport={"width": 1500, "height": 1000}).new_page()
        page.goto(app.url)
        page.wait_for_selector("#box textarea")
        page.wait_for_load_state("networkidle")
        page.evaluate(OBSERVE_JS)
        with httpx.Client(base_url=emulator.url, timeout=30) as control:
            for n in range(turns):
                if n and n % per_conversation == 0:
                    page.click("#new-conversation")
                    page.wait_for_function(
                        "() => document.querySelectorAll('#chat img').length === 0", timeout=TIMEOUT_MS
                    )
                one_turn(page, f"a lighthouse at dusk, take {n + 1}")
                for entry in control.get("/_emulator/requests").raise_for_status().json():
                    sent.extend(entry.get("drafts", []))
                control.delete("/_emulator/requests").raise_for_status()
        seen = page.evaluate("() => window.draftsSeen")
        timings = page.evaluate(TIMINGS_JS)
        browser.close()
    rows = pair(sent, seen, timings)
    return {"rows": rows, "drafts_sent": len(sent), "drafts_seen": len(seen)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--turns", type=int, default=25)
    parser.add_argument("--per-conversation", type=int, default=5)
    parser.add_argument("--chunk-delay-ms", type=float, default=300)
    parser.add_argument("--tag", default="")
    args = parser.parse_args()

    environment: dict[str, Any] = {"loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}
    busy0, total0 = busy_jiffies()
    with tempfile.TemporaryDirectory(prefix="progress-latency-") as tmp:
        result = run(args.turns, args.per_conversation, args.chunk_delay_ms, Path(tmp))
    busy1, total1 = busy_jiffies()
    environment["machine_busy_share"] = round((busy1 - busy0) / max(1, total1 - total0), 3)
    rows = result["rows"]
    figures = {
        key: summary_ms([r[key] / 1000 for r in rows if key in r])
        for key in ("to_dom_ms", "to_loaded_ms", "fetch_start_ms", "fetch_ms")
    }
    name = "progress_latency" + (f"_{args.tag}" if args.tag else "")
    path = write_json(
        name,
        False,
        {
            "settings": vars(args) | {"model": MODEL},
            "environment": environment,
            "drafts_sent": result["drafts_sent"],
            "drafts_seen": result["drafts_seen"],
            "figures": figures,
            "rows": rows,
        },
    )
    header = ["from the draft sent to", "n", "p50 ms", "p90 ms", "max ms", "mean ms"]
    labels = {
        "to_dom_ms": "its img in the page",
        "to_loaded_ms": "its img loaded (shown)",
        "fetch_start_ms": "the file's request",
        "fetch_ms": "(the file's fetch itself)",
    }
    lines = [header] + [
        [labels[k], f["n"], f["p50_ms"], f["p90_ms"], f["max_ms"], f["mean_ms"]] for k, f in figures.items()
    ]
    print(table(lines))  # noqa: T201
    shown = [r["to_loaded_ms"] for r in rows if "to_loaded_ms" in r]
    verdict = "meets" if shown and statistics.median(shown) <= TARGET_P50_MS else "misses"
    print(  # noqa: T201
        f"{result['drafts_seen']} of {result['drafts_sent']} drafts seen; p50 {verdict} the "
        f"{TARGET_P50_MS:g} ms target; environment {environment}; written to {path}"
    )


if __name__ == "__main__":
    main()
