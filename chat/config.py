"""Settings from the environment (and an optional .env), validated once at startup in app.py.

Each setting is read under its documented names only: ``RETOUCH_*``, the providers' own
(``GEMINI_API_KEY``, ``OPENAI_BASE_URL``, …), ``DATABASE_URL`` and Gradio's ``GRADIO_SERVER_*``
(set on Spaces). A bare ``HOST``, ``PORT`` or ``DATA_DIR`` belongs to someone else.

Every default of a setting is written once, in its field here (the replay bound by the name of
the module that decided it, chat/providers/context.py).
Code that needs a setting's default reads it from ``DEFAULTS``: the runtime values built from
settings (``ImageLimits``, ``InputLimits``, ``ImportLimits``, ``RetryPolicy``, the guard's
``Limits``, the provider clients, ``UIConfig``) take their own defaults from it, so a test that
builds one directly gets what the app runs with. app.py builds them from the settings it read.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict

from chat.limits.visitors import TrustedProxies
from chat.providers.context import DEFAULT_KEEP_IMAGES
from chat.providers.model_ids import MODEL_ID_RULE, is_model_id
from storage.s3 import S3Location

__all__ = ["DEFAULTS", "PERSISTENT_DATA_DIR", "Settings", "default_data_dir"]

#: Where Hugging Face Spaces mounts persistent storage, and where the Docker image declares its volume.
PERSISTENT_DATA_DIR = Path("/data")


def default_data_dir() -> Path:
    """``/data`` when it is a directory this process can write (persistent storage), else ``./data``.

    On Spaces without persistent storage, and on a laptop, ``/data`` is absent (or not ours), so the
    conversations go next to the code as before; where it is mounted they survive restarts.
    """
    candidate = PERSISTENT_DATA_DIR
    if candidate.is_dir() and os.access(candidate, os.W_OK | os.X_OK):
        return candidate
    return Path("data")


class Settings(BaseSettings):
    # No populate_by_name: pydantic-settings would then read every field name from the
    # environment and .env too (HOST=..., data_dir=...). Code may pass field names: see __init__.
    # Frozen: the settings read at startup are what every part of the app was built with.
    model_config = SettingsConfigDict(env_file=".env", env_ignore_empty=True, extra="ignore", frozen=True)

    data_dir: Path = Field(default_factory=default_data_dir, validation_alias="RETOUCH_DATA_DIR")
    database_url: str | None = Field(None, validation_alias="DATABASE_URL")
    # Where images go: unset, the data directory; ``s3://bucket/prefix``, an S3-compatible bucket
    # every replica shares (storage/s3.py), reached as the standard AWS_* variables say, with a
    # read-through cache of this many MB in the data directory for what pages show.
    blobs: str | None = Field(None, validation_alias="RETOUCH_BLOBS")
    blob_cache_mb: int = Field(1024, ge=1, validation_alias="RETOUCH_BLOB_CACHE_MB")

    gemini_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("GEMINI_API_KEY", "GOOGLE_API_KEY")
    )
    gemini_base_url: str = Field(
        "https://generativelanguage.googleapis.com", validation_alias="GEMINI_BASE_URL"
    )
    gemini_model: str = Field("gemini-3.1-flash-image", validation_alias="GEMINI_MODEL")
    openai_api_key: SecretStr | None = Field(None, validation_alias="OPENAI_API_KEY")
    openai_base_url: str = Field("https://api.openai.com/v1", validation_alias="OPENAI_BASE_URL")
    openai_image_model: str = Field("gpt-image-2", validation_alias="OPENAI_IMAGE_MODEL")
    openai_timeout_s: float = Field(300.0, gt=0, validation_alias="RETOUCH_OPENAI_TIMEOUT")
    request_timeout_s: float = Field(180.0, gt=0, validation_alias="RETOUCH_REQUEST_TIMEOUT")
    # Answers arrive as event streams, so a user watches the thoughts, text and drafts come;
    # off: one response per call (a proxy that buffers streams, or a provider that breaks them).
    streaming: bool = Field(True, validation_alias="RETOUCH_STREAMING")
    # Drafts an OpenAI stream sends before its image (0-3); each costs 100 image tokens more.
    openai_partial_images: int = Field(2, ge=0, le=3, validation_alias="RETOUCH_OPENAI_PARTIAL_IMAGES")

    retry_attempts: int = Field(3, ge=1, le=10, validation_alias="RETOUCH_RETRY_ATTEMPTS")
    retry_base_delay_s: float = Field(1.0, ge=0, validation_alias="RETOUCH_RETRY_BASE_DELAY")
    retry_max_total_s: float = Field(60.0, ge=0, validation_alias="RETOUCH_RETRY_MAX_TOTAL")

    host: str = Field("127.0.0.1", validation_alias=AliasChoices("RETOUCH_HOST", "GRADIO_SERVER_NAME"))
    port: int = Field(7860, validation_alias=AliasChoices("RETOUCH_PORT", "GRADIO_SERVER_PORT"))
    # Model calls (turns) in flight at once in this process. A turn waits for its provider nearly all
    # its time, so the bound is memory, not CPU: ~6 MB a turn at its peak, 256 x 6 MB = 1.5 GB
    # (chat/server/capacity.py derives Gradio's threads, the HTTP pool and the open-file limit from
    # it; bench/capacity.py measures it: 256 users on a 10 s provider, bench/RESULTS.md).
    model_concurrency: int = Field(256, ge=1, validation_alias="RETOUCH_MODEL_CONCURRENCY")

    max_upload_bytes: int = Field(20 * 1024 * 1024, validation_alias="RETOUCH_MAX_UPLOAD_BYTES")
    max_upload_pixels: int = Field(50_000_000, validation_alias="RETOUCH_MAX_UPLOAD_PIXELS")
    max_input_side: int = Field(4096, validation_alias="RETOUCH_MAX_INPUT_SIDE")
    max_prompt_chars: int = Field(8000, validation_alias="RETOUCH_MAX_PROMPT_CHARS")
    max_images_per_message: int = Field(6, validation_alias="RETOUCH_MAX_IMAGES_PER_MESSAGE")

    # Abuse limits for public demos (see chat/limits/guard.py).
    rate_per_minute: int = Field(10, ge=1, validation_alias="RETOUCH_RATE_PER_MINUTE")
    rate_per_day: int = Field(300, ge=1, validation_alias="RETOUCH_RATE_PER_DAY")
    # Turns on the server's keys per minute, all replicas together (visitors' own keys are theirs):
    # the keys' provider quota. By default what one replica runs in a minute of 10 s turns at the
    # default concurrency (256 x 6 = 1536), so it never refuses what the capacity would serve.
    global_rate_per_minute: int = Field(1536, ge=1, validation_alias="RETOUCH_GLOBAL_RATE_PER_MINUTE")
    daily_spend_usd: float | None = Field(None, ge=0, validation_alias="RETOUCH_DAILY_SPEND_USD")
    # Events waiting for a free slot beyond those in flight; past it a visitor is told the app is busy.
    queue_max_size: int = Field(256, ge=1, validation_alias="RETOUCH_QUEUE_MAX_SIZE")
    # Images replayed per request (chat/providers/context.py); 0 replays every image (no bound).
    keep_images: int = Field(DEFAULT_KEEP_IMAGES, ge=0, validation_alias="RETOUCH_KEEP_IMAGES")
    # Proxies whose X-Forwarded-For is believed (addresses or networks, comma-separated); see
    # chat/limits/visitors.py. Empty: the direct peer is the visitor; on Spaces, its private networks.
    trusted_proxies: str | None = Field(None, validation_alias="RETOUCH_TRUSTED_PROXIES")
    # The key the browser's owner id is encrypted with; several replicas must share it.
    browser_secret: SecretStr | None = Field(None, validation_alias="RETOUCH_BROWSER_SECRET")
    shutdown_grace_s: float = Field(30.0, ge=0, validation_alias="RETOUCH_SHUTDOWN_GRACE")
    # Seconds after SIGTERM that /healthz already says 503 while new work is still taken, so a
    # load balancer's health checks move traffic away before this replica refuses it (lifecycle.py).
    shutdown_notice_s: float = Field(0.0, ge=0, validation_alias="RETOUCH_SHUTDOWN_NOTICE_S")
    # How long a turn's hold on its conversation outlives its replica (chat/conversation/leases.py):
    # renewed every third of it while the turn runs, so only a dead (or stalled) replica lets it lapse.
    lease_ttl_s: float = Field(30.0, gt=0, validation_alias="RETOUCH_LEASE_TTL_S")

    def __init__(self, **values: Any) -> None:
        """``Settings(data_dir=..., port=...)`` in code (tests) still works: each field name
        is passed on as the setting's documented name."""
        fields = type(self).model_fields
        super().__init__(**{_env_name(fields[k]) if k in fields else k: v for k, v in values.items()})

    def spend_cap(self, environ: Mapping[str, str] = os.environ) -> float:
        """Dollars a day on the server's own keys: as configured; else $5 on Spaces, no cap elsewhere."""
        if self.daily_spend_usd is not None:
            return self.daily_spend_usd
        return 5.0 if environ.get("SYSTEM") == "spaces" else 0.0

    def sign_in(self, environ: Mapping[str, str] = os.environ) -> bool:
        """Hugging Face sign-in: only on a Space whose front matter asks for it (``hf_oauth: true``
        makes Spaces set ``OAUTH_CLIENT_ID``, its secret, the scopes and ``OPENID_PROVIDER_URL``). Elsewhere there is no one
        to sign in with (Gradio would mock it with the machine's own token), so the button is not shown."""
        return bool(
            environ.get("SPACE_ID") and environ.get("OAUTH_CLIENT_ID") and environ.get("OAUTH_CLIENT_SECRET")
        )

    @property
    def longest_turn_s(self) -> float:
        """The longest one turn's model calls can take: every attempt at each provider's timeout, plus
        the waits between them. A turn's spend reservation outlives its replica by no more than this,
        and the orphan sweep leaves younger image files alone."""
        return self.retry_attempts * (self.request_timeout_s + self.openai_timeout_s) + self.retry_max_total_s

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: str | None) -> str | None:
        if value is not None:
            TrustedProxies.parse(value)  # a typo is a startup error, not a proxy silently distrusted
        return value

    @field_validator("blobs")
    @classmethod
    def _blobs(cls, value: str | None) -> str | None:
        if value is not None:
            S3Location.parse(value)  # a typo is a startup error, not images written somewhere else
        return value

    @field_validator("gemini_base_url", "openai_base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("gemini_model", "openai_image_model")
    @classmethod
    def _model_id(cls, value: str) -> str:
        """A default model id goes into every request's URL (Gemini) or body (OpenAI): checked at startup."""
        if not is_model_id(value):
            raise ValueError(f"{value!r} is not a model id: use {MODEL_ID_RULE}")
        return value

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def blob_cache_dir(self) -> Path:
        """This replica's copies of images kept in object storage (``RETOUCH_BLOBS``)."""
        return self.data_dir / "image-cache"


#: The documented defaults, read from no environment and no .env file: the single source of the
#: defaults of the dataclasses and clients built from settings. Never the app's settings (app.py
#: reads those at startup); ``data_dir`` here is where the data would go, as seen at import.
DEFAULTS: Final[Settings] = Settings.model_construct()


def _env_name(field: FieldInfo) -> str:
    """The first name a setting is read under (``RETOUCH_PORT`` for ``port``)."""
    alias = field.validation_alias
    if isinstance(alias, str):
        return alias
    assert isinstance(alias, AliasChoices), "every setting has a documented name"
    return str(alias.choices[0])
