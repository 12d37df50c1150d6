"""What idle watchers of a shared conversation cost the server, and how soon they see a new turn.

The real app (app.py's ``build_app`` and ``serve``, in a process of its own, on the emulator and
SQLite) with SQLAlchemy counting every transaction and statement on its engine; the counts go to a
file twice a second (``--serve`` mode of this module: the app's code is untouched). Debian's
chromium, through Playwright, opens N pages on a read-only share link of one conversation (each
page its own browser context, as N teammates), then:

1. **idle watching**, ``--seconds``: nothing changes; the app's transactions, writes and SELECTs
   and its CPU seconds (user+system of the app process, /proc/<pid>/stat) per viewer per minute,
   and the browsers' CPU seconds (every process Playwright started);
2. **latency**, ``--turns`` turns sent from the owner's page (each held ``--answer-s`` at the
   emulator, so the working state is on screen a while): for each watcher, from the answer's
   transaction committing (the app's wall clock) to the watcher's page showing it (the page's
   ``Date.now()``: the same machine's clock), also from the owner's page showing it, and whether
   the working bubble came first (tests/test_browser_live.py's recorder); the app's and the
   browsers' CPU seconds per turn; with ``--light M``, M more watchers without a browser
   (``LightWatcher``: the page's events over HTTP), so the server's share of the delay is measured
   without M browsers on the app's cores;
3. **baseline**, ``--seconds``: the same N pages with no conversation open (their timers
   inactive): what the pages cost without watching, subtracted from 1.

    python -m bench.live_view [--viewers 10] [--light 0] [--seconds 60] [--turns 5] [--answer-s 2] [--tag T]
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
    return _stat(Path(f"/proc/{pid}/stat"))[1]


def _stat(path: Path) -> tuple[int, float]:
    """A /proc/<pid>/stat's parent pid and CPU seconds so far (user plus system)."""
    fields = path.read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf(
        "SC_CLK_TCK"
    )  # ppid, utime, stime


def descendants_cpu_seconds(root: int, leave_out: int) -> float:
    """CPU seconds so far of ``root``'s descendant processes (here the browsers Playwright started),
    without ``leave_out``'s tree (the app): what the pages cost the machine the app runs on."""
    processes: dict[int, tuple[int, float]] = {}  # pid: (parent pid, CPU seconds)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            processes[int(stat.parent.name)] = _stat(stat)
        except (OSError, ValueError):
            continue  # gone meanwhile

    def under(pid: int, ancestor: int) -> bool:
        while pid > 1:
            if pid == ancestor:
                return True
            pid = processes.get(pid, (0, 0.0))[0]
        return False

    return sum(
        cpu
        for pid, (_, cpu) in processes.items()
        if pid != root and under(pid, root) and not under(pid, leave_out)
    )


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
        app_cpu, browsers_cpu = self.cpu()
        return {**counts, "cpu_s": app_cpu, "browsers_cpu_s": browsers_cpu, "at": time.perf_counter()}

    def cpu(self) -> tuple[float, float]:
        """CPU seconds so far of the app and of the browsers (this process's other descendants)."""
        return cpu_seconds(self.process.pid), descendants_cpu_seconds(os.getpid(), self.process.pid)

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
        key: after[key] - before[key]
        for key in ("transactions", "writes", "selects", "statements", "cpu_s", "browsers_cpu_s")
    }
    per = {f"{key}_per_viewer_per_min": round(value / viewers / minutes, 4) for key, value in delta.items()}
    return {
        "seconds": round(after["at"] - before["at"], 1),
        **{k: round(v, 3) for k, v in delta.items()},
        **per,
    }


# --- watchers without a browser ----------------------------------------------------------------


def event_indexes(url: str) -> dict[str, int]:
    """The page's watch events by handler name (``on_tick``, ``on_changed``, ``on_progressed``), from
    Gradio's config."""
    dependencies = httpx.get(f"{url}/config", timeout=30).raise_for_status().json()["dependencies"]
    names = ("on_tick", "on_changed", "on_progressed")
    return {d["api_name"]: i for i, d in enumerate(dependencies) if d.get("api_name") in names}


def image_urls(value: Any) -> int:
    """How many served files a chat value names (its images)."""
    if isinstance(value, dict):
        found = int("/file=" in str(value.get("url") or ""))
        return found + sum(image_urls(v) for k, v in value.items() if k != "url")
    if isinstance(value, list):
        return sum(image_urls(v) for v in value)
    return 0


class LightWatcher(threading.Thread):
    """A share link's page as the server sees it, without a browser: every second the tick event
    (the page's three hidden boxes sent back as the last answer gave them), and the render events
    when the tick changed ``changed`` or ``progressed``, over Gradio's HTTP route as the page's own
    script posts them. Records when a render first named one image more than the one before the
    turn (``time.time()``, the app's clock), so the server's share of a watcher's delay is measured
    without N browsers on the same cores."""

    def __init__(self, url: str, events: dict[str, int], conversation_id: str, token: str) -> None:
        super().__init__(daemon=True)
        self._url, self._events = f"{url}/gradio_api/run/predict", events
        self._watched = [None, conversation_id, token]  # a null owner: a fresh id, as a new browser
        self._boxes: list[Any] = ["", "", ""]
        self._session = os.urandom(8).hex()
        self.stopped, self.rendered = threading.Event(), threading.Event()  # rendered: once, at least
        self.shown, self.images, self.answer_at = 0, 0, 0.0  # images: the answer's count, once expected
        self.start()

    def expect_answer(self) -> None:
        """The next turn: its answer is one image more than the chat shows now."""
        self.images, self.answer_at = self.shown + 1, 0.0

    def _event(self, client: httpx.Client, name: str, data: list[Any]) -> list[Any]:
        body = {
            "data": data,
            "fn_index": self._events[name],
            "session_hash": self._session,
            "event_data": None,
        }
        return client.post(self._url, json=body, timeout=60).raise_for_status().json()["data"]

    def run(self) -> None:
        with httpx.Client() as client:
            while not self.stopped.wait(1.0):
                before = self._boxes
                self._boxes = self._event(client, "on_tick", [*self._watched, *before])
                if self._boxes[2] != before[2]:
                    self._event(client, "on_progressed", self._watched)
                if self._boxes[1] != before[1]:
                    self.shown = image_urls(self._event(client, "on_changed", self._watched)[0])
                    self.rendered.set()
                    if self.images and not self.answer_at and self.shown >= self.images:
                        self.answer_at = time.time()


# --- the pages -------------------------------------------------------------------------------


def images(page: Page) -> int:
    return int(page.evaluate("() => document.querySelectorAll('#chat img').length"))


def wait_images(page: Page, at_least: int) -> None:
    page.wait_for_function(
        f"() => document.querySelectorAll('#chat img').length >= {at_least}", timeout=TIMEOUT_MS
    )


def send(page: Page, text: str) -> None:
    """Type and send ``text``, until the chat shows it (``fill`` waits for the box, which opens once
    the page's load event has answered)."""
    page.fill("#box textarea", text)
    page.keyboard.press("Enter")
    page.wait_for_function(
        "(text) => document.querySelector('#chat').innerText.includes(text)", arg=text, timeout=TIMEOUT_MS
    )


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

        # Watchers without a browser, for the latency only (the idle rows are the browsers' pages).
        conversation_id = own_url.split("?c=", 1)[1].split("&", 1)[0]
        token = link.group(1).split("?s=", 1)[1]
        events = event_indexes(app.url)
        light = [LightWatcher(app.url, events, conversation_id, token) for _ in range(args.light)]
        stack.callback(lambda: [watcher.stopped.set() for watcher in light])
        for watcher in light:
            assert watcher.rendered.wait(TIMEOUT_MS / 1000), "a watcher without a browser never rendered"
        owner.goto(own_url)
        wait_images(owner, 1)
        delays: list[float] = []
        light_delays: list[float] = []
        working_first = 0
        samples: list[dict[str, Any]] = []
        cpu_before = app.cpu()
        for turn in range(args.turns):
            for page in (owner, *watchers):  # each page's own count: a page may hold more images
                page.evaluate(RECORD_JS, images(page) + 1)
            for watcher in light:
                watcher.expect_answer()
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
            deadline = time.monotonic() + TIMEOUT_MS / 1000
            while not all(w.answer_at for w in light) and time.monotonic() < deadline:
                time.sleep(0.05)
            light_delays += [w.answer_at - stored_at / 1000 for w in light if w.answer_at]
        cpu_after = app.cpu()
        owner.goto("about:blank")
        for watcher in light:  # the baseline is the browsers' pages alone
            watcher.stopped.set()
            watcher.join()

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
        "light_watchers": args.light,
        "light_latency_from_answer_stored_s": {
            "samples": len(light_delays),
            "missed": args.light * args.turns - len(light_delays),
            "p50": round(percentile(light_delays, 50), 3),
            "p90": round(percentile(light_delays, 90), 3),
            "max": round(max(light_delays, default=float("nan")), 3),
        },
        # While the turns ran, per turn: the app's CPU and the browsers' (the owner's page and the
        # watchers', all on the app's machine here; a teammate's browser is on their own).
        "cpu_s_per_turn": {
            "app": round((cpu_after[0] - cpu_before[0]) / args.turns, 3),
            "browsers": round((cpu_after[1] - cpu_before[1]) / args.turns, 3),
        },
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
    parser.add_argument("--light", type=int, default=0, help="watchers without a browser, for the latency")
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
    keys = ("transactions", "writes", "selects", "cpu_s", "browsers_cpu_s")
    rows = [
        ["", "transactions", "writes", "SELECTs", "CPU s", "browsers' CPU s"],
        [
            "idle watching, per viewer per min",
            *(watching[f"{k}_per_viewer_per_min"] for k in keys),
        ],
        [
            "no conversation open, per viewer per min",
            *(baseline[f"{k}_per_viewer_per_min"] for k in keys),
        ],
    ]
    print(table(rows))  # noqa: T201 - the summary
    print(  # noqa: T201
        f"answer stored -> on the watcher's page: p50 {latency['p50']} s, p90 {latency['p90']} s, max {latency['max']} s "
        f"({latency['samples']} samples); working bubble first: {result['working_seen_before_answer']}\n"
        f"CPU-s per turn: app {result['cpu_s_per_turn']['app']}, browsers {result['cpu_s_per_turn']['browsers']}\n"
        f"{args.light} watchers without a browser, answer stored -> rendered for them: {result['light_latency_from_answer_stored_s']}\n"
        f"written: {path}"
    )


if __name__ == "__main__":
    main()
