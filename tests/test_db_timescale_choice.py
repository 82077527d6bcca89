"""``ELDERCARE_TIMESCALE``: the path is decided from the server's settings before anything is loaded.

A server with the TimescaleDB files but without the library in ``shared_preload_libraries`` ends
the session with FATAL on ``CREATE EXTENSION``; ``auto`` must take the plain path there, ``on`` must
say why it cannot, and neither may leave a half-made database. The real-server cases run against
``ELDERCARE_TEST_PG_NOPRELOAD_URL`` (a server in that state: docs/development.md) when it is set.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import psycopg
import pytest
from click.testing import CliRunner

from eldercare.cli import cli
from eldercare.db.migrate import (
    TimescaleUnavailable,
    choose_timescale,
    preload_libraries,
    probe_timescale,
    status,
    upgrade,
)

NOPRELOAD_URL = os.environ.get("ELDERCARE_TEST_PG_NOPRELOAD_URL")


def test_auto_takes_timescale_only_when_installed_and_preloaded() -> None:
    yes = choose_timescale("auto", available=True, preloaded=True)
    assert yes.use and "shared_preload_libraries" in yes.reason
    not_preloaded = choose_timescale("auto", available=True, preloaded=False)
    assert not not_preloaded.use
    assert "installed but not in shared_preload_libraries" in not_preloaded.reason
    missing = choose_timescale("auto", available=False, preloaded=False)
    assert not missing.use and "not installed" in missing.reason
    assert not choose_timescale("off", available=True, preloaded=True).use


def test_on_refuses_a_server_that_cannot_load_timescale_with_the_reason() -> None:
    with pytest.raises(TimescaleUnavailable, match="not in shared_preload_libraries"):
        choose_timescale("on", available=True, preloaded=False)
    with pytest.raises(TimescaleUnavailable, match="not installed"):
        choose_timescale("on", available=False, preloaded=True)
    assert choose_timescale("on", available=True, preloaded=True).use


def test_preload_setting_is_parsed_like_the_server_does() -> None:
    assert "timescaledb" in preload_libraries("pg_stat_statements, $libdir/timescaledb")
    assert "timescaledb" in preload_libraries('"timescaledb.so",auto_explain')
    assert "timescaledb" not in preload_libraries("")
    assert "timescaledb" not in preload_libraries("timescaledb_toolkit")


def _new_db(server: str) -> Iterator[str]:
    name = f"choice_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlsplit(server)._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def nopreload_db() -> Iterator[str]:
    if not NOPRELOAD_URL:
        pytest.skip("ELDERCARE_TEST_PG_NOPRELOAD_URL (TimescaleDB installed, not preloaded) is not set")
    yield from _new_db(NOPRELOAD_URL)


@pytest.fixture
def fresh_db(pg_url: str) -> Iterator[str]:
    yield from _new_db(pg_url)


def test_probe_matches_this_server_and_auto_migrates(fresh_db: str, timescale_available: bool) -> None:
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        choice = probe_timescale(conn)
    assert choice.use == timescale_available
    assert upgrade(fresh_db) == choice
    assert status(fresh_db).timescale is choice.use


def test_auto_on_installed_but_not_preloaded_takes_the_plain_path(nopreload_db: str) -> None:
    with psycopg.connect(nopreload_db, autocommit=True) as conn:
        available = conn.execute(
            "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'"
        ).fetchone()
        assert available == (1,), "this server must have the TimescaleDB files installed"
    choice = upgrade(nopreload_db)
    assert not choice.use and "not in shared_preload_libraries" in choice.reason
    after = status(nopreload_db)
    assert after.up_to_date and after.timescale is False
    with psycopg.connect(nopreload_db) as conn:
        assert conn.execute("SELECT relkind FROM pg_class WHERE relname = 'readings'").fetchone() == ("p",)
        loaded = conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
        assert loaded == (0,)


def test_on_with_installed_but_not_preloaded_fails_in_one_line_and_creates_nothing(nopreload_db: str) -> None:
    result = CliRunner().invoke(
        cli, ["db", "migrate"], env={"ELDERCARE_DATABASE_URL": nopreload_db, "ELDERCARE_TIMESCALE": "on"}
    )
    assert result.exit_code == 1
    assert "ELDERCARE_TIMESCALE=on but timescaledb is installed but not in shared_preload_libraries" in (
        result.output
    )
    assert status(nopreload_db).current is None  # nothing half made
    result = CliRunner().invoke(
        cli, ["db", "migrate"], env={"ELDERCARE_DATABASE_URL": nopreload_db, "ELDERCARE_TIMESCALE": "auto"}
    )
    assert result.exit_code == 0, result.output
    assert "plain PostgreSQL: timescaledb is installed but not in shared_preload_libraries" in result.output
