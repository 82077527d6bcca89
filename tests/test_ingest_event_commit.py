"""A batch of events alone (the event thread's: a fall, an SOS) in one statement, its own transaction.

The statement checks the gateway and a named resident in its own snapshot, so what the caches do
not know yet (a resident who moved home, a gateway disabled a moment ago) still decides; and the
rare paths (a copy another worker committed while this one waited, a conflicting copy, data the
database refuses) end as they do for any other batch (docs/performance.md, ingest, seventh pass).
"""

from __future__ import annotations

import threading

import psycopg
import pytest
from ingest_support import batch_of, count, dead_reasons, event, register

from eldercare import protocol
from eldercare.ingest.batch import Accepted, Registry
from eldercare.ingest.store import Store, WriteResult


@pytest.fixture
def store(db_url: str) -> Store:
    register(db_url, {"gw-1": "home-1", "gw-2": "home-2"})
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO residents (id, name, home_site_id) VALUES ('res-1', 'One', 'home-1')")
    s = Store(db_url, acks_after_commit=True)  # as the worker's event store: watermarks after
    yield s
    s.close()


def test_a_resident_who_moved_home_is_named_by_their_new_homes_gateway_only(
    store: Store, db_url: str
) -> None:
    reg = Registry(store.load_registry())
    r = store.write(batch_of(reg, ("home-1/gw-1/event", event(1, kind="sos", resident="res-1"))), reg)
    assert (r.events, r.dead) == (1, [])
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute("UPDATE residents SET home_site_id = 'home-2' WHERE id = 'res-1'")
    old = store.write(batch_of(reg, ("home-1/gw-1/event", event(2, kind="sos", resident="res-1"))), reg)
    new = store.write(batch_of(reg, ("home-2/gw-2/event", event(1, kind="sos", resident="res-1"))), reg)
    assert (old.events, new.events, new.dead) == (0, 1, [])
    assert [d.reason for d in old.dead] == [
        "resident: 'res-1' lives at site 'home-2'; a gateway of site 'home-1' may only name residents of "
        "its own site (their home, or a station they attend)"
    ]
    assert dead_reasons(db_url) == [old.dead[0].reason]
    # the refused id is passed by the watermark: the gateway is not left waiting for it
    assert old.acks == {("home-1", "gw-1", "epoch-test-0001"): 2}
    with psycopg.connect(db_url) as conn:
        kept = conn.execute("SELECT gateway_id, seq FROM events ORDER BY gateway_id").fetchall()
    assert kept == [("gw-1", 1), ("gw-2", 1)]
    assert count(db_url, "SELECT count(*) FROM ingested_messages") == 2
    assert count(db_url, "SELECT count(*) FROM alert_work") == 2


def test_an_event_naming_another_sites_resident_lists_no_sensor(store: Store, db_url: str) -> None:
    reg = Registry(store.load_registry())
    r = store.write(
        batch_of(
            reg,
            ("home-2/gw-2/event", event(1, kind="sos", resident="res-1", sensor="sos-attic")),
            ("home-1/gw-1/event", event(1, kind="sos", sensor="sos-hall")),
        ),
        reg,
    )
    assert (r.events, len(r.dead)) == (1, 1)
    with psycopg.connect(db_url) as conn:
        listed = conn.execute("SELECT gateway_id, sensor_id FROM unknown_sensors").fetchall()
    assert listed == [("gw-1", "sos-hall")]


def test_a_gateway_disabled_before_its_notification_arrived_is_refused(store: Store, db_url: str) -> None:
    reg = Registry(store.load_registry())
    store.write(batch_of(reg, ("home-1/gw-1/event", event(1, kind="sos"))), reg)
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute("UPDATE gateways SET disabled_at = now() WHERE id = 'gw-1'")
    # the store has not read from its connection since: neither the cache nor it knows
    assert reg.sites["gw-1"] == "home-1" and not store._changed
    r = store.write(batch_of(reg, ("home-1/gw-1/event", event(2, kind="sos"))), reg)
    assert (r.events, [d.reason for d in r.dead]) == (
        0,
        ["topic.gateway: gateway 'gw-1' is disabled; its messages are refused"],
    )
    assert count(db_url, "SELECT count(*) FROM events") == 1
    assert count(db_url, "SELECT count(*) FROM ingested_messages") == 1


def test_a_disabled_gateways_event_beside_a_good_one_leaves_the_good_one_stored_once(
    store: Store, db_url: str
) -> None:
    """The statement commits what passed; the refused gateway's event is judged again after it."""
    reg = Registry(store.load_registry())
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute("UPDATE gateways SET disabled_at = now() WHERE id = 'gw-1'")
    assert reg.sites["gw-1"] == "home-1" and not store._changed
    sos = event(1, kind="sos")
    both = batch_of(reg, ("home-2/gw-2/event", sos), ("home-1/gw-1/event", event(1, kind="fall")))
    r = store.write(both, reg)
    assert (r.events, r.messages, r.duplicates) == (1, 1, 0)
    assert [d.reason for d in r.dead] == [
        "topic.gateway: gateway 'gw-1' is disabled; its messages are refused"
    ]
    assert r.acks.get(("home-2", "gw-2", "epoch-test-0001")) == 1  # the good one is acknowledged
    with psycopg.connect(db_url) as conn:
        kept = conn.execute("SELECT gateway_id, kind FROM events").fetchall()
    assert kept == [("gw-2", "sos")]
    assert count(db_url, "SELECT count(*) FROM ingested_messages") == 1
    assert count(db_url, "SELECT count(*) FROM alert_work") == 1
    again = store.write(batch_of(reg, ("home-2/gw-2/event", sos)), reg)  # redelivered
    assert (again.events, again.duplicates, again.dead) == (0, 1, [])


def test_a_conflicting_copy_of_an_event_is_dead_lettered_once(store: Store, db_url: str) -> None:
    reg = Registry(store.load_registry())
    store.write(batch_of(reg, ("home-1/gw-1/event", event(9, kind="sos"))), reg)
    other = event(9, kind="fall")
    for _ in range(2):  # resent: one dead letter, not two
        r = store.write(batch_of(reg, ("home-1/gw-1/event", other)), reg)
        assert (r.events, r.duplicates) == (0, 0)
        assert [d.reason.split(":")[0:2] for d in r.dead] == [["seq", " conflicting duplicate"]]
    assert count(db_url, "SELECT count(*) FROM dead_letters") == 1
    assert count(db_url, "SELECT count(*) FROM alert_work") == 1


@pytest.mark.parametrize("same", [True, False], ids=["identical", "conflicting"])
def test_a_copy_committed_by_another_worker_while_this_one_waited(
    store: Store, db_url: str, same: bool
) -> None:
    """The other worker's insert is not in this statement's snapshot: its digest is read again."""
    reg = Registry(store.load_registry())
    payload = event(4, kind="sos")
    ours = batch_of(reg, ("home-1/gw-1/event", payload if same else event(4, kind="fall")))
    theirs = batch_of(reg, ("home-1/gw-1/event", payload)).accepted[0]
    assert isinstance(theirs, Accepted)
    with psycopg.connect(db_url) as other:  # the other worker's transaction, not yet committed
        other.execute(
            "INSERT INTO ingested_messages (gateway_id, epoch, seq, digest) VALUES ('gw-1', %s, 4, %s)",
            (theirs.epoch, theirs.digest),
        )
        out: list[WriteResult] = []
        writer = threading.Thread(target=lambda: out.append(store.write(ours, reg)))
        writer.start()

        def waiting() -> bool:
            lock = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            return count(db_url, lock + " AND wait_event_type = 'Lock'") > 0

        while not waiting():
            assert writer.is_alive()
            writer.join(0.05)
        other.commit()
        writer.join(20)
    (r,) = out
    assert r.events == 0
    if same:
        assert (r.duplicates, r.dead) == (1, [])
        assert count(db_url, "SELECT count(*) FROM dead_letters") == 0
    else:
        assert r.duplicates == 0
        assert [d.reason.split(":")[0:2] for d in r.dead] == [["seq", " conflicting duplicate"]]
        assert count(db_url, "SELECT count(*) FROM dead_letters") == 1
    assert count(db_url, "SELECT count(*) FROM events") == 0


def test_a_lone_event_the_database_refuses_is_dead_lettered(
    store: Store, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the validator names a NUL itself now; let it through to reach the database's refusal
    monkeypatch.setattr(protocol, "_check_nul", lambda data: None)
    reg = Registry(store.load_registry())
    r = store.write(batch_of(reg, ("home-1/gw-1/event", event(1, evidence={"note": "\u0000"}))), reg)
    assert [d.reason.split(":")[0] for d in r.dead] == ["database refused the message"]
    assert count(db_url, "SELECT count(*) FROM events") == 0
    # the connection is left usable, outside any transaction
    r = store.write(batch_of(reg, ("home-1/gw-1/event", event(2, kind="sos"))), reg)
    assert (r.events, r.dead) == (1, [])
