"""Retouch entry point: settings -> storage -> provider -> service -> UI -> launch."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

import gradio as gr
import httpx

from chat.config import Settings
from chat.fallback import FallbackPolicy, RetryPolicy
from chat.images import ImageLimits
from chat.library import ConversationLibrary
from chat.providers.gemini import GeminiClient
from chat.providers.openai import OpenAIImagesClient
from chat.service import ChatService, InputLimits
from chat.ui import UIConfig, build_ui
from storage import BlobStore, make_engine, migrate, sqlite_url


def build_app(settings: Settings) -> gr.Blocks:
    """Everything wired, nothing launched (tests use this too)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    engine = make_engine(settings.database_url or sqlite_url(settings.data_dir))
    migrate(engine)
    http = httpx.AsyncClient(limits=httpx.Limits(max_connections=100, max_keepalive_connections=20))
    gemini = GeminiClient(
        http,
        api_key=settings.gemini_api_key,
        base_url=settings.gemini_base_url,
        timeout_s=settings.request_timeout_s,
    )
    limits = InputLimits(
        images=ImageLimits(
            max_bytes=settings.max_upload_bytes,
            max_pixels=settings.max_upload_pixels,
            max_side=settings.max_input_side,
        ),
        max_prompt_chars=settings.max_prompt_chars,
        max_images_per_message=settings.max_images_per_message,
    )
    openai = OpenAIImagesClient(
        http,
        api_key=settings.openai_api_key,
        base_url=settings.openai_base_url,
        default_model=settings.openai_image_model,
        timeout_s=settings.openai_timeout_s,
    )
    retry = RetryPolicy(
        max_attempts=settings.retry_attempts,
        base_delay_s=settings.retry_base_delay_s,
        max_total_s=settings.retry_max_total_s,
    )
    policy = FallbackPolicy({"gemini": gemini, "openai": openai}, retry=retry)
    blobs = BlobStore(settings.blob_dir)
    service = ChatService(engine=engine, blobs=blobs, policy=policy, limits=limits)
    library = ConversationLibrary(engine=engine, blobs=blobs, gate=service.gate)
    config = UIConfig(
        default_model=settings.gemini_model,
        default_openai_model=settings.openai_image_model,
        configured={"gemini": gemini.configured, "openai": openai.configured},
        max_upload_bytes=settings.max_upload_bytes,
        model_concurrency=settings.model_concurrency,
        browser_secret=browser_secret(settings.data_dir),
    )
    demo = build_ui(service, library, config)
    demo.queue(default_concurrency_limit=settings.model_concurrency)
    return demo


def browser_secret(data_dir: Path) -> str:
    """The key Gradio encrypts the browser's owner id with: fixed per install, so it survives restarts."""
    path = data_dir / "browser-secret"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def main() -> None:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no phoning home by default
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings()
    demo = build_app(settings)
    demo.launch(
        server_name=settings.host,
        server_port=settings.port,
        allowed_paths=[str(settings.blob_dir.resolve())],
        max_file_size=settings.max_upload_bytes,
        run_history=False,
        footer_links=["api", "gradio"],
    )


if __name__ == "__main__":
    main()
