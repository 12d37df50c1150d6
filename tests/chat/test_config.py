"""Settings are read under their documented names only, and the default model ids are checked at startup."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import AliasChoices, ValidationError

from chat.config import DEFAULTS, Settings
from tests.chat.test_options import HOSTILE_MODEL_IDS

DOCUMENTED = sorted(
    {
        name
        for field in Settings.model_fields.values()
        for name in (
            field.validation_alias.choices
            if isinstance(field.validation_alias, AliasChoices)
            else [field.validation_alias]
        )
    }
)

#: Field names that are not also a documented name (``gemini_api_key`` is GEMINI_API_KEY, any case).
BARE = [name for name in Settings.model_fields if name.upper() not in DOCUMENTED]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No setting of the machine running the tests leaks in; the working directory has no .env."""
    for name in [*DOCUMENTED, *Settings.model_fields, *(n.upper() for n in Settings.model_fields)]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def test_every_setting_has_only_documented_names() -> None:
    """RETOUCH_*, the providers' own, DATABASE_URL and Gradio's: nothing else is read."""
    third_party = {
        "GEMINI_API_KEY",
        "GOOGLE_API_KEY",
        "GEMINI_MODEL",
        "GEMINI_BASE_URL",
        "OPENAI_API_KEY",
        "OPENAI_IMAGE_MODEL",
        "OPENAI_BASE_URL",
        "DATABASE_URL",
        "GRADIO_SERVER_NAME",
        "GRADIO_SERVER_PORT",
    }
    assert [n for n in DOCUMENTED if not n.startswith("RETOUCH_") and n not in third_party] == []
    assert not Settings.model_config.get("populate_by_name")


def test_bare_host_port_and_data_dir_in_the_environment_are_ignored(env: pytest.MonkeyPatch) -> None:
    for name, value in {"HOST": "myhostname", "PORT": "8080", "DATA_DIR": "/tmp/elsewhere"}.items():
        env.setenv(name, value)
        env.setenv(name.lower(), value)
    settings = Settings()
    assert (settings.host, settings.port) == ("127.0.0.1", 7860)
    assert settings.data_dir != Path("/tmp/elsewhere")


def test_no_field_name_is_read_from_the_environment(env: pytest.MonkeyPatch) -> None:
    clean = Settings().model_dump()
    assert {"data_dir", "host", "port", "model_concurrency", "request_timeout_s", "keep_images"} <= set(BARE)
    for name in BARE:
        env.setenv(name, "7")  # a value every field would accept
        env.setenv(name.upper(), "7")
    assert Settings().model_dump() == clean


def test_no_field_name_is_read_from_the_env_file(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean = Settings().model_dump()
    lines = [f"{name}=7" for name in BARE] + ["HOST=myhostname", "PORT=8080", "DATA_DIR=/tmp/elsewhere"]
    (tmp_path / ".env").write_text("\n".join(lines) + "\n")
    assert Settings().model_dump() == clean


def test_documented_names_are_read_from_the_environment(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.setenv("RETOUCH_HOST", "0.0.0.0")
    env.setenv("RETOUCH_PORT", "8080")
    env.setenv("RETOUCH_DATA_DIR", str(tmp_path / "data"))
    env.setenv("RETOUCH_MODEL_CONCURRENCY", "3")
    env.setenv("RETOUCH_SHUTDOWN_GRACE", "5")
    env.setenv("GOOGLE_API_KEY", "g-key")
    env.setenv("GEMINI_MODEL", "gemini-3-pro-image")
    env.setenv("OPENAI_IMAGE_MODEL", "gpt-image-1.5")
    env.setenv("DATABASE_URL", "sqlite://")
    settings = Settings()
    assert (settings.host, settings.port, settings.data_dir) == ("0.0.0.0", 8080, tmp_path / "data")
    assert (settings.model_concurrency, settings.shutdown_grace_s, settings.database_url) == (
        3,
        5.0,
        "sqlite://",
    )
    assert settings.gemini_api_key is not None and settings.gemini_api_key.get_secret_value() == "g-key"
    assert (settings.gemini_model, settings.openai_image_model) == ("gemini-3-pro-image", "gpt-image-1.5")


def test_documented_names_are_read_from_the_env_file(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("RETOUCH_PORT=8081\nOPENAI_BASE_URL=http://127.0.0.1:8765/v1/\n")
    settings = Settings()
    assert (settings.port, settings.openai_base_url) == (8081, "http://127.0.0.1:8765/v1")


def test_gradio_names_are_read_as_on_spaces(env: pytest.MonkeyPatch) -> None:
    env.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    env.setenv("GRADIO_SERVER_PORT", "7861")
    assert (Settings().host, Settings().port) == ("0.0.0.0", 7861)


def test_field_names_still_work_in_code_and_win_over_the_environment(
    env: pytest.MonkeyPatch, tmp_path
) -> None:
    env.setenv("RETOUCH_PORT", "8080")
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", port=9000, host="127.0.0.2")
    assert (settings.data_dir, settings.port, settings.host) == (tmp_path / "data", 9000, "127.0.0.2")
    assert Settings(RETOUCH_PORT=9001).port == 9001


@pytest.mark.parametrize("model", HOSTILE_MODEL_IDS)
@pytest.mark.parametrize("name", ["GEMINI_MODEL", "OPENAI_IMAGE_MODEL"])
def test_a_malformed_default_model_stops_startup(env: pytest.MonkeyPatch, name: str, model: str) -> None:
    env.setenv(name, model)
    with pytest.raises(ValidationError, match="is not a model id") as info:
        Settings()
    assert name in str(info.value)


@pytest.mark.parametrize("field", ["gemini_model", "openai_image_model"])
def test_a_malformed_default_model_is_refused_in_code_too(env: pytest.MonkeyPatch, field: str) -> None:
    with pytest.raises(ValidationError, match="is not a model id"):
        Settings(**{field: "../../v1/foo"})


def test_the_defaults_are_the_settings_read_from_a_clean_environment(env: pytest.MonkeyPatch) -> None:
    assert Settings() == DEFAULTS


def test_settings_do_not_change_once_read(env: pytest.MonkeyPatch) -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.max_prompt_chars = 1
    with pytest.raises(ValidationError):
        DEFAULTS.port = 1


def test_images_stay_on_disk_unless_retouch_blobs_names_a_bucket(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from app import open_blobs
    from storage import DiskBlobStore
    from storage.s3 import S3BlobStore

    assert isinstance(open_blobs(Settings(data_dir=tmp_path)), DiskBlobStore)
    env.setenv("RETOUCH_BLOBS", "s3://retouch-images/team")
    env.setenv("RETOUCH_BLOB_CACHE_MB", "64")
    settings = Settings(data_dir=tmp_path)
    store = open_blobs(settings, environ={"AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
    assert isinstance(store, S3BlobStore)
    assert store.cache.root == tmp_path / "image-cache" and store.cache.max_bytes == 64 << 20


@pytest.mark.parametrize(
    "url", ["retouch-images", "s3://Bad_Bucket/x", "s3://retouch-images/../up", "gs://b/x"]
)
def test_a_malformed_retouch_blobs_stops_startup(env: pytest.MonkeyPatch, url: str) -> None:
    env.setenv("RETOUCH_BLOBS", url)
    with pytest.raises(ValidationError) as info:
        Settings()
    assert "RETOUCH_BLOBS" in str(info.value)
