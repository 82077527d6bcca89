"""A damaged outbox is not a dead gateway: truncated or overwritten files are moved aside and a new
epoch started; a lost WAL (next_seq going back) is caught by the high-water mark."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from edge_support import Subscriber, gateway, gw_file

from eldercare import protocol
from eldercare.edge.agent import Agent
from eldercare.edge.drivers import Action, Sample
from eldercare.edge.drivers.simulated import SimulatedDriver
from eldercare.edge.outbox import Outbox

pytestmark = pytest.mark.timeout(60)
pytest_plugins = ["edge_fixtures"]

T0 = 1_790_000_000_000


def filled(path: Path, batches: int = 100) -> Outbox:
    ob = Outbox(path)
    for _ in range(batches):
        ob.add_readings([(T0 + j, "pir-1", "motion", float(j % 2)) for j in range(50)])
        ob.seal_batches(50, T0)
    return ob


def checkpointed(ob: Outbox) -> tuple[str, int]:
    """Everything into the main file (no WAL left), closed; returns (epoch, next_seq)."""
    ob._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    epoch, seq = ob.epoch, ob.next_seq
    ob.close()
    return epoch, seq


def assert_fresh_epoch_after(ob: Outbox, old_epoch: str, old_next: int) -> None:
    assert ob.epoch != old_epoch and ob.next_seq >= old_next and ob.epoch_start == ob.next_seq
    ob.add_readings([(T0, "pir-1", "motion", 1.0)])
    seq, _ = ob.seal_batch(50, T0) or (-1, 0)
    assert seq == old_next  # never a seq the old epoch may have sent, and no gap in the new one
    msg = protocol.decode("telemetry", ob.next_batch([], 10)[-1].payload)
    assert isinstance(msg, protocol.Telemetry) and msg.epoch == ob.epoch


def test_truncated_main_file_is_moved_aside_and_a_new_epoch_started(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    epoch, nxt = checkpointed(filled(path))
    os.truncate(path, path.stat().st_size - 2 * 4096)  # short by two pages
    ob = Outbox(path)
    assert len(ob.quarantined) == 1 and ob.quarantined[0].exists()
    assert ob.quarantined[0].name.startswith("outbox.sqlite3.corrupt-")
    assert ob.stats()["quarantined"] == 1 and ob.n_messages == 0
    assert_fresh_epoch_after(ob, epoch, nxt)


def test_garbage_written_into_the_file_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    epoch, nxt = checkpointed(filled(path))
    with path.open("r+b") as f:
        f.seek(3 * 4096)
        f.write(os.urandom(2 * 4096))
    ob = Outbox(path)
    assert len(ob.quarantined) == 1
    assert_fresh_epoch_after(ob, epoch, nxt)
    head = tmp_path / "head.sqlite3"
    epoch, nxt = checkpointed(filled(head, 3))
    with head.open("r+b") as f:
        f.write(b"garbage" * 20)  # the header: "file is not a database"
    ob = Outbox(head)
    assert len(ob.quarantined) == 1
    assert_fresh_epoch_after(ob, epoch, nxt)


def test_lost_wal_starts_a_new_epoch_so_no_seq_is_reused(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    ob = filled(path, 5)
    ob._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for _ in range(3):  # these three seals live only in the WAL
        ob.add_readings([(T0, "pir-1", "motion", 1.0)] * 50)
        ob.seal_batches(50, T0)
    epoch, nxt = ob.epoch, ob.next_seq
    assert nxt == 8
    copy = tmp_path / "copy.sqlite3"  # the main file and the sidecar, without the WAL
    shutil.copy(path, copy)
    shutil.copy(path.with_name(path.name + ".seq"), copy.with_name(copy.name + ".seq"))
    ob.close()
    back = Outbox(copy)
    assert not back.quarantined
    assert back.n_messages == 5  # what the WAL held is gone ...
    assert back.epoch_restarts and "went back from 8 to 5" in back.epoch_restarts[0]
    assert_fresh_epoch_after(back, epoch, nxt)  # ... but seqs 5-7 are not reused in that epoch
    # the surviving messages of the old epoch are still sent, with their old bytes
    old = [m for m in back.next_batch([], 20) if m.seq < back.epoch_start]
    assert [m.seq for m in old] == [0, 1, 2, 3, 4]
    assert all(protocol.decode("telemetry", m.payload).epoch == epoch for m in old)  # type: ignore[union-attr]


def test_reopen_without_damage_keeps_the_epoch(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    ob = filled(path, 3)
    epoch = ob.epoch
    ob.close()
    again = Outbox(path)
    assert again.epoch == epoch and not again.epoch_restarts and not again.quarantined
    assert again.next_seq == 3


def test_agent_on_a_damaged_outbox_reports_it_and_goes_on(
    edge_broker: tuple[str, int], tmp_path: Path, edge_root: str
) -> None:
    host, port = edge_broker
    raw = gateway(tmp_path, edge_root, port, host=host)
    path = Path(raw["outbox"]["path"])
    epoch, nxt = checkpointed(filled(path, 20))
    with path.open("r+b") as f:
        f.seek(2 * 4096)
        f.write(os.urandom(3 * 4096))
    sub = Subscriber(host, port, edge_root)
    agent = Agent(gw_file(raw))
    agent.start()
    try:
        assert agent.connected_once.wait(10)
        d = agent.driver("sim")
        assert isinstance(d, SimulatedDriver)
        d.feed(Action("sos-1", "sos"))
        assert sub.wait_for(lambda s: any(e["kind"] == "sos" for e in s.of("event")), 10)
        sos = next(e for e in sub.of("event") if e["kind"] == "sos")
        assert sos["epoch"] != epoch and sos["seq"] >= nxt
        assert sub.wait_for(lambda s: any(st["outbox"].get("quarantined") == 1 for st in s.of("status")), 10)
        assert list(tmp_path.glob("outbox.sqlite3.corrupt-*"))
        # damage found while running (SQLite's own error on a write): moved aside, and on it goes
        real_add = agent.outbox.add_readings
        raised = []

        def damaged(*a: Any, **k: Any) -> Any:
            if not raised:
                raised.append(1)
                raise sqlite3.DatabaseError("database disk image is malformed")
            return real_add(*a, **k)

        agent.outbox.add_readings = damaged  # type: ignore[method-assign]
        d.feed_many(Sample("pir-kitchen", "motion", 1.0) for _ in range(3))
        assert sub.wait_for(
            lambda s: any(r["sensor"] == "pir-kitchen" for p in s.of("telemetry") for r in p["readings"]), 15
        )
        assert agent.error is None and len(list(tmp_path.glob("outbox.sqlite3.corrupt-*"))) == 2
    finally:
        agent.stop()
        sub.close()


def test_a_closed_connection_is_not_corruption() -> None:
    from eldercare.edge.outbox import is_corruption

    assert not is_corruption(sqlite3.OperationalError("database or disk is full"))
    assert is_corruption(sqlite3.DatabaseError("database disk image is malformed"))
