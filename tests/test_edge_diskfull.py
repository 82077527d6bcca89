"""A full disk never holds an alarm back: on a real 1 MB tmpfs (mounted by the test, root only)
the agent reports the nearly full disk before writes fail, sends an SOS from memory when the
outbox cannot take it, and stores it (same seq, same bytes) when space returns."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from edge_support import Subscriber, gateway, gw_file

from eldercare.edge.agent import WRITE_RETRY_S, Agent
from eldercare.edge.drivers import Action, Sample
from eldercare.edge.drivers.simulated import SimulatedDriver

pytestmark = pytest.mark.timeout(60)
pytest_plugins = ["edge_fixtures"]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MB tmpfs: a real file system that runs out of space."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        if os.environ.get("ELDERCARE_REQUIRE_DISKFULL"):
            pytest.fail(f"cannot mount a tmpfs: {r.stderr.decode().strip()}")
        pytest.skip(f"cannot mount a tmpfs (needs root): {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def wait_until(pred: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


def fill(path: Path, leave: int = 0) -> None:
    """Write ``path`` until only about ``leave`` bytes are free (0: until the disk is full)."""
    with path.open("ab") as f:
        while True:
            free = os.statvfs(path.parent).f_bavail * os.statvfs(path.parent).f_frsize
            if free <= leave:
                return
            try:
                f.write(b"\0" * min(16384, max(4096, free - leave)))
                f.flush()
            except OSError:
                return


def test_sos_leaves_a_full_disk_at_once_and_is_stored_when_space_returns(
    small_disk: Path, edge_broker: tuple[str, int], tmp_path: Path, edge_root: str
) -> None:
    host, port = edge_broker
    sub = Subscriber(host, port, edge_root)
    clock = {"t": 1000.0}
    wall0 = time.time()
    raw = gateway(
        tmp_path,
        edge_root,
        port,
        host=host,
        config={"telemetry_batch_max": 1, "telemetry_batch_ms": 100, "heartbeat_s": 3600},
        outbox={"path": str(small_disk / "outbox.sqlite3"), "ack": "platform", "disk_low_bytes": 256 * 1024},
    )
    agent = Agent(gw_file(raw), mono=lambda: clock["t"], wall=lambda: wall0 + clock["t"] - 1000.0)
    agent.start()
    filler = small_disk / "filler"

    def tick(seconds: float) -> None:
        clock["t"] += seconds
        d.feed(Sample("env-1", "tick", clock["t"]))  # wakes the loop: a turn at the new time

    def status_seen(pred: Any, timeout: float = 10.0) -> bool:
        """Wait until the statuses seen satisfy ``pred``, moving the injected clock on meanwhile (the
        agent publishes a status at most every 2 s of its clock). Each step is a write retry's
        interval, quicker than the agent's own wake-ups, so while the disk refuses, every turn
        retries a write: the status must still leave."""
        deadline = time.monotonic() + timeout
        while not sub.wait_for(lambda s: pred(s.of("status")), 0.05):
            if time.monotonic() > deadline:
                return False
            tick(WRITE_RETRY_S)
        return True

    def pir_values(s: Subscriber) -> list[float]:
        return [r["value"] for p in s.of("telemetry") for r in p["readings"] if r["sensor"] == "pir-kitchen"]

    try:
        assert agent.connected_once.wait(10)
        d = agent.driver("sim")
        assert isinstance(d, SimulatedDriver)
        # nearly full: reported (status.outbox.disk_low, the platform's device alert) while
        # everything still works
        fill(filler, leave=150 * 1024)
        tick(6.0)
        d.feed(Sample("pir-kitchen", "motion", 0.0))
        assert status_seen(lambda sts: any(st["outbox"].get("disk_low") == 1 for st in sts))
        low = next(st for st in sub.of("status") if st["outbox"].get("disk_low") == 1)
        assert 0 < low["outbox"]["disk_free_bytes"] < 256 * 1024
        assert sub.wait_for(lambda s: pir_values(s) == [0.0], 10)
        # full: writes fail, readings wait in memory
        fill(filler)
        i = 1
        while agent.write_retry_at == float("-inf") and i < 2000:
            d.feed(Sample("pir-kitchen", "motion", float(i)))
            i += 1
            time.sleep(0.005)
        assert agent.write_retry_at != float("-inf"), "the full disk never refused a write"
        # the SOS leaves at once, from memory
        d.feed(Action("sos-1", "sos"))
        assert sub.wait_for(lambda s: any(e["kind"] == "sos" for e in s.of("event")), 5)
        sos = next(e for e in sub.of("event") if e["kind"] == "sos")
        assert sos["seq"] in agent.sending.memory
        tick(3.0)
        assert status_seen(lambda sts: any(st["outbox"].get("unstored_events") == 1 for st in sts))
        # space returns: the SOS is stored under the seq and bytes it was sent with, the readings
        # that waited in memory are stored and sent
        filler.unlink()
        tick(3.0)
        assert wait_until(lambda: not agent.sending.memory, 10)
        stored = [m for m in agent.outbox.next_batch([], 1000) if m.seq == sos["seq"]]
        assert len(stored) == 1 and json.loads(stored[0].payload) == sos  # kept until the platform acks
        assert sub.wait_for(lambda s: sorted(set(pir_values(s))) == [float(v) for v in range(i)], 10)
        tick(3.0)
        assert status_seen(lambda sts: sts[-1]["outbox"].get("disk_low") == 0)
        assert agent.error is None
    finally:
        agent.stop()
        sub.close()
        with contextlib.suppress(FileNotFoundError):
            filler.unlink()


def test_platform_rule_opens_and_clears_a_device_alert_for_a_nearly_full_disk() -> None:
    from eldercare.platform.engine import rules

    work = {"site": "home-1", "gateway": "gw-1", "t": 1_790_000_000_000, "state": "online", "sensors": {}}
    low = rules.decide_status({**work, "outbox": {"disk_low": 1, "disk_free_bytes": 20_000_000}})
    opened = [d for d in low if isinstance(d, rules.Open)]
    assert [(d.kind, d.dedup_key, d.gateway_id) for d in opened] == [
        ("device_offline", rules.dedup_key("device_offline", device="gw-1/disk"), "gw-1")
    ]
    assert "20.0 MB free" in str(opened[0].summary)
    ok = rules.decide_status({**work, "outbox": {"disk_low": 0}})
    assert (
        rules.Clear(
            rules.dedup_key("device_offline", device="gw-1/disk"), "the gateway's disk has space again"
        )
        in ok
    )
    older = rules.decide_status({**work, "outbox": {"messages": 3}})  # a gateway that does not say
    assert not any("disk" in getattr(d, "dedup_key", "") for d in older)


def test_readings_the_disk_refuses_for_long_are_bounded_in_memory_and_counted(
    edge_broker: tuple[str, int], tmp_path: Path, edge_root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    from eldercare.edge import agent as agent_module

    monkeypatch.setattr(agent_module, "MEMORY_ROWS_MAX", 100)
    host, port = edge_broker
    sub = Subscriber(host, port, edge_root)
    agent = Agent(gw_file(gateway(tmp_path, edge_root, port, host=host)))
    agent.start()
    try:
        assert agent.connected_once.wait(10)

        def full(*_a: Any, **_k: Any) -> None:
            raise sqlite3.OperationalError("database or disk is full")

        real_add = agent.outbox.add_readings
        agent.outbox.add_readings = full  # type: ignore[method-assign]
        d = agent.driver("sim")
        assert isinstance(d, SimulatedDriver)
        d.feed_many(Sample("pir-kitchen", "motion", float(i)) for i in range(150))
        # all 150 handled (the last is in memory), the oldest dropped: the newest are kept
        assert wait_until(lambda: bool(agent.rows) and agent.rows[-1][3] == 149.0, 10)
        assert agent.rows_dropped > 0 and len(agent.rows) <= 100
        assert sub.wait_for(
            lambda s: any(st["outbox"].get("dropped_readings", 0) > 0 for st in s.of("status")), 10
        )
        d.feed(Action("sos-1", "sos"))  # an alarm still leaves
        assert sub.wait_for(lambda s: any(e["kind"] == "sos" for e in s.of("event")), 10)
        agent.stop()  # still refused at shutdown: logged, not raised
        assert agent.error is None
    finally:
        agent.outbox.add_readings = real_add  # type: ignore[method-assign]
        agent.stop()
        sub.close()


def test_a_disk_that_refuses_every_retry_still_lets_the_status_out(
    edge_broker: tuple[str, int], tmp_path: Path, edge_root: str
) -> None:
    """A clock that moves a write retry's interval at every reading of it: every turn retries the
    refused write. The turn goes on past the refusal, so the status still reports what waits."""
    import sqlite3

    host, port = edge_broker
    sub = Subscriber(host, port, edge_root)
    clock = {"t": 1000.0, "running": False}

    def mono() -> float:
        if clock["running"]:
            clock["t"] += WRITE_RETRY_S
        return clock["t"]

    agent = Agent(gw_file(gateway(tmp_path, edge_root, port, host=host)), mono=mono)
    agent.start()

    def full(*_a: Any, **_k: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    try:
        assert agent.connected_once.wait(10)
        real_add = agent.outbox.add_readings
        agent.outbox.add_readings = full  # type: ignore[method-assign]
        clock["running"] = True
        d = agent.driver("sim")
        assert isinstance(d, SimulatedDriver)
        d.feed(Sample("pir-kitchen", "motion", 1.0))
        assert sub.wait_for(
            lambda s: any(st["outbox"].get("unstored_readings", 0) > 0 for st in s.of("status")), 10
        ), "no status while every turn's write retry failed"
        assert agent.error is None
        agent.outbox.add_readings = real_add  # type: ignore[method-assign]
    finally:
        agent.stop()
        sub.close()


def test_a_disk_that_stays_full_is_logged_once_a_minute_not_at_every_retry(
    small_disk: Path,
    edge_broker: tuple[str, int],
    tmp_path: Path,
    edge_root: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A line per retry (every second) filled the gateway's log, often on the very disk that is full."""
    import logging

    host, port = edge_broker
    clock = {"t": 1000.0}
    wall0 = time.time()
    raw = gateway(
        tmp_path,
        edge_root,
        port,
        host=host,
        config={"telemetry_batch_max": 1, "telemetry_batch_ms": 100, "heartbeat_s": 3600},
        outbox={"path": str(small_disk / "outbox.sqlite3")},
    )
    agent = Agent(gw_file(raw), mono=lambda: clock["t"], wall=lambda: wall0 + clock["t"] - 1000.0)
    caplog.set_level(logging.INFO, logger="eldercare.edge")
    agent.start()
    filler = small_disk / "filler"

    def refusals() -> list[str]:
        return [
            r.getMessage()
            for r in caplog.records
            if r.name == "eldercare.edge.agent"
            and r.levelno >= logging.ERROR
            and "outbox write" in r.getMessage()
        ]

    try:
        assert agent.connected_once.wait(10)
        d = agent.driver("sim")
        assert isinstance(d, SimulatedDriver)
        fill(filler)
        i = 0
        while agent.write_retry_at == float("-inf") and i < 2000:
            d.feed(Sample("pir-kitchen", "motion", float(i)))
            i += 1
            time.sleep(0.005)
        assert agent.write_retry_at != float("-inf"), "the full disk never refused a write"
        for _ in range(50):  # 50 retries, a second apart on the agent's clock
            clock["t"] += WRITE_RETRY_S
            d.feed(Sample("env-1", "tick", clock["t"]))
            assert wait_until(lambda: agent.write_retry_at == clock["t"] + WRITE_RETRY_S, 5), "no retry"
        assert len(refusals()) == 1, refusals()
        assert refusals()[0].startswith("outbox write failed, retrying every 1.0 s: ")
        clock["t"] += 11.0  # a minute since the first
        d.feed(Sample("env-1", "tick", clock["t"]))
        assert wait_until(lambda: len(refusals()) == 2, 5), refusals()
        assert refusals()[1].startswith("outbox writes still refused after 6")
        filler.unlink()
        clock["t"] += WRITE_RETRY_S
        d.feed(Sample("env-1", "tick", clock["t"]))
        assert wait_until(lambda: not agent.writes_refused, 5)
        assert any("outbox writes accepted again after" in r.getMessage() for r in caplog.records)
        assert agent.error is None
    finally:
        agent.stop()
        with contextlib.suppress(FileNotFoundError):
            filler.unlink()
