"""``eldercare ingest`` command line: help, and readable refusals before anything starts."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from eldercare.cli import cli


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for var in ("ELDERCARE_MQTT_URL", "ELDERCARE_INGEST_SHARED_GROUP", "ELDERCARE_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ELDERCARE_DATABASE_URL", "postgresql://postgres@127.0.0.1:9/none")
    return CliRunner()


def test_help_lists_run_and_retire(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["ingest", "--help"])
    assert result.exit_code == 0
    assert "run" in result.output and "retire" in result.output


def test_without_a_broker_url_it_says_so(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["ingest"])  # bare `eldercare ingest` runs the worker
    assert result.exit_code == 1
    assert "ELDERCARE_MQTT_URL is not set" in result.output


def test_several_workers_need_a_shared_group(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ELDERCARE_MQTT_URL", "mqtt://127.0.0.1:1883")
    monkeypatch.setenv("ELDERCARE_INGEST_SHARED_GROUP", "")
    result = runner.invoke(cli, ["ingest", "run", "--workers", "2"])
    assert result.exit_code == 2
    assert "ELDERCARE_INGEST_SHARED_GROUP" in result.output
