"""The batch transaction against a real PostgreSQL: dedup, registry checks, events, status, partitions."""

from __future__ import annotations

import json
import time

import msgspec
import psycopg
import pytest
from ingest_support import ROOT, batch_of, count, event, now_ms, register, status, telemetry

from eldercare import protocol
from eldercare.ingest.batch import Accepted, Batch, Inbound, Registry, Validator
from eldercare.ingest.errors import StoreUnavailable
from eldercare.ingest.store import Store


@pytest.fixture(params=[False, True], ids=["acks-in-commit", "acks-after-commit"])
def store(db_url: str, request: pytest.FixtureRequest) -> Store:
    """Both ways a worker's stores work: telemetry (watermark inside the commit), events (after)."""
    register(db_url, {"gw-1": "home-1", "gw-2": "home-2"})
    s = Store(db_url, acks_after_commit=request.param)
    yield s
    s.close()


def test_messages_are_stored_once_however_often_they_come(store: Store, db_url: str) -> None:
    reg = Registry(store.load_registry())
    msgs = [("home-1/gw-1/telemetry", telemetry(seq, n=20)) for seq in range(50)]
    first = store.write(batch_of(reg, *msgs), reg)
    assert (first.messages, first.readings, first.duplicates) == (50, 1000, 0)
    # Redelivery of the whole batch plus an in-batch duplicate of a new message.
    again = store.write(batch_of(reg, *msgs, ("home-1/gw-1/telemetry", telemetry(50)), msgs[0]), reg)
    assert (again.messages, again.readings, again.duplicates) == (1, 10, 51)
    assert count(db_url, "SELECT count(*) FROM readings") == 1010
    assert count(db_url, "SELECT count(*) FROM ingested_messages") == 51
    exact = "SELECT count(*) FROM readings WHERE gateway_id = 'gw-1' AND sensor_id = 'pir-1' AND value = 7003"
    assert count(db_url, exact) == 1


def test_a_new_epoch_is_not_a_duplicate(store: Store, db_url: str) -> None:
    reg = Registry(store.load_registry())
    store.write(batch_of(reg, ("home-1/gw-1/telemetry", telemetry(1))), reg)
    r = store.write(batch_of(reg, ("home-1/gw-1/telemetry", telemetry(1, epoch="replaced-gw-epoch"))), reg)
    assert r.messages == 1
    assert count(db_url, "SELECT count(*) FROM readings") == 20


def test_unknown_gateway_is_rechecked_in_the_database_before_dead_lettering(
    store: Store, db_url: str
) -> None:
    reg = Registry(store.load_registry())
    stranger = telemetry(1)
    r = store.write(
        batch_of(reg, ("home-3/gw-3/telemetry", stranger), ("home-2/gw-1/telemetry", telemetry(2))), reg
    )
    assert r.messages == 0
    assert sorted(d.reason for d in r.dead) == [
        "topic.gateway: unknown gateway 'gw-3'",
        "topic.site: gateway 'gw-1' is registered to site 'home-1', not 'home-2'",
    ]
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT topic, site_id, gateway_id, payload FROM dead_letters ORDER BY topic"
        ).fetchall()
    assert rows[1][:3] == (f"{ROOT}/home-3/gw-3/telemetry", "home-3", "gw-3")
    assert bytes(rows[1][3]) == stranger
    # The platform registers gw-3; the stale cache does not matter, the database is asked.
    register(db_url, {"gw-3": "home-3"})
    r = store.write(batch_of(reg, ("home-3/gw-3/telemetry", telemetry(1))), reg)
    assert (r.messages, r.dead) == (1, [])
    assert reg.sites["gw-3"] == "home-3"


def test_event_becomes_alert_work_and_a_notification(store: Store, db_url: str) -> None:
    reg = Registry(store.load_registry())
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute("LISTEN alert_work")
        r = store.write(
            batch_of(reg, ("home-1/gw-1/event", event(5, confidence=0.9, evidence={"peak_g": 3.1}))), reg
        )
        assert r.events == 1
        notes = list(listener.notifies(timeout=5, stop_after=1))
    with psycopg.connect(db_url) as conn:
        work = conn.execute("SELECT id, kind, gateway_id, site_id, payload FROM alert_work").fetchall()
        ev = conn.execute("SELECT kind, confidence, evidence, seq FROM events").fetchall()
    assert [n.payload for n in notes] == [str(work[0][0])]
    assert work[0][1:4] == ("event", "gw-1", "home-1")
    assert work[0][4]["kind"] == "fall" and work[0][4]["evidence"] == {"peak_g": 3.1}
    assert ev == [("fall", pytest.approx(0.9), {"peak_g": 3.1}, 5)]
    # Redelivered: no second event, no second piece of work.
    store.write(batch_of(reg, ("home-1/gw-1/event", event(5))), reg)
    assert count(db_url, "SELECT count(*) FROM alert_work") == 1


def test_status_updates_the_registry_and_keeps_the_newest(store: Store, db_url: str) -> None:
    reg = Registry(store.load_registry())
    store.write(batch_of(reg, ("home-1/gw-1/status", status("online", version="1.2.0"))), reg)
    time.sleep(0.01)
    will = msgspec.json.encode({"v": 1, "t": now_ms() - 3_600_000, "state": "offline"})
    store.write(batch_of(reg, ("home-1/gw-1/status", will)), reg)
    with psycopg.connect(db_url) as conn:
        gw = conn.execute("SELECT state, version, state_at FROM gateways WHERE id = 'gw-1'").fetchone()
        history = conn.execute("SELECT state FROM gateway_status ORDER BY ts").fetchall()
    assert gw is not None and gw[:2] == ("offline", "1.2.0")
    assert history == [("online",), ("offline",)]
    # A stale online status (one that arrived before the will, written after it: two workers) does
    # not flip the state back. Statuses are ordered by arrival, never by the gateway's t.
    old = msgspec.json.encode({"v": 1, "t": now_ms() + 60_000, "state": "online"})
    late = Batch()
    late.add(Validator(ROOT, reg).check(Inbound(f"{ROOT}/home-1/gw-1/status", old, received=time.time() - 1)))
    store.write(late, reg)
    assert count(db_url, "SELECT count(*) FROM gateways WHERE id = 'gw-1' AND state = 'offline'") == 1
    # The same Last Will again (one agent process builds it once) is a new disconnect, not a duplicate.
    time.sleep(0.01)
    again = store.write(batch_of(reg, ("home-1/gw-1/status", will)), reg)
    assert (again.statuses, again.duplicates) == (1, 0)


def test_statuses_read_in_the_same_millisecond_are_each_stored(store: Store, db_url: str) -> None:
    """A backlog delivered to a restarted ingest: online, the Will, online again (another t), read
    in one millisecond. Each is a status of its own, none a "conflicting duplicate" (found by the
    outside gateway check, round 3: the second online was dead-lettered as reusing a message id)."""
    reg = Registry(store.load_registry())
    v = Validator(ROOT, reg)
    at = time.time()
    b = Batch()
    for payload in (status("online"), status("offline"), status("online", version="1.0.1")):
        b.add(v.check(Inbound(f"{ROOT}/home-1/gw-1/status", payload, received=at)))
    r = store.write(b, reg)
    assert (r.statuses, r.duplicates, r.dead) == (3, 0, [])
    assert count(db_url, "SELECT count(*) FROM gateway_status WHERE gateway_id = 'gw-1'") == 3
    assert count(db_url, "SELECT count(*) FROM gateways WHERE id = 'gw-1' AND version = '1.0.1'") == 1


def test_a_confidence_below_the_smallest_real_is_stored_as_zero(store: Store, db_url: str) -> None:
    """0 .. 1 is the protocol's range; 1e-50 is in it and below what the ``real`` column holds
    (found by the outside gateway check, round 3: dead-lettered as 'value out of range: underflow')."""
    reg = Registry(store.load_registry())
    tiny = [("home-1/gw-1/event", event(seq, kind="fall_cancelled", confidence=c))
            for seq, c in ((1, 1e-50), (2, 5e-324), (3, 1e-40), (4, 0.93))]  # fmt: skip
    r = store.write(batch_of(reg, *tiny), reg)
    assert (r.events, r.dead) == (4, [])
    with psycopg.connect(db_url) as conn:
        got = [c for (c,) in conn.execute("SELECT confidence FROM events ORDER BY seq")]
    assert got == [0.0, 0.0, pytest.approx(1e-40, rel=1e-3), pytest.approx(0.93)]


def test_missing_partition_is_created_on_demand(store: Store, db_url: str) -> None:
    reg = Registry(store.load_registry())
    twenty_days_ago = now_ms() - 20 * 86_400_000
    r = store.write(batch_of(reg, ("home-1/gw-1/telemetry", telemetry(1, t0=twenty_days_ago))), reg)
    assert r.readings == 10
    assert count(db_url, "SELECT count(*) FROM readings WHERE ts < now() - interval '19 days'") == 10


def test_missing_partition_for_an_event_is_created_on_demand(store: Store, db_url: str) -> None:
    """Events take their own path (no COPY, and their own connection in the worker): a missing
    partition there is created and the batch written again too."""
    reg = Registry(store.load_registry())
    body = json.loads(event(3))
    body["t"] = now_ms() - 20 * 86_400_000
    r = store.write(batch_of(reg, ("home-1/gw-1/event", json.dumps(body).encode())), reg)
    assert r.events == 1
    assert count(db_url, "SELECT count(*) FROM events WHERE ts < now() - interval '19 days'") == 1
    assert count(db_url, "SELECT count(*) FROM alert_work") == 1


def test_data_the_database_refuses_is_dead_lettered_alone(
    store: Store, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the validator names a NUL itself now; let it through to reach the database's refusal
    monkeypatch.setattr(protocol, "_check_nul", lambda data: None)
    reg = Registry(store.load_registry())
    poison = event(9, evidence={"note": "\u0000"})  # valid JSON, but jsonb cannot hold NUL
    b = batch_of(reg, ("home-1/gw-1/telemetry", telemetry(1)), ("home-1/gw-1/event", poison))
    assert all(isinstance(a, Accepted) for a in b.accepted)
    r = store.write(b, reg)
    assert (r.messages, r.readings) == (1, 10)
    assert [d.reason.split(":")[0] for d in r.dead] == ["database refused the message"]
    assert count(db_url, "SELECT count(*) FROM dead_letters WHERE reason LIKE 'database refused%'") == 1
    assert count(db_url, "SELECT count(*) FROM events") == 0


def test_unreachable_database_raises_store_unavailable() -> None:
    s = Store("postgresql://postgres@127.0.0.1:9/none")
    with pytest.raises(StoreUnavailable):
        s.load_registry()


def test_status_records_the_config_the_gateway_runs_and_why_it_refused_one(store: Store, db_url: str) -> None:
    reg = Registry(store.load_registry())

    def gateway() -> tuple[object, ...] | None:
        with psycopg.connect(db_url) as conn:
            return conn.execute(
                "SELECT config_applied, config_error FROM gateways WHERE id = 'gw-1'"
            ).fetchone()

    store.write(batch_of(reg, ("home-1/gw-1/status", status(config_revision=3))), reg)
    assert gateway() == (3, None)
    refused = status(config_revision=3, config_error="revision 4: sensors.pir-1.room: expected a string")
    store.write(batch_of(reg, ("home-1/gw-1/status", refused)), reg)
    assert gateway() == (3, "revision 4: sensors.pir-1.room: expected a string")
    # A Last Will says nothing about the config: what the gateway last said stands.
    store.write(batch_of(reg, ("home-1/gw-1/status", status("offline"))), reg)
    assert gateway() == (3, "revision 4: sensors.pir-1.room: expected a string")
    store.write(batch_of(reg, ("home-1/gw-1/status", status(config_revision=5))), reg)
    assert gateway() == (5, None)


def test_a_config_revision_beyond_32_bits_is_refused_by_the_protocol_not_the_database(
    store: Store, db_url: str
) -> None:
    """Revisions are 32-bit, as the platform stores them (found by the outside gateway check, round
    3: a status naming 2^31 passed the protocol, the database refused it, 'integer out of range')."""
    reg = Registry(store.load_registry())
    top = protocol.REVISION_MAX
    r = store.write(batch_of(reg, ("home-1/gw-1/status", status(config_revision=top))), reg)
    assert (r.statuses, r.dead) == (1, [])
    r = store.write(batch_of(reg, ("home-1/gw-1/status", status(config_revision=top + 1))), reg)
    assert r.statuses == 0
    assert [d.reason for d in r.dead] == [f"config_revision: Expected `int` <= {top}"]
    assert count(db_url, f"SELECT count(*) FROM gateways WHERE id = 'gw-1' AND config_applied = {top}") == 1


def test_a_simulated_homes_readings_days_ahead_are_stored_a_real_homes_refused(
    store: Store, db_url: str
) -> None:
    """A simulated home's gateway runs the simulator's clock (a 60x run is a day ahead after 24
    minutes): its readings are stored however far ahead; a real home's are dead-lettered."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE sites SET simulated = true WHERE id = 'home-2'")
    reg = Registry(store.load_registry(), store.load_simulated_sites())
    assert reg.simulated == {"home-2"}
    ahead = now_ms() + 3 * 86_400_000
    r = store.write(
        batch_of(reg, ("home-2/gw-2/telemetry", telemetry(1, t0=ahead)),
                 ("home-1/gw-1/telemetry", telemetry(1, t0=ahead))),
        reg,
    )  # fmt: skip
    assert (r.messages, r.readings) == (1, 10)
    assert count(db_url, "SELECT count(*) FROM readings WHERE gateway_id = 'gw-2'") == 10
    assert count(db_url, "SELECT count(*) FROM readings WHERE gateway_id = 'gw-1'") == 0
    ((reason,),) = psycopg.connect(db_url).execute("SELECT reason FROM dead_letters").fetchall()
    assert "ahead of ingest's clock" in reason
