"""The settings object: environment over TOML, masking, one-line errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from eldercare.config import Settings, SettingsError, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("ELDERCARE_"):
            monkeypatch.delenv(name)


def test_defaults_use_embedded_services() -> None:
    s = load_settings()
    assert s.uses_embedded_db and s.uses_embedded_broker
    assert s.mqtt_topic_root == "eldercare/v1"


def test_environment_overrides_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "eldercare.toml"
    cfg.write_text('http_port = 9000\nmqtt_topic_root = "city/v1"\nlog_level = "DEBUG"\n')
    monkeypatch.setenv("ELDERCARE_HTTP_PORT", "9100")
    s = load_settings(cfg)
    assert s.http_port == 9100  # environment wins
    assert s.mqtt_topic_root == "city/v1"  # from the file
    assert s.log_level == "DEBUG"


@pytest.mark.parametrize("value", ["debug", "Warning", "ERROR"])
def test_log_level_in_any_case(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """`eldercare edge run` takes ELDERCARE_LOG_LEVEL=debug (its --log-level lists debug|info|...);
    the server commands refused the same value with 'Input should be 'DEBUG', ...'."""
    monkeypatch.setenv("ELDERCARE_LOG_LEVEL", value)
    assert load_settings().log_level == value.upper()


def test_secrets_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ELDERCARE_MQTT_URL", "mqtts://gw:hunter2@broker.example:8883")
    monkeypatch.setenv("ELDERCARE_DATABASE_URL", "postgresql://app:s3cret@db.example/eldercare")
    monkeypatch.setenv("ELDERCARE_SECRET_KEY", "very-secret-signing-key")
    shown = load_settings().masked()
    text = repr(shown)
    assert "hunter2" not in text and "s3cret" not in text and "very-secret" not in text
    assert shown["mqtt_url"] == "mqtts://gw:********@broker.example:8883"
    assert shown["secret_key"] == "********"


@pytest.mark.parametrize(
    ("var", "value", "fragment"),
    [
        ("ELDERCARE_HTTP_PORT", "eighty", "ELDERCARE_HTTP_PORT"),
        ("ELDERCARE_HTTP_PORT", "70000", "ELDERCARE_HTTP_PORT"),
        ("ELDERCARE_MQTT_URL", "http://broker:1883", "ELDERCARE_MQTT_URL"),
        ("ELDERCARE_DATABASE_URL", "mysql://x", "ELDERCARE_DATABASE_URL"),
        ("ELDERCARE_LOG_LEVEL", "LOUD", "ELDERCARE_LOG_LEVEL"),
        ("ELDERCARE_COLOUR", "blue", "ELDERCARE_COLOUR"),
        ("ELDERCARE_BROKER_PASSWORD_FILE", "/etc/mosquitto/passwd", "ELDERCARE_BROKER_ACL_FILE"),
    ],
)
def test_wrong_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError) as exc:
        load_settings()
    message = str(exc.value)
    assert fragment in message
    assert "\n" not in message


def test_production_refuses_placeholder_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ELDERCARE_ENVIRONMENT", "production")
    with pytest.raises(SettingsError, match="ELDERCARE_SECRET_KEY"):
        load_settings()
    for weak in ("", "a-real-key-from-the-vault", "ab" * 40):  # empty, short, repetitive
        monkeypatch.setenv("ELDERCARE_SECRET_KEY", weak)
        with pytest.raises(SettingsError, match="ELDERCARE_SECRET_KEY") as exc:
            load_settings()
        assert "\n" not in str(exc.value)
        assert not weak or weak not in str(exc.value)  # the secret itself is never echoed
    monkeypatch.setenv("ELDERCARE_SECRET_KEY", "Zq3v8kP1xW7mN4rT9bY2cH6fJ0sL5dG8aE3uK7")
    assert load_settings().environment == "production"


def test_missing_or_broken_config_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("http_port = [unclosed\n")
    with pytest.raises(SettingsError, match="ELDERCARE_CONFIG"):
        load_settings(bad)
    # the file applied to that call only: later settings in this process don't read it again
    assert "ELDERCARE_CONFIG" not in os.environ
    assert Settings().environment in {"development", "test", "production"}  # bad.toml not read again


def test_a_wrong_value_in_the_file_names_the_file_and_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "eldercare.toml"
    cfg.write_text('http_port = "x"\ncolour = "blue"\n')
    with pytest.raises(SettingsError) as exc:
        load_settings(cfg)
    message = str(exc.value)
    assert f"{cfg}: http_port: Input should be a valid integer" in message, message
    assert f"{cfg}: colour: Extra inputs are not permitted" in message, message
    assert "ELDERCARE_" not in message and "\n" not in message
    monkeypatch.setenv("ELDERCARE_HTTP_PORT", "eighty")  # the variable wins, and is named
    with pytest.raises(SettingsError, match="ELDERCARE_HTTP_PORT: Input should be a valid integer"):
        load_settings(cfg)
