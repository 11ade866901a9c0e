from __future__ import annotations

from pathlib import Path

import pytest

from aiorch.core.settings import AiorchSettings, ConfigurationError, load_settings


def test_defaults_without_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIORCH_UI_PORT", raising=False)
    monkeypatch.delenv("AIORCH_UI_HOST", raising=False)
    settings = load_settings()
    assert settings.ui_port == 4200
    assert settings.ui_host == "127.0.0.1"


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIORCH_UI_PORT", "4311")
    monkeypatch.setenv("AIORCH_UI_HOST", "0.0.0.0")
    settings = load_settings()
    assert (settings.ui_host, settings.ui_port) == ("0.0.0.0", 4311)


def test_dotenv_file_in_working_directory(
    monkeypatch: pytest.MonkeyPatch, scratch_dir: Path
) -> None:
    (scratch_dir / ".env").write_text("AIORCH_UI_PORT=4999\n")
    monkeypatch.chdir(scratch_dir)
    monkeypatch.delenv("AIORCH_UI_PORT", raising=False)
    assert load_settings().ui_port == 4999


def test_settings_are_read_again_only_when_their_sources_change(
    monkeypatch: pytest.MonkeyPatch, scratch_dir: Path
) -> None:
    monkeypatch.chdir(scratch_dir)
    monkeypatch.delenv("AIORCH_UI_PORT", raising=False)
    first = load_settings()
    assert load_settings() is first, "unchanged sources must not rebuild the settings"

    monkeypatch.setenv("aiorch_ui_port", "4312")  # pydantic-settings ignores the case
    assert load_settings().ui_port == 4312
    monkeypatch.delenv("aiorch_ui_port")

    dotenv = scratch_dir / ".env"
    dotenv.write_text("AIORCH_UI_PORT=4313\n")
    assert load_settings().ui_port == 4313
    dotenv.write_text("AIORCH_UI_PORT=70000\n")  # same size, at once
    with pytest.raises(ConfigurationError, match="AIORCH_UI_PORT"):
        load_settings()
    dotenv.unlink()
    assert load_settings().ui_port == first.ui_port


@pytest.mark.parametrize("value", ["not-a-port", "0", "70000"])
def test_invalid_value_names_the_variable_and_the_fix(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("AIORCH_UI_PORT", value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    message = str(caught.value)
    assert "AIORCH_UI_PORT" in message
    assert "unset it to use the default" in message
    assert "docs/configuration.md" in message


def test_invalid_value_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    canary = "sk-canary-7f3a9c"
    monkeypatch.setenv("AIORCH_UI_PORT", canary)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert canary not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_settings_are_immutable() -> None:
    settings = AiorchSettings()
    with pytest.raises(ValueError, match="frozen"):
        settings.ui_port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    "value", ["garbage-9c1f", "pg:/x-9c1f", "postgresql+psycopg://u:sk-canary-1e4c@"]
)
def test_a_breaker_store_url_that_does_not_parse_fails_when_settings_load(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("AIORCH_BREAKER_STORE_URL", value)
    if value.endswith("@"):
        # A URL SQLAlchemy parses: accepted here, its connection is the store's business.
        assert load_settings().breaker_store_url is not None
        return
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    message = str(caught.value)
    assert "AIORCH_BREAKER_STORE_URL: Value error, not an SQLAlchemy database URL" in message
    assert "postgresql+psycopg://user:password@host:5432/aiorch" in message
    assert value not in message
