"""Retouch entry point: settings -> storage -> provider -> service -> UI -> launch -> drain on SIGTERM.

The same ``python app.py`` runs on a laptop, on Hugging Face Spaces and in the Docker image:
it listens where the environment says, answers ``/healthz`` next to the UI, and on SIGTERM
or Ctrl-C lets running model calls finish (``chat/server/lifecycle.py``), then closes the
provider threads and HTTP client, and exits 0.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
import tempfile
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from pathlib import Path

import gradio as gr
import httpx
from pydantic import ValidationError
from sqlalchemy import Engine
from starlette.middleware import Middleware

from chat.config import Settings
from chat.conversation.cache import CachedProvider, ReplyCache
from chat.conversation.fallback import FallbackPolicy, RetryPolicy
from chat.conversation.leases import Leases
from chat.conversation.service import ChatService, InputLimits
from chat.limits.guard import Guard, Limits
from chat.limits.visitors import TrustedProxies
from chat.media.images import ImageLimits
from chat.providers.gemini import GeminiClient
from chat.providers.http import CallThreads
from chat.providers.openai import OpenAIImagesClient
from chat.server.capacity import Capacity
from chat.server.health import health_route
from chat.server.lifecycle import DrainGate, Lifecycle
from chat.server.maintenance import grace_for, sweep_orphans
from chat.sharing.library import ConversationLibrary
from chat.ui import UIConfig, build_ui
from chat.ui.mcp import fit_mcp_server
from chat.ui.style import PAGE_CSS, PAGE_JS
from storage import BlobStore, DiskBlobStore, make_engine, migrate, sqlite_url
from storage.s3 import S3BlobStore, S3Location

log = logging.getLogger("retouch")


def open_database(settings: Settings) -> Engine:
    """The engine, with the data directory created and every migration applied."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    engine = make_engine(settings.database_url or sqlite_url(settings.data_dir))
    migrate(engine)
    return engine


def build_app(
    settings: Settings, *, resources: ExitStack, engine: Engine | None = None, blobs: BlobStore | None = None
) -> tuple[gr.Blocks, ChatService]:
    """Everything wired, nothing launched; what must be closed when the app stops goes on ``resources``.
    The service comes back too: a draining replica waits for the turns it runs (their pages may be gone)."""
    if engine is None:
        engine = open_database(settings)
    if blobs is None:
        blobs = open_blobs(settings)  # one store: the service, the library and the reply cache
    # One pool for both providers: a connection per call thread, kept alive (chat/server/capacity.py).
    http = resources.enter_context(httpx.Client(limits=capacity_of(settings).http_limits()))
    # The threads model calls block in (chat/providers/http.py): the queue runs at most
    # model_concurrency model events at once, and one event's calls run one after another.
    threads = CallThreads(settings.model_concurrency)
    resources.callback(threads.close)  # closed before the client (last in, first out)

    gemini = GeminiClient(
        http,
        api_key=settings.gemini_api_key,
        threads=threads,
        base_url=settings.gemini_base_url,
        timeout_s=settings.request_timeout_s,
        keep_images=settings.keep_images or None,
        stream=settings.streaming,
    )
    limits = input_limits(settings)
    openai = OpenAIImagesClient(
        http,
        api_key=settings.openai_api_key,
        threads=threads,
        base_url=settings.openai_base_url,
        default_model=settings.openai_image_model,
        timeout_s=settings.openai_timeout_s,
        stream=settings.streaming,
        partial_images=settings.openai_partial_images,
    )
    # Gemini answers the same request with the same seed the same way: such a request is answered
    # from storage (chat/conversation/cache.py). OpenAI takes no seed, so asking again is asking for a new image.
    providers = (CachedProvider(gemini, ReplyCache(engine, blobs)), openai)
    policy = FallbackPolicy({provider.name: provider for provider in providers}, retry=retry_policy(settings))
    # Before serving; other replicas may be writing turns meanwhile, which the grace keeps safe.
    sweep_orphans(engine, blobs, grace_s=grace_for(settings.longest_turn_s))
    guard = Guard(guard_limits(settings), engine=engine)
    leases = Leases(
        engine, ttl_s=settings.lease_ttl_s
    )  # one turn at a time per conversation, on every replica
    service = ChatService(
        engine=engine, blobs=blobs, policy=policy, limits=limits, guard=guard, leases=leases
    )
    library = ConversationLibrary(
        engine=engine, blobs=blobs, gate=service.gate, input_limits=limits, guard=guard, writer=service.writer
    )
    config = UIConfig(
        default_model=settings.gemini_model,
        default_openai_model=settings.openai_image_model,
        configured={"gemini": gemini.configured, "openai": openai.configured},
        max_upload_bytes=settings.max_upload_bytes,
        model_concurrency=settings.model_concurrency,
        browser_secret=browser_secret(settings),
        files_dir=private_dir(runtime_dir() / "files"),
        proxies=TrustedProxies.for_environment(settings.trusted_proxies, os.environ),
        sign_in=settings.sign_in(os.environ),
    )
    demo = build_ui(service, library, config)
    # Queue positions go to waiting visitors once a second, not to every one of them each time any
    # job finishes ("auto"): with 128 waiting that was 128 x 128 messages per round (bench/RESULTS.md).
    demo.queue(
        default_concurrency_limit=settings.model_concurrency,
        max_size=settings.queue_max_size,
        status_update_rate=1,
    )
    return demo, service


def capacity_of(settings: Settings) -> Capacity:
    """The limits one process runs with, all derived from the model concurrency and the queue's size."""
    return Capacity(settings.model_concurrency, settings.queue_max_size)


def open_blobs(settings: Settings, environ: Mapping[str, str] = os.environ) -> BlobStore:
    """The image store: the data directory, or the S3 bucket ``RETOUCH_BLOBS`` names (storage/s3.py)."""
    if settings.blobs is None:
        return DiskBlobStore(settings.blob_dir)
    return S3BlobStore.connect(
        S3Location.parse(settings.blobs),
        settings.blob_cache_dir,
        environ=environ,
        cache_bytes=settings.blob_cache_mb << 20,
    )


def input_limits(settings: Settings) -> InputLimits:
    """What one message may hold: its text, its photos and each photo's size."""
    return InputLimits(
        images=ImageLimits(
            max_bytes=settings.max_upload_bytes,
            max_pixels=settings.max_upload_pixels,
            max_side=settings.max_input_side,
        ),
        max_prompt_chars=settings.max_prompt_chars,
        max_images_per_message=settings.max_images_per_message,
    )


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=settings.retry_attempts,
        base_delay_s=settings.retry_base_delay_s,
        max_total_s=settings.retry_max_total_s,
    )


def guard_limits(settings: Settings, environ: Mapping[str, str] = os.environ) -> Limits:
    return Limits(
        per_visitor_per_minute=settings.rate_per_minute,
        per_visitor_per_day=settings.rate_per_day,
        global_per_minute=settings.global_rate_per_minute,
        daily_spend_usd=settings.spend_cap(environ),
        reservation_ttl_s=settings.longest_turn_s,
    )


def browser_secret(settings: Settings) -> str:
    """The key Gradio encrypts the browser's owner id with: ``RETOUCH_BROWSER_SECRET`` (which every
    replica must share), else one made once per data directory, so it survives restarts and
    replicas sharing the data directory (as they must: the images are there) share it too, with
    no copy in the database (README, "Several replicas").

    The file is written 0600 under a temporary name (``O_EXCL``), then linked into place: it
    never exists with wider rights or without its content, and of two processes starting at
    once the second reads the first one's secret instead of writing its own.
    """
    if settings.browser_secret is not None and settings.browser_secret.get_secret_value():
        return settings.browser_secret.get_secret_value()
    path = settings.data_dir / "browser-secret"
    if not path.exists():
        partial = path.with_name(f".browser-secret.{secrets.token_hex(8)}")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_urlsafe(32))
        try:
            os.link(partial, path)
        except FileExistsError:
            pass  # another process was first: its secret is the one
        finally:
            partial.unlink()
    secret = path.read_text().strip()
    if not secret:
        raise RuntimeError(f"{path} is empty: delete it or set RETOUCH_BROWSER_SECRET")
    return secret


def runtime_dir() -> Path:
    """This user's private folder for temporary files: Gradio's cache and our staged images."""
    return private_dir(Path(tempfile.gettempdir()) / f"retouch-{os.getuid()}")


def private_dir(path: Path) -> Path:
    """``path`` as a folder only this user can enter (0700); refused if someone else owns it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise RuntimeError(f"{path} is not a folder of this user's; remove it or set TMPDIR")
    if info.st_mode & 0o077:
        path.chmod(0o700)
    return path


def listen_host(settings: Settings, environ: Mapping[str, str] = os.environ) -> str:
    """The configured host; on Spaces, unless configured, every interface (its proxy is outside the container)."""
    if "host" not in settings.model_fields_set and environ.get("SYSTEM") == "spaces":
        return "0.0.0.0"
    return settings.host


def serve(
    demo: gr.Blocks, settings: Settings, engine: Engine, lifecycle: Lifecycle, blobs: BlobStore | None = None
) -> None:
    """Start the server in its thread and return, with ``/healthz`` and the drain gate on Gradio's own app.

    Both go in through ``app_kwargs`` (the FastAPI constructor): the route is registered before
    any of Gradio's, so none can shadow it, and ``launch()`` keeps Gradio's check that handlers
    return files only from allowed places, which ``mount_gradio_app`` would skip. There is no
    ``allowed_paths``: the image store is never reachable by URL, pages get checked copies
    (chat/ui/files.py).
    """
    demo.launch(
        server_name=listen_host(settings),
        server_port=settings.port,
        max_file_size=settings.max_upload_bytes,
        run_history=False,
        footer_links=["api", "gradio"],
        prevent_thread_lock=True,
        mcp_server=True,  # the documented API as MCP tools at /gradio_api/mcp/ (chat/ui/api.py)
        css=PAGE_CSS,  # phones and the window's height (chat/ui/style.py)
        js=PAGE_JS,
        # Gradio runs no more events at once than this, whatever their concurrency limits.
        max_threads=capacity_of(settings).max_threads,
        state_session_capacity=capacity_of(settings).sessions,  # ~190 KB each (chat/server/capacity.py)
        app_kwargs={
            "routes": [health_route(engine, draining=lambda: lifecycle.draining, blobs=blobs)],
            "middleware": [Middleware(DrainGate, lifecycle=lifecycle)],
        },
    )
    fit_mcp_server(demo)


class GradioServer:
    """A launched Gradio app as ``chat.server.lifecycle.Server``: the one place that reads Gradio's internals.

    Gradio has no public "how busy am I" or "stop gracefully" API, so this reads the queue
    (``Blocks._queue``) and the uvicorn server (``Blocks.server``) of the pinned gradio;
    tests/test_deploy.py proves both against a real process.
    """

    def __init__(
        self, demo: gr.Blocks, *, turns: Callable[[], int] = lambda: 0, flush_s: float = 2.0
    ) -> None:
        self._demo = demo
        self._turns = turns
        self._flush_s = flush_s

    def jobs(self) -> int:
        """Events waiting in, or being run by, the Gradio queue, or the larger number of turns being
        answered (a turn whose page went away runs on outside the queue: chat/conversation/runs.py)."""
        queue = self._demo._queue
        running = sum(len(job) for job in queue.active_jobs if job)
        return max(len(queue) + running, self._turns())

    def stop(self) -> None:
        """Stop a ``launch(prevent_thread_lock=True)`` app, streams first, queue last.

        ``Blocks.close()`` alone stops the queue first: an event stream that has not yet sent an
        answer computed a moment ago would send "Server stopped unexpectedly" instead. Here uvicorn
        stops listening and gives open responses ``flush_s`` to finish; Gradio's heartbeat streams
        end at once (``stop_event``, as ``Blocks.close()`` does); the queue stops last.
        """
        demo, server = self._demo, self._demo.server
        if server is not None:
            server.config.timeout_graceful_shutdown = max(1, round(self._flush_s))  # whole seconds (uvicorn)
            demo.app.stop_event.set()
            server.should_exit = True
            server.thread.join(self._flush_s + 1.0)
        demo.close(verbose=False)


def read_settings() -> Settings:
    """The settings, or exit with one line naming each bad variable (no traceback, no value echoed)."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors(include_input=False)
        )
        raise SystemExit(f"Retouch cannot start: {problems}") from None


def main() -> None:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no phoning home by default
    # Everything this process writes (Gradio's cached copies and uploads included) is for its own
    # user only: files 0600, folders 0700; Gradio's cache in a folder of ours, not a shared /tmp/gradio.
    os.umask(0o077)
    os.environ.setdefault("GRADIO_TEMP_DIR", str(private_dir(runtime_dir() / "gradio")))
    # uvicorn would believe X-Forwarded-For from any loopback peer and rewrite the client address;
    # which proxies to believe is RETOUCH_TRUSTED_PROXIES' decision alone (chat/limits/visitors.py).
    os.environ["FORWARDED_ALLOW_IPS"] = ""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = read_settings()
    # Before the first socket: the open-file limit, and a word in the log if memory is short.
    capacity_of(settings).check()
    engine = open_database(settings)
    with ExitStack() as resources:  # the provider threads and HTTP client, closed once the server has stopped
        blobs = open_blobs(settings)
        demo, service = build_app(settings, resources=resources, engine=engine, blobs=blobs)
        lifecycle = Lifecycle(notice_s=settings.shutdown_notice_s)
        lifecycle.install_signal_handlers()
        serve(demo, settings, engine, lifecycle, blobs)
        lifecycle.wait_for_stop()
        server = GradioServer(demo, turns=lambda: service.running)
        report = lifecycle.shutdown(server, settings.shutdown_grace_s)
    log.info(report.summary())


if __name__ == "__main__":
    main()
