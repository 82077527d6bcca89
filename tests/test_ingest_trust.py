"""Ingest's trust boundaries and nothing vanishing, against a real PostgreSQL (issue 18).

An event may only name a resident of its gateway's site; a deleted or disabled gateway is refused
from the next batch on (``NOTIFY gateway_registry``, not the cache TTL); a duplicate message id with
other contents is a dead letter while an identical redelivery is silent; a retained dead letter is
kept once however often the broker replays it; unregistered sensors are stored and listed.
"""

from __future__ import annotations

import msgspec
import psycopg
import pytest
from ingest_support import ROOT, batch_of, count, dead_reasons, event, register, status, telemetry

from eldercare.ingest.batch import Batch, Inbound, Registry, Validator
from eldercare.ingest.store import Store


@pytest.fixture
def store(db_url: str) -> Store:
    register(db_url, {"gw-1": "home-1", "gw-2": "home-2", "gw-st": "station-1"})
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE sites SET kind = 'station' WHERE id = 'station-1'")
        conn.execute(
            "INSERT INTO residents (id, name, home_site_id, station_site_id) VALUES"
            " ('res-1', 'One', 'home-1', 'station-1'), ('res-2', 'Two', 'home-2', NULL)"
        )
    s = Store(db_url)
    yield s
    s.close()


def test_an_event_may_only_name_a_resident_of_its_gateways_site(store: Store, db_url: str) -> None:
    reg = Registry(store.load_registry())
    r = store.write(
        batch_of(
            reg,
            ("home-1/gw-1/event", event(1, kind="sos", resident="res-1")),  # at home
            ("station-1/gw-st/event", event(1, kind="sos", resident="res-1")),  # at the station they attend
            ("home-1/gw-1/event", event(2, kind="sos")),  # no resident named
            ("home-2/gw-2/event", event(1, kind="sos", resident="res-1")),  # another home's resident
            ("station-1/gw-st/event", event(2, kind="sos", resident="res-2")),  # not attending that station
            ("home-1/gw-1/event", event(3, kind="sos", resident="res-nobody")),
        ),
        reg,
    )
    assert (r.events, len(r.dead)) == (3, 3)
    assert count(db_url, "SELECT count(*) FROM alert_work") == 3
    reasons = dead_reasons(db_url)
    assert reasons[0] == (
        "resident: 'res-1' lives at site 'home-1' and attends station 'station-1'; a gateway of site "
        "'home-2' may only name residents of its own site (their home, or a station they attend)"
    )
    assert reasons[1].startswith("resident: 'res-2' lives at site 'home-2'; a gateway of site 'station-1'")
    assert reasons[2] == "resident: 'res-nobody' is not a registered resident"
    with psycopg.connect(db_url) as conn:
        kept = conn.execute("SELECT gateway_id, resident_id FROM events ORDER BY gateway_id, seq").fetchall()
    assert kept == [("gw-1", "res-1"), ("gw-1", None), ("gw-st", "res-1")]


def test_a_conflicting_duplicate_is_dead_lettered_once_and_a_redelivery_is_silent(
    store: Store, db_url: str
) -> None:
    reg = Registry(store.load_registry())
    original = telemetry(7, n=3)
    store.write(batch_of(reg, ("home-1/gw-1/telemetry", original)), reg)
    same = msgspec.json.format(original, indent=1)  # the same contents, formatted otherwise
    r = store.write(batch_of(reg, ("home-1/gw-1/telemetry", same)), reg)
    assert (r.messages, r.duplicates, r.dead) == (0, 1, [])
    other = telemetry(7, n=4)  # the same (gateway, epoch, seq), other readings
    for _ in range(2):  # resent: one dead letter, not two
        r = store.write(batch_of(reg, ("home-1/gw-1/telemetry", other)), reg)
        assert (r.messages, r.duplicates) == (0, 0)
        assert [d.reason.split(":")[0:2] for d in r.dead] == [["seq", " conflicting duplicate"]]
    assert count(db_url, "SELECT count(*) FROM readings") == 3
    assert dead_reasons(db_url) == [
        "seq: conflicting duplicate: (gateway 'gw-1', epoch 'epoch-test-0001', seq 7) was stored before "
        "with different contents; a message id is used once, this copy is not stored"
    ]
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT payload FROM dead_letters").fetchone()
    assert row is not None and bytes(row[0]) == other
    # an in-batch pair with different contents: the first is stored, the second is not silently lost
    r = store.write(
        batch_of(reg, ("home-1/gw-1/event", event(9, kind="sos")), ("home-1/gw-1/event", event(9))), reg
    )
    assert (r.events, r.duplicates, len(r.dead)) == (1, 0, 1)
    assert r.dead[0].reason.startswith(
        "seq: conflicting duplicate: (gateway 'gw-1', epoch 'epoch-test-0001', seq 9)"
    )
    # and an in-batch identical pair is a plain duplicate
    twice = event(10, kind="sos")
    r = store.write(batch_of(reg, ("home-1/gw-1/event", twice), ("home-1/gw-1/event", twice)), reg)
    assert (r.events, r.duplicates, r.dead) == (1, 1, [])


def test_a_retained_dead_letter_is_kept_once_across_restarts(store: Store, db_url: str) -> None:
    junk = ("home-1/gw-1/status", b'{"v": 1, "state": "meh"}')
    for _ in range(3):  # every ingest restart subscribes again and the broker replays it
        fresh = Store(db_url)
        reg = Registry(fresh.load_registry())
        r = fresh.write(batch_of(reg, junk, retain=True), reg)
        assert len(r.dead) == 1
        fresh.close()
    assert count(db_url, "SELECT count(*) FROM dead_letters") == 1
    # A retained message from a gateway that is not registered: once too.
    stranger = ("home-9/gw-9/status", status())
    for _ in range(2):
        reg = Registry(store.load_registry())
        store.write(batch_of(reg, stranger, retain=True), reg)
    assert count(db_url, "SELECT count(*) FROM dead_letters WHERE gateway_id = 'gw-9'") == 1


def test_a_deleted_or_disabled_gateway_is_refused_from_the_next_batch(store: Store, db_url: str) -> None:
    reg = Registry(store.load_registry())
    ok = store.write(
        batch_of(reg, ("home-1/gw-1/telemetry", telemetry(1)), ("home-2/gw-2/telemetry", telemetry(1))), reg
    )
    assert ok.messages == 2
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute("UPDATE gateways SET disabled_at = now() WHERE id = 'gw-1'")
        admin.execute("DELETE FROM gateways WHERE id = 'gw-2'")
    # the cache still has both (its TTL has not run out); the batch was validated against it
    assert reg.sites == {"gw-1": "home-1", "gw-2": "home-2", "gw-st": "station-1"}
    b = batch_of(reg, ("home-1/gw-1/telemetry", telemetry(2)), ("home-2/gw-2/telemetry", telemetry(2)))
    r = store.write(b, reg)
    assert r.messages == 0
    assert sorted(d.reason for d in r.dead) == [
        "topic.gateway: gateway 'gw-1' is disabled; its messages are refused",
        "topic.gateway: unknown gateway 'gw-2'",
    ]
    assert "gw-1" not in reg.sites and "gw-2" not in reg.sites
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute("UPDATE gateways SET disabled_at = NULL WHERE id = 'gw-1'")
    r = store.write(batch_of(reg, ("home-1/gw-1/telemetry", telemetry(3))), reg)
    assert (r.messages, r.dead) == (1, [])


def test_a_registry_change_missed_while_disconnected_is_caught_on_reconnect(
    store: Store, db_url: str
) -> None:
    reg = Registry(store.load_registry())
    store.close()  # the connection (and its LISTEN) is gone while the gateway is deleted
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute("DELETE FROM gateways WHERE id = 'gw-2'")
    r = store.write(batch_of(reg, ("home-2/gw-2/telemetry", telemetry(1))), reg)
    assert [d.reason for d in r.dead] == ["topic.gateway: unknown gateway 'gw-2'"]


def test_a_gateway_nobody_acknowledges_has_one_dead_letter_however_often_it_resends(
    store: Store, db_url: str
) -> None:
    """An unknown (or disabled, or moved) gateway gets no ack, so its outbox re-sends the same
    bytes at every reconnect: each copy is refused, and the dead-letter table keeps one."""
    reg = Registry(store.load_registry())
    resent = ("home-9/gw-9/telemetry", telemetry(1))
    for _ in range(3):
        r = store.write(batch_of(reg, resent, resent), reg)
        assert [d.reason for d in r.dead] == ["topic.gateway: unknown gateway 'gw-9'"] * 2
    other = store.write(batch_of(reg, ("home-9/gw-9/telemetry", telemetry(2))), reg)
    assert len(other.dead) == 1
    assert count(db_url, "SELECT count(*) FROM dead_letters WHERE gateway_id = 'gw-9'") == 2


def test_unregistered_sensors_are_stored_and_listed(store: Store, db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute("INSERT INTO sensors (gateway_id, id, kind) VALUES ('gw-1', 'pir-1', 'pir')")
    reg = Registry(store.load_registry())
    v = Validator(ROOT, reg)
    b = Batch()
    for topic, payload in [
        ("home-1/gw-1/telemetry", telemetry(1, sensor="pir-1")),  # registered
        ("home-1/gw-1/telemetry", telemetry(2, sensor="pir-attic")),
        ("home-1/gw-1/telemetry", telemetry(3, sensor="gw-1")),  # the gateway's own heartbeat
        ("home-1/gw-1/event", event(4, kind="sos", sensor="sos-new")),
    ]:
        b.add(v.check(Inbound(f"{ROOT}/{topic}", payload)))
    r = store.write(b, reg)
    assert (r.readings, r.events) == (30, 1)
    with psycopg.connect(db_url) as conn:
        listed = conn.execute(
            "SELECT gateway_id, sensor_id FROM unknown_sensors ORDER BY sensor_id"
        ).fetchall()
    assert listed == [("gw-1", "pir-attic"), ("gw-1", "sos-new")]
