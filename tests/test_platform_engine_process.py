"""``eldercare engine``: the alert engine in a process of its own (issue 27).

Two engine processes share a storm's work and its escalations through the database (each alert
opened once, each tier change made once), and stop cleanly on SIGTERM; ``eldercare serve`` starts
one engine beside its API and stops it, and an engine whose ``serve`` was killed outright stops by
itself. Deadlines are moved in the database (no test waits one out).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import psycopg
import pytest
from ingest_support import wait_for
from platform_seed import World, queue_sos

from eldercare.embedded import free_port

pytest_plugins = ["platform_api_support"]

ENGINE_ARGS = [sys.executable, "-m", "eldercare.cli", "engine"]
LISTENERS = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query = 'LISTEN alert_work'"
)
OTHER_SESSIONS = (  # clients only: TimescaleDB's job scheduler keeps a background session per database
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    " AND backend_type = 'client backend'"
)


@pytest.fixture
def env(db_url: str, mqtt_url: str, topic_root: str, tmp_path: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("ELDERCARE_")},
        "ELDERCARE_DATABASE_URL": db_url,
        "ELDERCARE_MQTT_URL": mqtt_url,
        "ELDERCARE_MQTT_TOPIC_ROOT": topic_root,
        "ELDERCARE_DATA_DIR": str(tmp_path),
        "ELDERCARE_ENVIRONMENT": "test",
    }


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def stop(proc: subprocess.Popen[bytes], log: Path) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    text = log.read_text()
    assert code == 0, text[-3000:]
    # a round that failed under load and was retried may log a traceback; stopping may not
    for sign in ("was destroyed but it is pending", "exception was never retrieved", "thread stopped"):
        assert sign not in text, text[-3000:]


def count(db_url: str, query: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])


def test_two_engine_processes_share_the_work_and_stop_cleanly(
    db_url: str, world: World, env: dict[str, str], tmp_path: Path
) -> None:
    logs = [tmp_path / f"engine-{i}.log" for i in (1, 2)]
    procs = []
    for log in logs:
        with open(log, "wb") as out:
            procs.append(subprocess.Popen(ENGINE_ARGS, env=env, stdout=out, stderr=subprocess.STDOUT))
    try:
        wait_for(lambda: count(db_url, LISTENERS)
                 == 2, 30, "both engines listening")  # fmt: skip
        queue_sos(db_url, 10)
        wait_for(lambda: count(db_url, "SELECT count(*) FROM alert_work") == 0, 30, "the queue drained")
        with psycopg.connect(db_url) as conn:
            alerts = conn.execute(
                "SELECT resident_id, detections, tier FROM alerts WHERE kind = 'sos' ORDER BY 1"
            ).fetchall()
        assert alerts == [("res-1", 10, 1), ("res-2", 10, 1)]  # one alert each, every detection once
        assert count(db_url, "SELECT count(*) FROM alert_trail WHERE action = 'opened'") == 2

        with psycopg.connect(db_url, autocommit=True) as conn:  # both deadlines passed: one climb each
            conn.execute(
                "UPDATE alerts SET next_escalation_at = now() - interval '1 second' WHERE kind = 'sos'"
            )
        wait_for(lambda: count(db_url, "SELECT count(*) FROM alerts WHERE kind = 'sos' AND tier = 2") == 2,
                 30, "both alerts at tier 2")  # fmt: skip
        assert count(db_url, "SELECT count(*) FROM alert_trail WHERE action = 'escalated'") == 2
        assert all(alive(p.pid) for p in procs)
    finally:
        for proc, log in zip(procs, logs, strict=True):
            if proc.poll() is None:
                stop(proc, log)
    assert all("alert engine stopped" in log.read_text() for log in logs)  # its own way out, logged
    assert count(db_url, OTHER_SESSIONS) == 0  # every connection closed


def test_serve_runs_one_engine_process_and_stops_it(
    db_url: str, world: World, env: dict[str, str], tmp_path: Path
) -> None:
    port, metrics_port = free_port(), free_port()
    env = env | {"ELDERCARE_ENGINE_METRICS_PORT": str(metrics_port)}
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "eldercare.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_for(lambda: get(f"http://127.0.0.1:{port}/healthz") == 200, 60, "serve /healthz")
        engines = [pid for pid in children(proc.pid) if "engine" in cmdline(pid)]
        assert len(engines) == 1, [cmdline(p) for p in children(proc.pid)]
        raw = Path(f"/proc/{engines[0]}/environ").read_bytes().split(b"\0")
        inherited = dict(kv.decode().split("=", 1) for kv in raw if kv.startswith(b"ELDERCARE_"))
        assert inherited == {k: v for k, v in env.items() if k.startswith("ELDERCARE_")}  # every setting
        queue_sos(db_url, 1)  # the engine process works: the API process runs none
        wait_for(lambda: count(db_url, "SELECT count(*) FROM alerts WHERE kind = 'sos'") == 2, 30, "alerts")
        # the counters are the engine process's own, on its metrics port (the API's show none)
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        done = re.search(r"^eldercare_engine_work_done_total (\d+)$", text, re.M)
        assert done is not None and int(done.group(1)) >= 2, text
    finally:
        stop(proc, log)
    assert not alive(engines[0])


def test_engines_whose_serve_was_killed_stop_by_themselves(
    db_url: str, world: World, env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "eldercare.cli", "serve", "--engines", "2", "--host", "127.0.0.1",
             "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_for(lambda: get(f"http://127.0.0.1:{port}/healthz") == 200, 60, "serve /healthz")
        engines = [pid for pid in children(proc.pid) if "engine" in cmdline(pid)]
        assert len(engines) == 2  # --engines 2
    finally:
        proc.kill()
        proc.wait(10)
    wait_for(lambda: not any(alive(pid) for pid in engines), 15, "the orphaned engines to stop")


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return int(r.status)
    except OSError:
        return 0


def test_an_engine_metrics_port_in_use_is_one_line(env: dict[str, str]) -> None:
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        out = subprocess.run(
            ENGINE_ARGS, env=env | {"ELDERCARE_ENGINE_METRICS_PORT": str(port)},
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines == [
        f"Error: cannot serve /metrics on 127.0.0.1:{port}: Address already in use "
        "(ELDERCARE_ENGINE_METRICS_PORT; engine i uses port + i; 0 turns it off)"
    ], lines
