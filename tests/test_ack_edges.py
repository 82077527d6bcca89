"""End-to-end acknowledgement, its edge cases (issue 20): the first ack of a new epoch, a gap the
gateway will never fill, and the pruning of ingest's acknowledgement bookkeeping.

The rule for both edge cases is the gateway's ``low`` (wire protocol v1, section 9): every
telemetry and event message carries its outbox low-water mark when sealed, and the platform's
watermark never stays below ``low - 1`` (nothing below it will ever come). The store tests run
:class:`Store` against the real PostgreSQL; the process tests run real agents, a private Mosquitto
and ``eldercare ingest``.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest
from edge_support import Mosquitto, gateway, gw_file
from ingest_support import IngestProcess, count, now_ms, register, wait_for

from eldercare import protocol
from eldercare.db import maintain
from eldercare.edge.agent import Agent
from eldercare.edge.drivers import Sample
from eldercare.edge.drivers.simulated import SimulatedDriver
from eldercare.ingest.batch import Batch, Inbound, Registry, Validator
from eldercare.ingest.store import Store

ROOT = "eldercare/v1"
EP = "epoch-edge-0001"
GW = {"gw-1": "home-1"}


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    register(db_url, GW)
    s = Store(db_url)
    yield s
    s.close()


def tele(seq: int, low: int | None = None, *, epoch: str = EP, t: int | None = None) -> bytes:
    body: dict[str, Any] = {
        "v": 1,
        "epoch": epoch,
        "seq": seq,
        "readings": [{"t": t or now_ms(), "sensor": "pir-1", "metric": "motion", "value": float(seq)}],
    }
    if low is not None:
        body["low"] = low
    return msgspec.json.encode(body)


def sos(seq: int, low: int | None = None, *, epoch: str = EP) -> bytes:
    body: dict[str, Any] = {
        "v": 1,
        "epoch": epoch,
        "seq": seq,
        "t": now_ms(),
        "sensor": "sos-1",
        "kind": "sos",
    }
    if low is not None:
        body["low"] = low
    return msgspec.json.encode(body)


def write(store: Store, *msgs: tuple[str, bytes]) -> dict[tuple[str, str, str], int]:
    reg = Registry(store.load_registry())
    v = Validator(ROOT, reg)
    b = Batch()
    for kind, payload in msgs:
        b.add(v.check(Inbound(f"{ROOT}/home-1/gw-1/{kind}", payload)))
    return store.write(b, reg).acks


def ack(store: Store, *msgs: tuple[str, bytes], epoch: str = EP) -> int:
    return write(store, *msgs)[("home-1", "gw-1", epoch)]


# The first ack of a new epoch -----------------------------------------------------------------


def test_first_ack_of_a_new_epoch_starts_below_the_gateways_low_not_below_what_came_first(
    store: Store,
) -> None:
    """A gateway recovered into a new epoch from seq 998 sends its SOS (seq 1005) ahead of the
    telemetry 998-1004 and the SOS is committed first (the event fast path, another worker): the
    first ack must not cover 998-1004, which may still be lost with a crashing broker."""
    assert ack(store, ("event", sos(1005, low=998))) == 997
    assert ack(store, *(("telemetry", tele(s, low=998)) for s in range(998, 1003))) == 1002
    assert ack(store, ("telemetry", tele(1003, low=998)), ("telemetry", tele(1004, low=998))) == 1005


def test_control_without_low_the_first_ack_covers_seqs_never_stored(store: Store, db_url: str) -> None:
    """The old rule, kept for gateways that send no ``low``: the watermark starts just below the
    first seq stored, here past 998-1004. This is the hole the ``low`` closes."""
    assert ack(store, ("event", sos(1005))) == 1005
    assert count(db_url, "SELECT count(*) FROM ingested_messages WHERE seq < 1005") == 0


def test_each_epoch_has_its_own_watermark(store: Store) -> None:
    assert ack(store, *(("telemetry", tele(s, low=0)) for s in range(5))) == 4
    new = "epoch-edge-0002"
    assert ack(store, ("event", sos(0, low=0, epoch=new)), epoch=new) == 0
    assert write(store, ("telemetry", tele(2, low=1, epoch=new))) == {("home-1", "gw-1", new): 0}


# A gap that is never filled -------------------------------------------------------------------


def test_a_gap_never_filled_is_passed_once_a_message_reports_the_gateways_low(store: Store) -> None:
    """Seq 7 was shed by the gateway: it will never come. The watermark waits at 6 until a message
    says the gateway's outbox holds nothing below 8, then runs on; an older ``low`` (a redelivery)
    never takes it back."""
    assert ack(store, *(("telemetry", tele(s, low=5)) for s in (5, 6, 8, 9))) == 6
    assert ack(store, ("telemetry", tele(9, low=5))) == 6  # a redelivery: still waiting
    assert ack(store, ("telemetry", tele(10, low=8))) == 10
    assert ack(store, ("telemetry", tele(6, low=5))) == 10


def test_a_low_above_its_own_seq_is_refused_with_the_field_named() -> None:
    with pytest.raises(protocol.ProtocolError) as err:
        protocol.decode("telemetry", tele(4, low=5))
    assert err.value.field == "low"
    with pytest.raises(protocol.ProtocolError):
        protocol.decode("event", sos(4, low=9))
    assert protocol.decode("event", sos(4, low=4)).low == 4  # type: ignore[union-attr]


def test_an_event_stored_before_low_existed_is_no_conflict_when_redelivered(
    store: Store, db_url: str
) -> None:
    """The digest of an event without ``low`` is the one it had before the field existed."""
    payload = sos(3)
    assert ack(store, ("event", payload)) == 3
    before = protocol.encode(protocol.decode("event", payload)).replace(b',"low":null', b"")
    assert b'"low"' not in before  # the bytes the digest was taken of before the field existed
    digest = zlib.crc32(before) | len(before) << 32
    assert count(db_url, "SELECT count(*) FROM ingested_messages WHERE digest = %s", digest) == 1
    write(store, ("event", payload))
    assert count(db_url, "SELECT count(*) FROM dead_letters") == 0
    assert count(db_url, "SELECT count(*) FROM events") == 1


# Pruning ------------------------------------------------------------------------------------


def test_ack_bookkeeping_is_pruned_by_db_maintain(store: Store, db_url: str) -> None:
    future = 4_000_000_000_000  # refused: beyond ingest's clock
    assert ack(store, ("telemetry", tele(1, low=1)), ("telemetry", tele(2, low=1, t=future))) == 2
    assert ack(store, ("telemetry", tele(3, low=1)), ("telemetry", tele(5, low=1, t=future))) == 3
    store.heartbeat(client_id="worker-gone", host="h", pid=1)
    old = "epoch-edge-0000"
    assert ack(store, ("telemetry", tele(0, low=0, epoch=old)), epoch=old) == 0
    assert count(db_url, "SELECT count(*) FROM ingest_refused") == 2
    policy = maintain.RetentionPolicy()
    with psycopg.connect(db_url, autocommit=True) as conn:
        # the old epoch's watermark last moved beyond the horizon; the worker was silent as long
        conn.execute(
            "UPDATE ingest_acks SET updated_at = now() - interval '31 days' WHERE epoch = %s", (old,)
        )
        conn.execute("UPDATE ingest_workers SET seen_at = now() - interval '31 days'")
        report = maintain.run(conn, policy)
    # refused seq 2 is below the watermark (3): passed, forgotten; seq 5 is above it: kept
    assert count(db_url, "SELECT count(*) FROM ingest_refused") == 1
    assert count(db_url, "SELECT seq FROM ingest_refused") == 5
    assert count(db_url, "SELECT count(*) FROM ingest_acks") == 1
    assert count(db_url, "SELECT count(*) FROM ingest_workers") == 0
    assert report.acks_pruned == 3
    # what is left still works: 4 fills the gap, the refused 5 is passed
    assert ack(store, ("telemetry", tele(4, low=1))) == 5
    with psycopg.connect(db_url, autocommit=True) as conn:
        again = maintain.run(conn, policy, now=datetime.now(UTC) + timedelta(days=policy.dedup_days + 1))
    assert again.acks_pruned == 2  # the watermark and the refused seq 5, both past the horizon
    assert (
        count(db_url, "SELECT count(*) FROM ingest_acks")
        + count(db_url, "SELECT count(*) FROM ingest_refused")
        == 0
    )


# With real agents, Mosquitto and ingest -------------------------------------------------------


def counter(values: range, sensor: str = "counter-1") -> Iterator[Sample]:
    return (Sample(sensor, "count", float(i)) for i in values)


def start_agent(raw: dict[str, Any]) -> tuple[Agent, SimulatedDriver]:
    agent = Agent(gw_file(raw))
    agent.start()
    assert agent.connected_once.wait(10), "agent did not connect"
    d = agent.driver("sim")
    assert isinstance(d, SimulatedDriver)
    return agent, d


@pytest.fixture
def private(tmp_path: Path, db_url: str) -> Iterator[Mosquitto]:
    register(db_url, GW)
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    yield broker
    broker.stop()


def stored(db_url: str, sensor: str = "counter-1") -> int:
    return count(db_url, "SELECT count(*) FROM readings WHERE sensor_id = %s", sensor)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_gateway_that_shed_while_offline_is_acknowledged_past_the_gap_in_the_same_epoch(
    private: Mosquitto, db_url: str, tmp_path: Path, topic_root: str
) -> None:
    url = f"mqtt://127.0.0.1:{private.port}"
    ingest = IngestProcess(db_url, url, topic_root, tmp_path).start()
    raw = gateway(
        tmp_path,
        topic_root,
        private.port,
        config={"telemetry_batch_max": 10, "telemetry_batch_ms": 50, "heartbeat_s": 3600},
        outbox={"path": str(tmp_path / "outbox.sqlite3"), "ack": "platform", "max_messages": 100},
    )
    agent = None
    try:
        ingest.wait_healthy()
        agent, sim = start_agent(raw)
        epoch = agent.outbox.epoch
        private.stop()  # the broker away: the outbox fills past its bound and sheds
        sim.feed_many(counter(range(1500)))
        wait_for(lambda: agent is not None and agent.outbox.shed_messages > 0, 30, "telemetry shed")
        wait_for(lambda: agent is not None and agent.outbox.n_pending == 0, 10, "everything sealed")
        kept = agent.outbox.n_messages
        private.start()
        sim.feed(Sample("counter-2", "count", 1.0))  # the next message sealed carries the new low
        # what the agent resends at once after the restart may reach no ingest worker (the
        # restarted broker keeps ingest's session, not its shared subscription): its second resend,
        # ack_timeout_after_connect_s (5 s) later, delivers it (before that, ack_timeout_s: 30 s)
        wait_for(lambda: agent is not None and agent.outbox.n_messages == 0, 60, "the outbox emptied by acks")
        assert agent.outbox.epoch == epoch, "no new epoch needed past a shed gap"
        top = count(db_url, "SELECT seq FROM ingest_acks WHERE epoch = %s", epoch)
        assert top == agent.outbox.next_seq - 1
        n = count(db_url, "SELECT count(*) FROM ingested_messages WHERE epoch = %s", epoch)
        assert n < top + 1, "a gap below the watermark: the shed seqs were never stored"
        assert stored(db_url) >= (kept - 1) * 10  # what was kept arrived (the heartbeat shares one)
        assert stored(db_url, "counter-2") == 1
    finally:
        if agent is not None:
            agent.stop()
        ingest.stop()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_wiped_gateway_ignores_its_old_epochs_retained_ack_until_the_new_epoch_is_stored(
    private: Mosquitto, db_url: str, tmp_path: Path, topic_root: str
) -> None:
    url = f"mqtt://127.0.0.1:{private.port}"
    ingest = IngestProcess(db_url, url, topic_root, tmp_path).start()
    raw = gateway(
        tmp_path,
        topic_root,
        private.port,
        config={"telemetry_batch_max": 10, "telemetry_batch_ms": 50, "heartbeat_s": 3600},
        outbox={"path": str(tmp_path / "outbox.sqlite3"), "ack": "platform", "ack_timeout_s": 5.0},
    )
    agent = None
    try:
        ingest.wait_healthy()
        agent, sim = start_agent(raw)
        old = agent.outbox.epoch
        sim.feed_many(counter(range(300)))
        wait_for(lambda: stored(db_url) == 300, 30, "the old epoch stored")
        wait_for(lambda: agent is not None and agent.outbox.n_messages == 0, 20, "and acknowledged")
        old_top = count(db_url, "SELECT seq FROM ingest_acks WHERE epoch = %s", old)
        assert old_top >= 30
        agent.stop()
        assert ingest.stop() == 0  # nobody acknowledges the new epoch yet
        for p in tmp_path.glob("outbox.sqlite3*"):
            p.unlink()  # wiped: a new outbox, a new epoch from seq 0, below the old ack's seq
        agent, sim = start_agent(raw)
        assert agent.outbox.epoch != old and agent.outbox.next_seq < old_top
        sim.feed_many(counter(range(300, 400)))
        wait_for(
            lambda: agent is not None and agent.sending.other_epoch_acks >= 1, 10, "the old retained ack seen"
        )
        wait_for(
            lambda: agent is not None and agent.outbox.n_pending == 0 and not agent.sending.inflight,
            10,
            "sent",
        )
        assert agent.sending.platform_seq == -1 and agent.outbox.n_messages >= 10, (
            "the old epoch's ack deleted nothing"
        )
        ingest = IngestProcess(db_url, url, topic_root, tmp_path).start()
        ingest.wait_healthy()
        wait_for(lambda: stored(db_url) == 400, 40, "the new epoch stored")
        wait_for(lambda: agent is not None and agent.outbox.n_messages == 0, 20, "and acknowledged")
        new_top = count(db_url, "SELECT seq FROM ingest_acks WHERE epoch = %s", agent.outbox.epoch)
        assert new_top == agent.outbox.next_seq - 1
        assert (
            count(db_url, "SELECT count(DISTINCT value) FROM readings WHERE sensor_id = 'counter-1'") == 400
        )
    finally:
        if agent is not None:
            agent.stop()
        ingest.stop()


def test_sealed_messages_carry_the_outbox_low_water_mark(tmp_path: Path) -> None:
    """What the agent seals carries ``low``: the lowest seq its outbox still holds of the epoch."""
    from eldercare.edge.outbox import Outbox

    ob = Outbox(tmp_path / "o.sqlite3")
    ob.add_readings([(now_ms(), "s", "m", 1.0)] * 3)
    (s0, _), (s1, _), (s2, _) = ob.seal_batches(1, now_ms())
    lows = [json.loads(m.payload)["low"] for m in ob.next_batch([], 10)]
    assert lows == [s0, s0, s0]
    ob.ack([s0])  # deleted (a broker's PUBACK): the next message's low passes it
    seq = ob.add_event({"t": now_ms(), "sensor": "sos-1", "kind": "sos"}, now_ms())
    assert json.loads(ob.next_batch([], 10)[0].payload)["low"] == s1
    held = ob.reserve_seq()  # an event sent from memory, not stored: it holds the low
    ob.ack([s1, s2, seq])
    assert ob.low_water(held + 1) == held
    ob.release(held)
    assert ob.low_water(held + 1) == held + 1
    ob.close()
