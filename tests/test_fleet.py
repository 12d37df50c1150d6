"""The whole deployment on loopback (issue 14): HAProxy, two replicas, PostgreSQL, an S3 bucket.

One fleet (tests/fleet.py) serves every scenario; the ones that stop a replica start it again on
its port and wait until the balancer sees it UP. Which replica served what is read from the
balancer's log (each client tags itself with its User-Agent). Browsers are Gradio's own frontend
in Debian's chromium (screenshots in ``test-artifacts/``); the crowds are API clients speaking
the browser protocol, each with its own cookie jar, every call's outcome counted.
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.emulator import read_provenance
from tests.emulator.fixtures import EmulatorControl, run_emulator
from tests.fleet import COOKIE, BrowserSession, Fleet, fleet, send
from tests.pictures import png
from tests.postgres import PostgresServer
from tests.s3 import S3Server, raw_bucket
from tests.test_browser import ARGS, ARTIFACTS, CHROMIUM, TIMEOUT_MS, images_in_chat
from tests.test_browser import send as type_and_send

pytestmark = pytest.mark.system

LEASE_TTL_S = 3  # a killed replica's turn reads as interrupted after this
EMULATOR_LATENCY_MS = 200
CROWD = 20


@dataclass
class Deployment:
    fleet: Fleet
    emulator: EmulatorControl
    browser: Browser
    s3: S3Server

    def wait_all_up(self) -> None:
        self.fleet.lb.wait_for_status(self.fleet.all_up())


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer, s3: S3Server
) -> Iterator[Deployment]:
    assert CHROMIUM.exists(), (
        "Debian's chromium is missing: `make test` installs it (apt-get install chromium)"
    )
    ARTIFACTS.mkdir(exist_ok=True)
    with (
        run_emulator(latency_ms=EMULATOR_LATENCY_MS) as emulator_url,
        fleet(
            tmp_path_factory.mktemp("fleet"),
            postgres,
            s3,
            emulator_url,
            app_settings={"RETOUCH_LEASE_TTL_S": str(LEASE_TTL_S)},
        ) as running,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield Deployment(running, EmulatorControl(emulator_url), browser, s3)
        browser.close()


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "street.png"
    path.write_bytes(png((90, 140, 200), (320, 240)))
    return path


def open_page(deployment: Deployment, agent: str, url: str | None = None) -> tuple[BrowserContext, Page]:
    context = deployment.browser.new_context(
        user_agent=agent, viewport={"width": 1500, "height": 1100}, accept_downloads=True
    )
    page = context.new_page()
    page.goto(url or deployment.fleet.lb.url)
    page.wait_for_selector("#chat", timeout=TIMEOUT_MS)
    return context, page


def pinned(context: BrowserContext) -> str:
    return next(c["value"] for c in context.cookies() if c["name"] == COOKIE)


def continue_link(deployment: Deployment, owner: Page) -> str:
    """The owner's "Link teammates can continue", on the balancer's address."""
    owner.click("#share-box button")
    owner.click("#share-continue")
    owner.wait_for_function(
        "() => document.querySelector('#share-links').innerText.includes('?s=')", timeout=TIMEOUT_MS
    )
    token = re.search(r"\?s=([\w-]+)", owner.locator("#share-links").inner_text())
    assert token is not None
    return f"{deployment.fleet.lb.url}?s={token.group(1)}"


def chat_text(page: Page) -> str:
    return page.locator("#chat").inner_text()


def in_order(text: str, *parts: str) -> bool:
    positions = [text.find(part) for part in parts]
    return -1 not in positions and positions == sorted(positions)


def teammates(
    deployment: Deployment, photo: Path, tag: str
) -> tuple[BrowserContext, Page, BrowserContext, Page]:
    """A starts a conversation from a photo and shares a continue link; B opens it in its own context."""
    owner_context, owner = open_page(deployment, f"chromium-{tag}-a")
    owner.locator("#box input[type=file]").set_input_files(str(photo))
    owner.wait_for_selector("#box img", timeout=TIMEOUT_MS)
    type_and_send(owner, f"{tag}: make the sky stormy", images_after=2)
    link = continue_link(deployment, owner)
    mate_context, mate = open_page(deployment, f"chromium-{tag}-b", link)
    images_in_chat(mate, 2)
    return owner_context, owner, mate_context, mate


# --- two browsers on one continue link ------------------------------------------------------------


def test_two_browsers_on_one_continue_link_land_on_different_replicas_and_see_each_others_turns_in_order(
    deployment: Deployment, photo: Path
) -> None:
    owner_context, owner, mate_context, mate = teammates(deployment, photo, "order")
    type_and_send(mate, "order: add a boat", images_after=3)
    owner.reload()
    images_in_chat(owner, 3)
    type_and_send(owner, "order: and a lighthouse", images_after=4)
    mate.reload()
    images_in_chat(mate, 4)
    owner.screenshot(path=str(ARTIFACTS / "fleet-continue-link-a.png"))
    mate.screenshot(path=str(ARTIFACTS / "fleet-continue-link-b.png"))

    messages = ("order: make the sky stormy", "order: add a boat", "order: and a lighthouse")
    assert in_order(chat_text(owner), *messages), chat_text(owner)
    assert in_order(chat_text(mate), *messages), chat_text(mate)
    replicas = {agent: pinned(context) for agent, context in (("a", owner_context), ("b", mate_context))}
    assert sorted(replicas.values()) == ["app1", "app2"]
    for agent, replica in replicas.items():
        logged = [r for r in deployment.fleet.lb.requests() if r.agent == f"chromium-order-{agent}"]
        assert {r.server for r in logged} == {replica}, logged
        assert {"/gradio_api/queue/join", "/gradio_api/queue/data"} <= {r.path for r in logged}
    owner_context.close()
    mate_context.close()


# --- an image made on A, opened, downloaded and edited on B ----------------------------------------


def test_an_image_made_on_one_replica_opens_downloads_and_is_edited_on_the_other(
    deployment: Deployment, photo: Path
) -> None:
    owner_context, _owner, mate_context, mate = teammates(deployment, photo, "image")
    made_on, opened_on = pinned(owner_context), pinned(mate_context)
    mate.click("#versions-box button")
    mate.wait_for_selector("#download-version:not([disabled])", timeout=TIMEOUT_MS)
    with mate.expect_download(timeout=TIMEOUT_MS) as download:
        mate.click("#download-version")
    downloaded = Path(download.value.path()).read_bytes()
    deployment.emulator.clear_requests()
    type_and_send(mate, "image: now remove the car", images_after=3)
    mate.screenshot(path=str(ARTIFACTS / "fleet-image-edited-on-b.png"))
    [edit] = deployment.emulator.requests()

    made = hashlib.sha256(downloaded).hexdigest()
    assert made_on != opened_on
    assert read_provenance(downloaded)["contents"] == 1  # the emulator's answer to A's first message
    stored = [o["path"] for o in raw_bucket(deployment.s3, deployment.fleet.bucket).list().collect()]
    assert any(made in key for key in stored), stored
    # B sent A's answer back to the model as the very bytes A stored
    replayed = [
        p["inlineData"]["data"] for c in edit["body"]["contents"] for p in c["parts"] if "inlineData" in p
    ]
    assert made in {hashlib.sha256(base64.b64decode(data)).hexdigest() for data in replayed}
    logged = [r for r in deployment.fleet.lb.requests() if r.agent == "chromium-image-b"]
    assert {r.server for r in logged} == {opened_on}, logged
    assert any(r.path.startswith("/gradio_api/file=") for r in logged)  # the chat's images, from B
    assert "image: now remove the car" in chat_text(mate)
    owner_context.close()
    mate_context.close()


# --- a replica SIGKILLed mid-turn ---------------------------------------------------------------------


def test_a_replica_killed_mid_turn_leaves_the_turn_interrupted_and_retry_answers_it_on_the_other(
    deployment: Deployment,
) -> None:
    running = deployment.fleet
    context, page = open_page(deployment, "chromium-killed")
    doomed = running.replica(pinned(context))
    type_and_send(page, "killed: a lighthouse at dusk", images_after=1)
    deployment.emulator.queue_faults("gemini:slow:30")
    page.fill("#box textarea", "killed: make it stormy")
    page.keyboard.press("Enter")
    deadline = time.monotonic() + 30
    while not any("make it stormy" in str(r["body"]) for r in deployment.emulator.requests()):
        assert time.monotonic() < deadline, "the turn never reached the provider"
        time.sleep(0.05)
    killed_at = len(running.lb.requests())
    doomed.kill()
    deployment.emulator.clear_faults()

    deadline = time.monotonic() + LEASE_TTL_S + 30
    while "interrupted" not in chat_text(page):  # in progress until the dead replica's lease expires
        assert time.monotonic() < deadline, chat_text(page)
        page.reload()
        page.wait_for_selector("#chat", timeout=TIMEOUT_MS)
        page.wait_for_function(
            "() => document.querySelector('#chat').innerText.includes('killed: make it stormy')",
            timeout=TIMEOUT_MS,
        )
    page.screenshot(path=str(ARTIFACTS / "fleet-killed-turn-interrupted.png"))
    page.locator("#chat button[aria-label='Retry']").last.click()
    images_in_chat(page, 2)
    page.wait_for_function(
        "() => !document.querySelector('#chat').innerText.includes('interrupted')", timeout=TIMEOUT_MS
    )
    page.screenshot(path=str(ARTIFACTS / "fleet-killed-turn-retried.png"))
    survivor, shown = pinned(context), chat_text(page)
    logged = running.lb.requests()[killed_at:]
    context.close()
    doomed.start()
    deployment.wait_all_up()

    assert survivor != doomed.name
    assert (
        in_order(shown, "killed: a lighthouse at dusk", "killed: make it stormy")
        and "interrupted" not in shown
    )
    # after the kill, everything the page asked was served by the survivor, with no error; the only
    # request the dead replica ends is the killed turn's event stream
    after = [r for r in logged if r.agent == "chromium-killed"]
    lost = [r for r in after if r.server != survivor]
    assert [r.path for r in lost] in ([], ["/gradio_api/queue/data"]), lost
    assert len(after) > len(lost) and all(r.status < 500 for r in after if r not in lost), after


def test_a_page_whose_replica_drains_sends_its_next_message_to_the_other_without_a_reload(
    deployment: Deployment, photo: Path
) -> None:
    """The page keeps what the drained replica gave it (the painter holds the latest image as a
    file of that replica's cache, which it deletes as it stops); the next message still goes
    through on the other replica. The replicas' caches have one path here, as in containers of
    one image on separate hosts, so the file is missing there, not refused as foreign."""
    running = deployment.fleet
    context, page = open_page(deployment, "chromium-moved")
    page.locator("#box input[type=file]").set_input_files(str(photo))
    page.wait_for_selector("#box img", timeout=TIMEOUT_MS)
    type_and_send(page, "moved: make the sky stormy", images_after=2)
    drained = running.replica(pinned(context))
    code = drained.terminate()
    try:
        type_and_send(page, "moved: now warmer light", images_after=3)
        page.screenshot(path=str(ARTIFACTS / "fleet-moved-without-reload.png"))
        shown, survivor = chat_text(page), pinned(context)
    finally:
        context.close()
        drained.start()
        deployment.wait_all_up()

    assert code == 0
    assert survivor != drained.name
    assert in_order(shown, "moved: make the sky stormy", "moved: now warmer light"), shown
    assert "could not" not in shown.lower() and "error" not in shown.lower(), shown


# --- crowds: a drain, a rolling restart -------------------------------------------------------------


@dataclass
class Outcome:
    agent: str
    replica: str | None  # the cookie the user held when it sent
    started: float
    ended: float
    error: str | None


@dataclass
class Crowd:
    """``size`` users, each its own cookie jar, sending turns in one conversation each until stopped."""

    fleet: Fleet
    size: int
    tag: str
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Crowd:
        for n in range(self.size):
            thread = threading.Thread(target=self._user, args=(f"{self.tag}-{n}",), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)

    def _user(self, agent: str) -> None:
        user = BrowserSession(self.fleet.lb, agent, timeout_s=60)
        conversation, key, turn = "", "", 0
        while not self._stop.is_set():
            replica, started = user.cookie, time.monotonic()
            try:
                answer = user.call(
                    "send", send(conversation_id=conversation, text=f"{agent} turn {turn}", key=key)
                )
                assert answer["turns"][-1]["status"] == "ok", answer["turns"][-1]
                conversation, key = answer["conversation_id"], answer.get("owner_key") or key
                error = None
            except Exception as exc:  # noqa: BLE001 - every failure is an outcome to count
                error = f"{type(exc).__name__}: {exc}"
            self.outcomes.append(Outcome(agent, replica, started, time.monotonic(), error))
            turn += 1
        user.close()

    def served_at_least(self, count: int, timeout_s: float = 60) -> None:
        """Wait until ``count`` more turns are answered than now."""
        target = len(self.answered()) + count
        deadline = time.monotonic() + timeout_s
        while len(self.answered()) < target:
            assert time.monotonic() < deadline, (
                f"{len(self.answered())} turns answered, not {target}: {self.failed()[:3]}"
            )
            time.sleep(0.05)

    def answered(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.error is None]

    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.error is not None]


def test_a_replica_drained_with_sigterm_under_load_loses_no_request(deployment: Deployment) -> None:
    running = deployment.fleet
    with Crowd(running, 8, "drain") as crowd:
        crowd.served_at_least(16)
        code = running.replica("app2").terminate()
        crowd.served_at_least(16)  # all on app1 now
        running.replica("app2").start()
        deployment.wait_all_up()
    logged = [r for r in running.lb.requests() if r.agent.startswith("drain-")]

    assert code == 0
    assert crowd.failed() == [], crowd.failed()[:5]
    assert {o.replica for o in crowd.outcomes} == {"app1", "app2"}
    assert all(r.status < 500 for r in logged), [r for r in logged if r.status >= 500]


def test_a_rolling_restart_of_both_replicas_under_20_users_fails_no_request(deployment: Deployment) -> None:
    running = deployment.fleet
    codes = []
    with Crowd(running, CROWD, "rolling") as crowd:
        crowd.served_at_least(CROWD)
        for replica in running.replicas:
            codes.append(replica.terminate())
            crowd.served_at_least(CROWD // 2)
            replica.start()
            deployment.wait_all_up()
            crowd.served_at_least(CROWD // 2)
    logged = [r for r in running.lb.requests() if r.agent.startswith("rolling-")]

    assert codes == [0, 0]
    assert crowd.failed() == [], crowd.failed()[:5]
    assert len(crowd.outcomes) >= 3 * CROWD and {o.replica for o in crowd.outcomes} == {"app1", "app2"}
    assert all(r.status < 500 for r in logged), [r for r in logged if r.status >= 500]
