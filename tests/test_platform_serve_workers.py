"""``eldercare serve --workers 2``: two API processes share one port beside one alert engine
process, which takes the work from the database: a storm of SOS events becomes one alert each."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import psycopg
from ingest_support import wait_for
from platform_seed import World, queue_sos

from eldercare.embedded import free_port

pytest_plugins = ["platform_api_support"]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except OSError:
        return 0, ""


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def test_two_workers_share_the_port_and_the_engine_work(
    db_url: str, world: World, mqtt_url: str, topic_root: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ELDERCARE_")},
        "ELDERCARE_DATABASE_URL": db_url,
        "ELDERCARE_MQTT_URL": mqtt_url,
        "ELDERCARE_MQTT_TOPIC_ROOT": topic_root,
        "ELDERCARE_DATA_DIR": str(tmp_path),
        "ELDERCARE_ENVIRONMENT": "test",
    }
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "eldercare.cli", "serve", "--workers", "2", "--host", "127.0.0.1",
             "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_for(lambda: get(f"http://127.0.0.1:{port}/healthz")[0] == 200, 60, "serve /healthz")
        wait_for(lambda: len(children(proc.pid)) >= 3, 30, "two worker processes and the engine")
        queue_sos(db_url, 10)

        def done() -> bool:
            with psycopg.connect(db_url) as conn:
                row = conn.execute("SELECT count(*) FROM alert_work").fetchone()
            return row is not None and row[0] == 0

        wait_for(done, 30, "the queue drained")
        with psycopg.connect(db_url) as conn:
            alerts = conn.execute(
                "SELECT resident_id, detections FROM alerts WHERE kind = 'sos' ORDER BY 1"
            ).fetchall()
            opened = conn.execute("SELECT count(*) FROM alert_trail WHERE action = 'opened'").fetchone()
        assert alerts == [("res-1", 10), ("res-2", 10)]  # one alert each, every detection counted once
        assert opened == (2,)
        # one answer is enough, but a loaded machine may take longer than one try's timeout
        wait_for(lambda: get(f"http://127.0.0.1:{port}/metrics")[0] == 200, 30, "serve /metrics")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0, log.read_text()[-3000:]
