"""``eldercare ingest`` command line: help, and readable refusals before anything starts."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from fix_db import unique_tag
from ingest_support import IngestProcess, count, wait_for

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


def _ingest(db_url: str, mqtt_url: str, topic_root: str, *args: str, **env: str) -> subprocess.Popen[str]:
    tag = unique_tag()
    full = {
        **os.environ,
        "ELDERCARE_DATABASE_URL": db_url,
        "ELDERCARE_MQTT_URL": mqtt_url,
        "ELDERCARE_MQTT_TOPIC_ROOT": topic_root,
        "ELDERCARE_INGEST_CLIENT_ID": f"test-cli-{tag}-0",
        "ELDERCARE_INGEST_SHARED_GROUP": f"c{tag}",
        "ELDERCARE_INGEST_SESSION_EXPIRY_S": "60",
        **env,
    }
    cmd = [sys.executable, "-m", "eldercare.cli", "ingest", *args]
    return subprocess.Popen(cmd, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.mqtt5
def test_a_metrics_port_in_use_is_one_line_and_retire_takes_no_port(
    db_url: str, mqtt_url: str, topic_root: str
) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = str(held.getsockname()[1])
        run = _ingest(db_url, mqtt_url, topic_root, "run", ELDERCARE_METRICS_PORT=port)
        _, err = run.communicate(timeout=60)
        assert run.returncode == 1, err
        assert "Traceback" not in err
        assert f"Error: cannot serve /metrics on 127.0.0.1:{port}: Address already in use" in err
        # retiring worker 0 while worker 0's port is taken: it needs no /healthz and exits when drained
        retire = _ingest(db_url, mqtt_url, topic_root, "retire", "--index", "0", ELDERCARE_METRICS_PORT=port)
        _, err = retire.communicate(timeout=60)
        assert retire.returncode == 0, err
        assert "session forgotten" in err and "Traceback" not in err


def test_an_unreachable_broker_is_logged(db_url: str, topic_root: str) -> None:
    # a port bound and never listened on refuses every connection, and stays ours for the test
    # (closed at once, another test's server could take it and answer)
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    port = held.getsockname()[1]
    proc = _ingest(db_url, f"mqtt://127.0.0.1:{port}", topic_root, "run", ELDERCARE_METRICS_PORT="0")
    try:
        assert proc.stderr is not None
        seen: list[str] = []
        deadline = time.monotonic() + 60  # the process's start (imports, database) on a loaded machine
        # paho retries silently; the worker must say why nothing arrives
        while not any("cannot reach the broker" in line for line in seen) and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stderr], [], [], max(0.0, deadline - time.monotonic()))
            if ready:
                seen.append(proc.stderr.readline())
        said = [line for line in seen if f"cannot reach the broker at 127.0.0.1:{port}" in line]
        # with the reason: a refused port and a certificate not trusted read alike without it
        assert said and "Connection refused" in said[0], seen
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
        held.close()


def test_a_tls_file_that_cannot_be_used_is_one_line(db_url: str, topic_root: str, tmp_path: Path) -> None:
    """ELDERCARE_MQTT_CA_FILE naming no file (docs/deploy: for a private CA): paho's FileNotFoundError
    traceback."""
    missing = tmp_path / "ca.pem"
    run = _ingest(
        db_url, "mqtts://127.0.0.1:8883", topic_root, "run", ELDERCARE_METRICS_PORT="0",
        ELDERCARE_MQTT_CA_FILE=str(missing),
    )  # fmt: skip
    _, err = run.communicate(timeout=60)
    assert run.returncode == 1 and "Traceback" not in err, err
    assert f"Error: cannot use the TLS files (ELDERCARE_MQTT_CA_FILE={missing}): No such file" in err, err


@pytest.mark.mqtt5
def test_retire_refuses_a_running_worker_and_retires_it_once_stopped(
    db_url: str, mqtt_url: str, topic_root: str, tmp_path: Path
) -> None:
    live = IngestProcess(db_url, mqtt_url, topic_root, tmp_path).start()
    client_id = live.env["ELDERCARE_INGEST_CLIENT_ID"]
    try:
        live.wait_healthy()
        wait_for(
            lambda: count(db_url, "SELECT count(*) FROM ingest_workers WHERE client_id = %s", client_id) == 1
        )
        retire = IngestProcess(db_url, mqtt_url, topic_root, tmp_path, ELDERCARE_INGEST_CLIENT_ID=client_id)
        refused = retire.start(["retire", "--index", "0"]).proc
        assert refused is not None and refused.wait(60) == 1, retire.output()
        assert f"Error: {client_id} recorded itself alive" in retire.output()
        assert "it is not retired" in retire.output() and "Traceback" not in retire.output()
        assert live.healthz()[0] == 200  # not thrown off its session by a second client with its id
    finally:
        assert live.stop() == 0
    # a stop asked for (SIGTERM) is no broker trouble: it logged two WARNINGs "disconnected from the
    # broker: Normal disconnection" at every clean stop, which a log alert on WARNING would page for
    stopping = [line for line in live.output().splitlines() if "disconnected from the broker" in line]
    assert len(stopping) == 2 and all(" INFO " in line and "(stopping)" in line for line in stopping), (
        stopping
    )
    # stopped on this host: its process is gone, so there is nothing to wait for
    done = retire.start(["retire", "--index", "0"]).proc
    assert done is not None and done.wait(60) == 0, retire.output()
    assert f"retired {client_id}: session forgotten" in retire.output()


def test_a_second_worker_with_a_running_workers_client_id_is_refused(
    db_url: str, mqtt_url: str, topic_root: str, tmp_path: Path
) -> None:
    """Started twice by mistake (or on two hosts with one ELDERCARE_INGEST_CLIENT_ID), the two took
    the broker session from each other every second, for ever, logging only "disconnected from the
    broker: Unspecified error"."""
    live = IngestProcess(db_url, mqtt_url, topic_root, tmp_path).start()
    client_id = live.env["ELDERCARE_INGEST_CLIENT_ID"]
    try:
        live.wait_healthy()
        wait_for(
            lambda: count(db_url, "SELECT count(*) FROM ingest_workers WHERE client_id = %s", client_id) == 1
        )
        # its own metrics port: only the client id is shared (a second host, or metrics turned off)
        second = IngestProcess(db_url, mqtt_url, topic_root, tmp_path, ELDERCARE_INGEST_CLIENT_ID=client_id)
        refused = second.start().proc
        assert refused is not None and refused.wait(60) == 1, second.output()
        assert (
            second.output().strip().splitlines()
            == [
                f"Error: ingest worker {client_id} is already running (process {live.proc.pid}"  # type: ignore[union-attr]
                f" on {socket.gethostname()}, alive "
                + second.output().split(" alive ", 1)[1].split(" s ago", 1)[0]
                + " s ago): two workers with one client id take its broker session from each other; stop it,"
                " or give this one its own ELDERCARE_INGEST_CLIENT_ID"
            ]
        ), second.output()
        assert live.healthz()[0] == 200
        assert "disconnected from the broker" not in live.output(), live.output()
    finally:
        assert live.stop() == 0
    # stopped: the client id is free again at once, its record naming no process (pid 0)
    assert (
        count(db_url, "SELECT count(*) FROM ingest_workers WHERE client_id = %s AND pid = 0", client_id) == 1
    )
    again = IngestProcess(
        db_url, mqtt_url, topic_root, tmp_path, ELDERCARE_INGEST_CLIENT_ID=client_id
    ).start()
    try:
        again.wait_healthy()
    finally:
        assert again.stop() == 0


def test_a_crashed_worker_whose_pid_is_now_ours_does_not_refuse_its_restart(db_url: str) -> None:
    """A container restarted after a crash runs its command as the same pid on the same host: the
    record of the crashed worker, a moment old, names this very process, which is no second worker."""
    import psycopg

    from eldercare.config import Settings
    from eldercare.ingest.cli import _running

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO ingest_workers (client_id, host, pid) VALUES ('ing-crashed', %s, %s)",
            (socket.gethostname(), os.getpid()),
        )
    assert _running(Settings(), db_url, ["ing-crashed"]) is None


@pytest.mark.mqtt5
def test_retire_that_could_not_drain_exits_non_zero(mqtt_url: str, topic_root: str, tmp_path: Path) -> None:
    """Stopped while the database is away, the session is kept: a script's loop must see the failure."""
    with socket.socket() as s:  # no database listens here
        s.bind(("127.0.0.1", 0))
        dead_db = f"postgresql://postgres@127.0.0.1:{s.getsockname()[1]}/none"
    retire = IngestProcess(dead_db, mqtt_url, topic_root, tmp_path, ELDERCARE_INGEST_SLOT_DIR=str(tmp_path))
    proc = retire.start(["retire", "--index", "0"]).proc
    assert proc is not None
    try:
        wait_for(
            lambda: "database unavailable" in retire.output(),
            60,
            "the retiring worker waiting for the database",
        )
    finally:
        proc.terminate()
    assert proc.wait(60) == 1, retire.output()
    client_id = retire.env["ELDERCARE_INGEST_CLIENT_ID"]
    assert f"Error: {client_id} is not retired:" in retire.output(), retire.output()
