"""What an independent gateway, written from docs/protocol.md alone, found the platform doing
differently from the document (the outside protocol check, two rounds). Store tests against the
real PostgreSQL, as in test_ack_edges.py; the alert engine's work as ingest queued it, handled by
the real engine service on the same database.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import psycopg
import pytest
from ingest_support import count, now_ms, register
from psycopg.rows import TupleRow
from test_ack_edges import GW, ROOT, tele, write

from eldercare import protocol
from eldercare.ingest.batch import Batch, Inbound, Registry, Validator
from eldercare.ingest.store import Store
from eldercare.platform.engine import rules, service
from eldercare.platform.repo.connections import open_pool


def rows(db_url: str, query: str) -> list[TupleRow]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(query).fetchall()


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    register(db_url, GW)
    s = Store(db_url)
    yield s
    s.close()


@pytest.mark.parametrize(
    "spoil",
    [
        lambda b: b.replace(b'"value":2.0', b'"value":NaN'),  # Python's json.dumps by default
        lambda b: b.replace(b'"value":2.0', b'"value":-Infinity'),
        lambda b: b"\xef\xbb\xbf" + b,  # a byte-order mark
    ],
    ids=["NaN", "Infinity", "BOM"],
)
def test_a_numbered_message_that_is_not_quite_json_is_acknowledged_as_refused(
    store: Store, db_url: str, spoil: Callable[[bytes], bytes]
) -> None:
    """Section 9: the ack covers what was refused as a dead letter (re-sending cannot help). A
    message with a NaN was dead-lettered but left out of the watermark, so a gateway using acks
    kept it, re-sent it forever, and every later message's ``low`` held the watermark below it."""
    assert write(store, ("telemetry", tele(1, low=1)))[("home-1", "gw-1", "epoch-edge-0001")] == 1
    bad = spoil(tele(2, low=1))
    assert write(store, ("telemetry", bad), ("telemetry", tele(3, low=2))) == {
        ("home-1", "gw-1", "epoch-edge-0001"): 3
    }
    assert count(db_url, "SELECT count(*) FROM dead_letters WHERE reason LIKE '$: not valid JSON%%'") == 1


def fall(evidence: bytes, seq: int = 7) -> bytes:
    return (
        b'{"v":1,"epoch":"epoch-edge-0001","seq":%d,"t":%d,"sensor":"wearable-1","kind":"fall",'
        b'"evidence":%s}' % (seq, now_ms(), evidence)
    )


def test_an_event_resent_with_its_evidence_keys_in_another_order_is_a_redelivery(
    store: Store, db_url: str
) -> None:
    """Section 9: a later copy with the same contents is dropped silently, "the JSON formatting may
    differ". A JSON object is unordered; a gateway that re-serialises its outbox (a JSON column,
    a dict sorted on the way) changes the evidence's key order, and that copy was dead-lettered as
    a conflicting duplicate."""
    first = fall(b'{"checkin":{"window_s":30,"answered":false},"acc":{"t0":1,"hz":50.0}}')
    again = first.replace(
        b'{"checkin":{"window_s":30,"answered":false},"acc":{"t0":1,"hz":50.0}}',
        b'{"acc":{"hz":50.0,"t0":1},"checkin":{"answered":false,"window_s":30}}',
    )
    write(store, ("event", first))
    write(store, ("event", again))
    write(store, ("event", first), ("event", again))  # both in one batch too
    assert count(db_url, "SELECT count(*) FROM dead_letters") == 0
    assert count(db_url, "SELECT count(*) FROM events") == 1
    other = first.replace(b'"window_s":30', b'"window_s":60')  # different contents: still refused
    write(store, ("event", other))
    assert count(db_url, "SELECT count(*) FROM dead_letters WHERE reason LIKE 'seq: conflicting%%'") == 1


def test_an_event_stored_with_the_digest_of_earlier_versions_is_no_conflict_when_redelivered(
    store: Store, db_url: str
) -> None:
    """Earlier versions took the digest of the evidence as sent; their stored events stay
    comparable."""
    payload = fall(b'{"z":1,"a":2}', seq=8)
    write(store, ("event", payload))
    fields = msgspec.structs.asdict(protocol.decode("event", payload))
    del fields["low"]
    as_sent = msgspec.json.encode(fields)
    assert b'"evidence":{"z":1,"a":2}' in as_sent
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE ingested_messages SET digest = %s WHERE seq = 8",
            (zlib.crc32(as_sent) | len(as_sent) << 32,),
        )
    write(store, ("event", payload))
    assert count(db_url, "SELECT count(*) FROM dead_letters") == 0


def test_a_junk_retained_status_is_one_dead_letter_live_and_replayed(store: Store, db_url: str) -> None:
    """Section 12: a retained message that is dead-lettered is kept once, "not again every time
    the broker replays it to a restarting ingest". It arrives live first (no retain flag on a live
    delivery), then as the broker's replay: that made two."""
    junk = b'{"v":1,"t":1767225600000,"state":"online","junk":true}'
    topic = f"{ROOT}/home-1/gw-1/status"
    for retain in (False, True, True):
        reg = Registry(store.load_registry())
        b = Batch()
        b.add(Validator(ROOT, reg).check(Inbound(topic, junk, retain=retain)))
        store.write(b, reg)
    assert count(db_url, "SELECT count(*) FROM dead_letters") == 1


def test_a_nul_character_is_refused_naming_its_field(store: Store, db_url: str) -> None:
    """Section 12: a dead letter's reason names the field. A NUL in evidence was left to the
    database, whose refusal ("unsupported Unicode escape sequence ... CONTEXT: JSON data") names
    none; a literal backslash before "u0000" is no NUL and is stored."""
    event = fall(b'{"note":"a\\u0000b"}', seq=9)
    write(store, ("event", event))
    reasons = [r for (r,) in rows(db_url, "SELECT reason FROM dead_letters")]
    assert len(reasons) == 1 and reasons[0].startswith("evidence.note: a NUL character"), reasons
    status = b'{"v":1,"t":%d,"state":"online","sensors":{"s1":{"lqi\\u0000":1}}}' % now_ms()
    with pytest.raises(protocol.ProtocolError) as err:
        protocol.decode("status", status)
    assert err.value.field == 'sensors.s1["lqi\\u0000"]'
    write(store, ("event", fall(b'{"note":"a\\\\u0000b"}', seq=10)))
    assert count(db_url, "SELECT count(*) FROM events") == 1


def test_no_ack_below_seq_zero_is_published(store: Store) -> None:
    """The ack schema says ``seq >= 0``; an epoch whose first stored message said ``low`` 0 (the
    telemetry 0-2 still on the way) was acknowledged with seq -1, which a strict gateway refuses
    and an unsigned one reads as 2^64 - 1: everything stored, its outbox deleted."""
    key = ("home-1", "gw-1", "epoch-edge-0001")
    sos = b'{"v":1,"epoch":"epoch-edge-0001","seq":3,"t":%d,"sensor":"sos-1","kind":"sos","low":0}'
    assert write(store, ("event", sos % now_ms())) == {}
    assert write(store, *(("telemetry", tele(s, low=0)) for s in range(3)))[key] == 3
    for acked in write(store, ("telemetry", tele(4, low=0))).values():
        protocol.decode("ack", protocol.encode(protocol.Ack(v=1, epoch="epoch-edge-0001", seq=acked)))


def handle_alert_work(db_url: str) -> int:
    """The alert engine's work queue handled once, as a running engine would."""

    async def main() -> int:
        async with open_pool(db_url, min_size=1, max_size=2) as pool:
            return await service.process_work(pool)

    return asyncio.run(main())


def test_two_unassigned_sos_buttons_are_two_alerts_even_after_the_first_is_acknowledged(
    store: Store, db_url: str
) -> None:
    """Section 6: with no resident known, "the platform ... raises the alert for the site". It was
    one alert per site and kind: a second person pressing another button at a station (no resident
    of its own, buttons in rooms) only counted one more detection on the first alert, which a care
    worker had already acknowledged (on the way to the first room), so nobody heard of the second."""
    press = b'{"v":1,"epoch":"epoch-edge-0001","seq":%d,"t":%d,"sensor":"%s","kind":"sos"}'
    write(store, ("event", press % (1, now_ms(), b"sos-room-3")))
    assert handle_alert_work(db_url) == 1
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE alerts SET state = 'acknowledged', acknowledged_at = now()")
    write(store, ("event", press % (2, now_ms(), b"sos-room-7")))
    write(store, ("event", press % (3, now_ms(), b"sos-room-7")))  # the same button again joins
    assert handle_alert_work(db_url) == 2
    got = rows(db_url, "SELECT sensor_id, state, detections FROM alerts WHERE kind = 'sos' ORDER BY id")
    assert got == [("sos-room-3", "acknowledged", 1), ("sos-room-7", "open", 2)]


def status_alerts(sensors: dict[str, Any]) -> set[str]:
    decisions = rules.decide_status(
        {"site": "h", "gateway": "g", "t": 1, "state": "online", "sensors": sensors}
    )
    return {d.sensor_id or "" for d in decisions if isinstance(d, rules.Open)}


def test_a_sensor_lost_behind_itself_or_a_ring_of_bridges_still_alerts() -> None:
    """Section 7: a sensor ``"online": false`` opens ``device_offline``; one behind an offline
    bridge (``via``) is covered by the bridge's alert. A ``via`` naming the sensor itself, or two
    bridges naming each other, suppressed every alert: the sensors were lost and nobody was told."""
    off = {"online": False}
    assert status_alerts({"z1": off | {"via": "z1"}}) == {"z1"}
    assert status_alerts({"c1": off | {"via": "c2"}, "c2": off | {"via": "c1"}}) == {"c1", "c2"}
    chain = {"b1": off, "b2": off | {"via": "b1"}, "b3": off | {"via": "b2"}, "k": off | {"via": "gone"}}
    assert status_alerts(chain) == {"b1", "k"}  # one for the bridge; a bridge not listed: the sensor
    assert status_alerts({"b1": {"online": True}, "b2": off | {"via": "b1"}}) == {"b2"}


def test_a_gateway_told_to_beat_every_ten_minutes_is_not_reported_stalled_after_five(
    store: Store, db_url: str
) -> None:
    """Protocol section 8: ``heartbeat_s`` may be anything from 5 to 3,600 s, and the platform's own
    config sets it. The engine's watch (``pipeline_stalled``, high severity) expected a heartbeat
    every 5 minutes whatever the config said: a gateway beating every 10 minutes as told was
    reported stalled between every two beats."""
    register(db_url, {"gw-2": "home-1"})
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE gateways SET state = 'online', state_at = now() - interval '2 hours'")
        conn.execute(
            """UPDATE gateways SET config = '{"v": 1, "revision": 1, "heartbeat_s": 600}' WHERE id = 'gw-1'"""
        )
        conn.execute(
            "INSERT INTO readings VALUES (now() - interval '7 minutes', 'gw-1', 'gw-1', 'heartbeat', 600),"
            " (now() - interval '7 minutes', 'gw-2', 'gw-2', 'heartbeat', 600)"
        )

    async def check() -> list[str]:
        async with open_pool(db_url, min_size=1, max_size=2) as pool:
            await service.check_heartbeats(pool)
        return [
            g for (g,) in rows(db_url, "SELECT gateway_id FROM alerts WHERE state <> 'resolved' ORDER BY 1")
        ]

    assert asyncio.run(check()) == ["gw-2"]  # the default 60 s beat: five periods passed
    with psycopg.connect(db_url, autocommit=True) as conn:
        # moved by a new row, not an UPDATE: a TimescaleDB hypertable cannot move a row to another chunk
        conn.execute("DELETE FROM readings WHERE gateway_id = 'gw-1'")
        conn.execute(
            "INSERT INTO readings VALUES (now() - interval '51 minutes', 'gw-1', 'gw-1', 'heartbeat', 600)"
        )
    assert asyncio.run(check()) == ["gw-1", "gw-2"]  # five of its own periods passed too


def test_a_stall_that_lasts_is_one_alert_not_a_detection_every_tick(store: Store, db_url: str) -> None:
    """The heartbeat watch runs every 30 s: an open ``pipeline_stalled`` alert gained a detection
    and a ``detected_again`` trail entry on each run (about 2,900 a day in its detail; found by the
    outside API check, round 4)."""
    from datetime import timedelta

    from eldercare.platform.repo import alerts as alerts_repo

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE gateways SET state = 'online', state_at = now() - interval '2 hours'")
        conn.execute(
            "INSERT INTO readings VALUES (now() - interval '7 minutes', 'gw-1', 'gw-1', 'heartbeat', 60)"
        )

    async def check(at_s: float) -> int:
        async with open_pool(db_url, min_size=1, max_size=2) as pool:
            return await service.check_heartbeats(pool, now=alerts_repo.now() + timedelta(seconds=at_s))

    assert [asyncio.run(check(30.0 * i)) for i in range(4)] == [1, 1, 1, 1]  # stalled all along
    assert rows(db_url, "SELECT kind, detections FROM alerts") == [("pipeline_stalled", 1)]
    trail = rows(db_url, "SELECT action FROM alert_trail WHERE action IN ('opened', 'detected_again')")
    assert trail == [("opened",)]
