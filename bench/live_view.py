"""What idle watchers of a shared conversation cost the server, and how soon they see a new turn.

The real app (app.py's ``build_app`` and ``serve``, in a process of its own, on the emulator and
SQLite) with SQLAlchemy counting every transaction and statement on its engine; the counts go to a
file twice a second (``--serve`` mode of this module: the app's code is untouched). Debian's
chromium, through Playwright, opens N pages on a read-only share link of one conversation (each
page its own browser context, as N teammates), then:

1. **idle watching**, ``--seconds``: nothing changes; the app's transactions, writes and SELECTs
   and its CPU seconds (user+system of the app process, /proc/<pid>/stat) per viewer per minute;
2. **latency**, ``--turns`` turns sent from the owner's page (each held ``--answer-s`` at the
   emulator, so the working state is on screen a while): for each watcher, from the answer's
   transaction committing (the app's wall clock) to the watcher's page showing it (the page's
   ``Date.now()``: the same machine's clock), also from the owner's page showing it, and whether
   the working bubble came first (tests/test_browser_live.py's recorder);
3. **baseline**, ``--seconds``: the same N pages with no conversation open (their timers
   inactive): what the pages cost without watching, subtracted from 1.

    python -m bench.live_view [--viewers 10] [--seconds 60] [--turns 5] [--answer-s 2] [--tag T]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from bench.common import NO_LIMITS, emulator_process, percentile, stop, table, wait_http, write_json
from tests.app_process import app_env, free_port
from tests.test_browser import ARGS, CHROMIUM
from tests.test_browser_live import RECORD_JS

TIMEOUT_MS = 60_000
ROOT = Path(__file__).resolve().parents[1]


# --- the app, counted ------------------------------------------------------------------------


def serve_counted(counts_path: Path) -> None:
    """app.py's ``main`` without its drain, with the engine's transactions and statements counted
    and written to ``counts_path`` twice a second; runs until SIGTERM (the default action ends it)."""
    from sqlalchemy import event

    import app
    from chat.server.lifecycle import Lifecycle

    os.umask(0o077)
    os.environ.setdefault("GRADIO_TEMP_DIR", str(app.private_dir(app.runtime_dir() / "gradio")))
    os.environ["FORWARDED_ALLOW_IPS"] = ""
    settings = app.read_settings()
    engine = app.open_database(settings)
    counts = {"transactions": 0, "writes": 0, "selects": 0, "statements": 0}
    commits: deque[float] = deque(maxlen=20)  # when the newest write transactions committed
    lock = threading.Lock()

    def begin(connection: Any) -> None:
        with lock:
            counts["transactions"] += 1
            counts["writes"] += not connection.get_execution_options().get("retouch_read_only", False)

    def statement(_connection: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        with lock:
            counts["statements"] += 1
            counts["selects"] += sql.lstrip().upper().startswith("SELECT")

    def commit(connection: Any) -> None:
        if not connection.get_execution_options().get("retouch_read_only", False):
            with lock:
                commits.append(time.time())  # the machine's wall clock, as the pages' Date.now()

    event.listen(engine, "begin", begin)
    event.listen(engine, "before_cursor_execute", statement)
    event.listen(engine, "commit", commit)
    with ExitStack() as resources:
        demo, _service = app.build_app(settings, resources=resources, engine=engine)
        app.serve(demo, settings, engine, Lifecycle(notice_s=settings.shutdown_notice_s))
        while True:
            with lock:
                snapshot = {**counts, "write_commits": list(commits)}
            partial = counts_path.with_suffix(".tmp")
            partial.write_text(json.dumps(snapshot))
            partial.replace(counts_path)
            time.sleep(0.5)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of a process so far, from /proc/<pid>/stat (psutil is not installed)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime: fields 14, 15


class CountedApp:
    """The ``--serve`` child: its URL, its process (for CPU) and its counts file."""

    def __init__(self, work: Path, emulator_url: str) -> None:
        self.port = free_port()
        self.counts_path = work / "counts.json"
        self.log = open(work / "app.log", "w")  # noqa: SIM115 - closed in close()
        env = app_env(work / "data", emulator_url, RETOUCH_PORT=str(self.port), **NO_LIMITS)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.live_view", "--serve", str(self.counts_path)],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        wait_http(f"{self.url}/healthz", process=self.process)

    def sample(self) -> dict[str, Any]:
        """The counts so far (waiting for the next write, so nothing older than 0.5 s) and CPU seconds."""
        time.sleep(0.6)
        counts = json.loads(self.counts_path.read_text())
        return {**counts, "cpu_s": cpu_seconds(self.process.pid), "at": time.perf_counter()}

    def close(self) -> None:
        stop(self.process)
        self.log.close()


def window(app: CountedApp, seconds: float, viewers: int) -> dict[str, float]:
    """What the app did in ``seconds`` of nothing happening, per viewer per minute."""
    before = app.sample()
    time.sleep(seconds)
    after = app.sample()
    minutes = (after["at"] - before["at"]) / 60
    delta = {
        key: after[key] - before[key] for key in ("transactions", "writes", "selects", "statements", "cpu_s")
    }
    per = {f"{key}_per_viewer_per_min": round(value / viewers / minutes, 4) for key, value in delta.items()}
    return {
        "seconds": round(after["at"] - before["at"], 1),
        **{k: round(v, 3) for k, v in delta.items()},
        **per,
    }


# --- the pages -------------------------------------------------------------------------------


def images(page: Page) -> int:
    return int(page.evaluate("() => document.querySelectorAll('#chat img').length"))


def wait_images(page: Page, at_least: int) -> None:
    page.wait_for_function(
        f"() => document.querySelectorAll('#chat img').length >= {at_least}", timeout=TIMEOUT_MS
    )


def send(page: Page, text: str) -> None:
    """Type and send ``text``, until the chat shows it: on a busy machine a page that has only just
    loaded may take the keys before Gradio listens for them."""
    for _ in range(3):
        page.fill("#box textarea", text)
        page.keyboard.press("Enter")
        try:
            page.wait_for_function(
                "(text) => document.querySelector('#chat').innerText.includes(text)", arg=text, timeout=10_000
            )
            return
        except PlaywrightTimeout:
            continue
    raise RuntimeError(f"the page never sent {text!r}")


def seen(page: Page, what: str) -> float | None:
    """When the page first showed ``what`` (ms since the epoch), once it has shown the answer."""
    page.wait_for_function("() => window.retouchSeen && window.retouchSeen.answer", timeout=TIMEOUT_MS)
    value = page.evaluate(f"() => window.retouchSeen.{what} || null")
    return None if value is None else float(value)


def run(args: argparse.Namespace) -> dict[str, Any]:
    loadavg_at_start = [round(x, 2) for x in os.getloadavg()]  # the machine is shared: how busy it was
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="retouch-live-")))
        emulator = stack.enter_context(emulator_process())
        app = CountedApp(work, emulator.url)
        stack.callback(app.close)
        playwright = stack.enter_context(sync_playwright())
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        stack.callback(browser.close)

        owner = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
        owner.goto(app.url)
        owner.wait_for_selector("#box textarea")
        send(owner, "a lighthouse at dusk")
        wait_images(owner, 1)
        owner.click("#share-box button")
        owner.click("#share-view")
        owner.wait_for_function(
            "() => document.querySelector('#share-links').innerText.includes('?s=')", timeout=TIMEOUT_MS
        )
        link = re.search(r"(http\S+\?s=[\w-]+)", owner.locator("#share-links").inner_text())
        assert link is not None
        owner.wait_for_url(re.compile(r".*\?c="), timeout=TIMEOUT_MS)  # the page's own address for it
        own_url = owner.url
        owner.goto("about:blank")  # the owner's page would tick too: it is not one of the viewers

        watchers = [
            browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
            for _ in range(args.viewers)
        ]
        for page in watchers:
            page.goto(link.group(1))
        for page in watchers:
            wait_images(page, 1)
        time.sleep(2.0)  # every page has ticked once and seen the stamp: from here on, idle

        watching = window(app, args.seconds, args.viewers)

        owner.goto(own_url)
        wait_images(owner, 1)
        delays: list[float] = []
        working_first = 0
        samples: list[dict[str, Any]] = []
        for turn in range(args.turns):
            for page in (owner, *watchers):  # each page's own count: a page may hold more images
                page.evaluate(RECORD_JS, images(page) + 1)
            emulator_slow(emulator.url, args.answer_s)
            send(owner, f"now warmer light, take {turn + 1}")
            owner_at = seen(owner, "answer")
            assert owner_at is not None
            # The answer's transaction: the last write before the owner's page showed it (the
            # watchers only read).
            stored_at = 1000 * max(t for t in app.sample()["write_commits"] if t * 1000 <= owner_at)
            for page in watchers:
                answer_at, working_at = seen(page, "answer"), seen(page, "working")
                assert answer_at is not None
                delays.append((answer_at - stored_at) / 1000)
                working_first += working_at is not None and working_at < answer_at
                samples.append(
                    {
                        "turn": turn,
                        "from_stored_s": round(delays[-1], 3),
                        "from_owners_page_s": round((answer_at - owner_at) / 1000, 3),
                        "owners_page_from_stored_s": round((owner_at - stored_at) / 1000, 3),
                        "working_for_s": None
                        if working_at is None
                        else round((answer_at - working_at) / 1000, 3),
                    }
                )
        owner.goto("about:blank")

        for page in watchers:
            page.goto(app.url)
            page.wait_for_selector("#box textarea")
        time.sleep(2.0)
        baseline = window(app, args.seconds, args.viewers)

    marginal_cpu = watching["cpu_s_per_viewer_per_min"] - baseline["cpu_s_per_viewer_per_min"]
    return {
        "loadavg_at_start": loadavg_at_start,
        "viewers": args.viewers,
        "seconds": args.seconds,
        "turns": args.turns,
        "answer_s": args.answer_s,
        "idle_watching": watching,
        "baseline_no_conversation_open": baseline,
        "watching_cpu_s_per_viewer_per_min_over_baseline": round(marginal_cpu, 4),
        "latency_from_answer_stored_s": {
            "samples": len(delays),
            "p50": round(percentile(delays, 50), 3),
            "p90": round(percentile(delays, 90), 3),
            "max": round(max(delays), 3),
            "min": round(min(delays), 3),
        },
        "working_seen_before_answer": f"{working_first}/{len(delays)}",
        "samples": samples,
    }


def emulator_slow(url: str, seconds: float) -> None:
    """The next answer waits ``seconds`` at the emulator (a queued ``slow`` fault)."""
    httpx.post(f"{url}/_emulator/faults", json={"faults": [f"slow:{seconds}"]}, timeout=10).raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--viewers", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--answer-s", type=float, default=2.0)
    parser.add_argument("--tag", default="")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)  # the counted app (a child)
    args = parser.parse_args()
    if args.serve is not None:
        serve_counted(args.serve)
        return
    result = run(args)
    path = write_json(f"live_view{'_' + args.tag if args.tag else ''}", False, result)
    watching, baseline, latency = (
        result["idle_watching"],
        result["baseline_no_conversation_open"],
        result["latency_from_answer_stored_s"],
    )
    rows = [
        ["", "transactions", "writes", "SELECTs", "CPU s"],
        [
            "idle watching, per viewer per min",
            *(watching[f"{k}_per_viewer_per_min"] for k in ("transactions", "writes", "selects", "cpu_s")),
        ],
        [
            "no conversation open, per viewer per min",
            *(baseline[f"{k}_per_viewer_per_min"] for k in ("transactions", "writes", "selects", "cpu_s")),
        ],
    ]
    print(table(rows))  # noqa: T201 - the summary
    print(  # noqa: T201
        f"answer stored -> on the watcher's page: p50 {latency['p50']} s, p90 {latency['p90']} s, max {latency['max']} s "
        f"({latency['samples']} samples); working bubble first: {result['working_seen_before_answer']}\nwritten: {path}"
    )


if __name__ == "__main__":
    main()
