"""``kill -9`` the agent process mid-batch, restart it: nothing that reached the outbox is lost."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from edge_support import Subscriber, agent_process, gateway, write_toml

pytestmark = pytest.mark.timeout(90)
pytest_plugins = ["edge_fixtures"]


def _counter_values_on_disk(db: Path, sensor: str) -> list[float]:
    con = sqlite3.connect(db)
    try:
        values = [v for (v,) in con.execute("SELECT value FROM pending WHERE sensor = ?", (sensor,))]
        for (payload,) in con.execute("SELECT payload FROM messages WHERE kind = 'telemetry'"):
            values += [r["value"] for r in json.loads(payload)["readings"] if r["sensor"] == sensor]
        return values
    finally:
        con.close()


def test_kill_9_mid_batch_then_restart_loses_nothing(
    edge_broker: tuple[str, int], tmp_path: Path, edge_root: str
) -> None:
    host, port = edge_broker
    sub = Subscriber(host, port, edge_root)
    raw: dict[str, Any] = gateway(
        tmp_path,
        edge_root,
        port,
        host=host,
        broker={"keepalive_s": 5},
        config={"telemetry_batch_max": 50, "telemetry_batch_ms": 500, "heartbeat_s": 3600},
    )
    raw["drivers"] = [
        {"type": "simulated", "name": "sim", "counter": {"sensor": "counter-1", "rate_hz": 400}}
    ]
    config = write_toml(tmp_path / "gateway.toml", raw)
    log = tmp_path / "agent.log"
    db = tmp_path / "outbox.sqlite3"

    proc = agent_process(config, log)
    try:
        ok = sub.wait_for(lambda s: len(s.of("telemetry")) >= 4, 30)
        assert ok, log.read_text()
        time.sleep(0.23)  # somewhere inside a 500 ms batch window
    finally:
        proc.kill()  # SIGKILL: no clean-up of any kind
        proc.wait(10)
    on_disk = _counter_values_on_disk(db, "counter-1")
    print(f"on disk at the kill: {len(on_disk)} counter readings")
    assert on_disk, "the kill should leave readings in the outbox (pending or unacknowledged)"
    # the broker fires the Last Will: retained status offline
    assert sub.wait_for(lambda s: s.of("status")[-1]["state"] == "offline", 15)

    raw["drivers"] = [
        {"type": "simulated", "name": "sim", "counter": {"sensor": "counter-2", "rate_hz": 400, "limit": 100}}
    ]
    write_toml(config, raw)
    proc = agent_process(config, log)
    try:

        def done(s: Subscriber) -> bool:
            return any(
                r["sensor"] == "counter-2" and r["value"] == 99
                for p in s.of("telemetry")
                for r in p["readings"]
            )

        assert sub.wait_for(done, 30), log.read_text()
        assert sub.wait_for(lambda s: s.of("status")[-1]["state"] == "online", 5)
    finally:
        proc.terminate()
        proc.wait(15)
    assert sub.wait_for(lambda s: s.of("status")[-1]["state"] == "offline", 5)

    first: dict[int, dict[str, Any]] = {}
    for kind, p in sub.messages:
        if kind == "telemetry":
            assert first.setdefault(p["seq"], p) == p  # a redelivery is identical
    seqs = sorted(first)
    assert seqs == list(range(len(seqs))), "no seq missing across the crash"
    assert len({p["epoch"] for p in first.values()}) == 1, "the restarted agent keeps its epoch"
    ordered = [first[s] for s in seqs]
    c1 = [r["value"] for p in ordered for r in p["readings"] if r["sensor"] == "counter-1"]
    c2 = [r["value"] for p in ordered for r in p["readings"] if r["sensor"] == "counter-2"]
    assert c1 == [float(i) for i in range(len(c1))], "counter-1 arrives without a gap"
    assert max(on_disk) <= c1[-1], "every reading that was on disk at the kill was delivered"
    assert c2 == [float(i) for i in range(100)]
    sub.close()


def test_a_second_agent_on_the_same_outbox_is_refused_and_the_first_goes_on(
    edge_broker: tuple[str, int], tmp_path: Path, edge_root: str
) -> None:
    """Started twice (a second terminal, a unit started by hand), the two agents took the broker
    connection from each other every second and sealed messages from one file with counters each
    kept in memory: the same seq with different readings, of which the platform keeps the first."""
    host, port = edge_broker
    sub = Subscriber(host, port, edge_root)
    raw = gateway(tmp_path, edge_root, port, host=host)
    config = write_toml(tmp_path / "gateway.toml", raw)
    log, log2 = tmp_path / "agent.log", tmp_path / "agent2.log"
    proc = agent_process(config, log)
    second: subprocess.Popen[bytes] | None = None
    try:
        assert sub.wait_for(lambda s: s.of("status") and s.of("status")[-1]["state"] == "online", 30), (
            log.read_text()
        )
        second = agent_process(config, log2)
        try:
            assert second.wait(60) == 1, log2.read_text()
        except subprocess.TimeoutExpired:
            pytest.fail(f"a second agent on the same outbox ran:\n{log2.read_text()[-2000:]}")
        assert log2.read_text().strip().splitlines() == [
            f"Error: outbox {tmp_path / 'outbox.sqlite3'} is in use by another edge agent (pid {proc.pid}):"
            " one agent per gateway file; stop it first"
        ]
        time.sleep(1.5)  # the first was not thrown off the broker meanwhile
        assert "disconnected" not in log.read_text(), log.read_text()
        assert proc.poll() is None
    finally:
        if second is not None and second.poll() is None:
            second.kill()
            second.wait()
        proc.terminate()
        assert proc.wait(15) == 0
    # stopped: the outbox is free again, at once
    again = agent_process(config, log2)
    try:
        n = len(sub.of("status"))
        assert sub.wait_for(
            lambda s: len(s.of("status")) > n and s.of("status")[-1]["state"] == "online", 30
        ), log2.read_text()
    finally:
        again.terminate()
        assert again.wait(15) == 0
    sub.close()
