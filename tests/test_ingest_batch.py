"""Validation and COPY rows, without servers."""

from __future__ import annotations

import struct
import time
from datetime import UTC, datetime

import msgspec
import pytest
from ingest_support import event, status, telemetry

from eldercare.ingest.batch import (
    COPY_HEADER,
    PG_EPOCH_MS,
    Accepted,
    Batch,
    Ignored,
    Inbound,
    Limits,
    Registry,
    Rejected,
    RowEncoder,
    Validator,
)
from eldercare.ingest.worker import client_id_for
from eldercare.protocol import Reading

ROOT = "eldercare/v1"


@pytest.fixture
def validator() -> Validator:
    return Validator(ROOT, Registry({"gw-1": "home-1"}), Limits(max_payload_bytes=4096))


def check(
    v: Validator, kind: str, payload: bytes, gw: str = "gw-1", site: str = "home-1"
) -> Accepted | Rejected | Ignored:
    return v.check(Inbound(f"{ROOT}/{site}/{gw}/{kind}", payload))


def test_valid_telemetry_is_accepted_with_its_rows(validator: Validator) -> None:
    item = check(validator, "telemetry", telemetry(7, n=5))
    assert isinstance(item, Accepted)
    assert (item.gateway, item.site, item.seq, item.n_rows, item.verified) == ("gw-1", "home-1", 7, 5, True)
    assert item.ts_hi - item.ts_lo == 4


def test_row_bytes_are_postgres_binary_copy_rows() -> None:
    t = 1_767_225_600_123  # 2026-01-01 00:00:00.123 UTC
    rows, lo, hi = RowEncoder().readings("gw", [Reading(t=t, sensor="pir", metric="motion", value=1.5)])
    fields, ts_len, us, v_len, value = struct.unpack(">hiqid", rows[:26])
    assert (fields, ts_len, v_len, value, lo, hi) == (5, 8, 8, 1.5, t, t)
    assert datetime(2000, 1, 1, tzinfo=UTC).timestamp() * 1000 == PG_EPOCH_MS
    assert us == (t - PG_EPOCH_MS) * 1000
    assert rows[26:] == b"\x00\x00\x00\x02gw\x00\x00\x00\x03pir\x00\x00\x00\x06motion"
    assert COPY_HEADER.startswith(b"PGCOPY\n\xff\r\n\x00")


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        (f"{ROOT}/home-1/gw-1/telemetry", b"{not json", "$: not valid JSON"),
        (
            f"{ROOT}/home-1/gw-1/telemetry",
            b'{"v": 1, "epoch": "epoch-0001", "seq": "7", "readings": []}',
            "seq:",
        ),
        (f"{ROOT}/home-1/gw-1/event", event(1, kind="exploded"), "kind:"),
        (f"{ROOT}/home-1/gw-1/status", b'{"v": 1, "t": 1, "state": "online"}', "t:"),
        (f"{ROOT}/home-1/gw-1/gossip", b"{}", "topic: unknown message kind"),
        ("elsewhere/home-1/gw-1/telemetry", telemetry(1), "topic:"),
    ],
    # payloads carry the current time: ids must not, or xdist workers collect different tests
    ids=[
        "bad-json",
        "wrong-type",
        "unknown-event-kind",
        "old-time",
        "unknown-kind",
        "foreign-root",
    ],
)
def test_bad_messages_are_rejected_with_a_reason(
    validator: Validator, topic: str, payload: bytes, reason: str
) -> None:
    item = validator.check(Inbound(topic, payload))
    assert isinstance(item, Rejected)
    assert item.reason.startswith(reason), item.reason
    assert item.payload == payload


def test_oversized_payload_keeps_only_the_limit(validator: Validator) -> None:
    payload = telemetry(1, n=200)
    assert len(payload) > 4096
    item = check(validator, "telemetry", payload)
    assert isinstance(item, Rejected)
    assert "exceed ingest_max_payload_bytes (4096)" in item.reason
    assert item.payload == payload[:4096]
    assert (item.site, item.gateway) == ("home-1", "gw-1")


def test_timestamps_far_ahead_or_past_retention_are_rejected(validator: Validator) -> None:
    day = 86_400_000
    ahead = check(validator, "telemetry", telemetry(1, t0=int(time.time() * 1000) + 2 * day))
    old = check(validator, "telemetry", telemetry(2, t0=int(time.time() * 1000) - 91 * day))
    assert isinstance(ahead, Rejected) and "ahead of ingest's clock" in ahead.reason
    assert isinstance(old, Rejected) and "older than the 90-day retention" in old.reason


def test_a_simulated_sites_gateway_may_be_days_ahead_a_stranger_there_may_not() -> None:
    """Simulated gateways run the simulator's clock (a day ahead of the wall after 24 minutes at 60x);
    only a gateway registered at a simulated site is exempt, and only from "ahead"."""
    reg = Registry({"gw-1": "home-1", "gw-s": "sim-1"}, simulated={"sim-1"})
    v = Validator(ROOT, reg)
    day = 86_400_000
    ahead = int(time.time() * 1000) + 3 * day
    assert isinstance(check(v, "telemetry", telemetry(1, t0=ahead), gw="gw-s", site="sim-1"), Accepted)
    assert isinstance(check(v, "event", event(2, t=ahead), gw="gw-s", site="sim-1"), Accepted)
    real = check(v, "telemetry", telemetry(1, t0=ahead))
    stranger = check(v, "telemetry", telemetry(1, t0=ahead), gw="gw-9", site="sim-1")
    old = check(v, "telemetry", telemetry(3, t0=int(time.time() * 1000) - 91 * day), gw="gw-s", site="sim-1")
    assert isinstance(real, Rejected) and "ahead of ingest's clock" in real.reason
    assert isinstance(stranger, Rejected) and "ahead of ingest's clock" in stranger.reason
    assert isinstance(old, Rejected) and "older than the 90-day retention" in old.reason


def test_unknown_or_moved_gateway_is_left_for_the_database_to_confirm(validator: Validator) -> None:
    unknown = check(validator, "telemetry", telemetry(1), gw="gw-9")
    moved = check(validator, "telemetry", telemetry(1), site="home-2")
    assert isinstance(unknown, Accepted) and not unknown.verified
    assert isinstance(moved, Accepted) and not moved.verified


def test_last_will_is_dated_when_received(validator: Validator) -> None:
    will = msgspec.json.encode({"v": 1, "t": int(time.time() * 1000) - 3_600_000, "state": "offline"})
    item = validator.check(Inbound(f"{ROOT}/home-1/gw-1/status", will, received=time.time()))
    assert isinstance(item, Accepted)
    assert abs(item.ts_lo - time.time() * 1000) < 5_000
    online = check(validator, "status", status("online"))
    assert isinstance(online, Accepted) and online.epoch == "~status-online"


def test_batch_is_due_by_rows_or_age(validator: Validator) -> None:
    b = Batch()
    assert not b.due(time.monotonic() + 10, 100, 0.2)
    b.add(check(validator, "telemetry", telemetry(1, n=30)))
    assert b.rows == 30
    assert not b.due(b.opened, 50, 0.2)
    assert b.due(b.opened + 0.21, 50, 0.2)
    b.add(check(validator, "telemetry", telemetry(2, n=30)))
    assert b.due(b.opened, 50, 0.2)


def test_worker_client_ids_count_on_from_the_base() -> None:
    assert [client_id_for("eldercare-ingest-0", i) for i in range(3)] == [
        "eldercare-ingest-0",
        "eldercare-ingest-1",
        "eldercare-ingest-2",
    ]
    assert client_id_for("ingest", 2) == "ingest-2"


# Nothing vanishes (issue 18) -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "payload", "why"),
    [
        (f"{ROOT}/home-1/gw-1/status", b"", "cleared"),  # clearing a retained status
        (f"{ROOT}/home-1/gw-1/Telemetry", b"", "cleared"),  # clearing retained junk anywhere
        (f"{ROOT}/home-1/gw-1/config", b'{"v": 1, "revision": 3}', "config"),  # the platform's own push
        (f"{ROOT}/_sim/control", b'{"id": "x"}', "control"),
    ],
    ids=["clear-status", "clear-junk", "config-downlink", "sim-control"],
)
def test_normal_traffic_that_is_not_data_is_ignored_with_a_reason(
    validator: Validator, topic: str, payload: bytes, why: str
) -> None:
    item = validator.check(Inbound(topic, payload, retain=True))
    assert isinstance(item, Ignored)
    assert item.why == why and item.reason


@pytest.mark.parametrize(
    ("suffix", "reason"),
    [
        ("Telemetry", "topic: unknown message kind 'Telemetry' (kinds are lower-case)"),
        ("telemetry/extra", "topic: 'eldercare/v1/home-1/gw-1/telemetry/extra' has 4 levels"),
        ("readings", "topic: unknown message kind 'readings'"),
    ],
)
def test_a_valid_payload_on_a_wrong_topic_is_dead_lettered(
    validator: Validator, suffix: str, reason: str
) -> None:
    item = validator.check(Inbound(f"{ROOT}/home-1/gw-1/{suffix}", telemetry(1)))
    assert isinstance(item, Rejected)
    assert item.reason.startswith(reason), item.reason
    assert "<site>/<gateway>/<telemetry|event|status|config|ack>" in item.reason


def test_a_retained_dead_letter_has_a_key_so_it_is_kept_once(validator: Validator) -> None:
    junk = Inbound(f"{ROOT}/home-1/gw-1/status", b'{"v": 1, "state": "meh"}', retain=True)
    first, replay = validator.check(junk), validator.check(Inbound(junk.topic, junk.payload, retain=True))
    assert isinstance(first, Rejected) and isinstance(replay, Rejected)
    assert first.dedup_key is not None and first.dedup_key == replay.dedup_key
    other = validator.check(Inbound(junk.topic, b'{"v": 1, "state": "bah"}', retain=True))
    assert isinstance(other, Rejected) and other.dedup_key != first.dedup_key
    # the same junk arriving live (a retained status's first delivery has no retain flag) is that
    # one dead letter too, as an event's is (test_protocol_check.py)
    live = validator.check(Inbound(junk.topic, junk.payload))
    assert isinstance(live, Rejected) and live.dedup_key == first.dedup_key
    tele = validator.check(Inbound(f"{ROOT}/home-1/gw-1/telemetry", junk.payload))
    assert isinstance(tele, Rejected) and tele.dedup_key is None  # live telemetry: every copy kept


def test_digest_follows_the_contents_not_the_formatting(validator: Validator) -> None:
    body = msgspec.json.decode(telemetry(3, n=4))
    compact = check(validator, "telemetry", msgspec.json.encode(body))
    spaced = check(validator, "telemetry", msgspec.json.format(msgspec.json.encode(body), indent=2))
    body["readings"][2]["value"] += 1
    changed = check(validator, "telemetry", msgspec.json.encode(body))
    assert isinstance(compact, Accepted) and isinstance(spaced, Accepted) and isinstance(changed, Accepted)
    assert compact.digest == spaced.digest != changed.digest
    ev = msgspec.json.decode(event(5))
    a, b = check(validator, "event", msgspec.json.encode(ev)), check(validator, "event", event(5, kind="sos"))
    assert isinstance(a, Accepted) and isinstance(b, Accepted) and a.digest != b.digest


def test_sensors_seen_for_the_first_time_are_reported_once(validator: Validator) -> None:
    first = check(validator, "telemetry", telemetry(1, sensor="pir-new"))
    again = check(validator, "telemetry", telemetry(2, sensor="pir-new"))
    assert isinstance(first, Accepted) and isinstance(again, Accepted)
    assert (first.new_sensors, again.new_sensors) == (("pir-new",), ())
    beat = check(validator, "telemetry", telemetry(3, sensor="gw-1"))  # the gateway's own heartbeat
    assert isinstance(beat, Accepted) and beat.new_sensors == ()
    ev = check(validator, "event", event(4, kind="sos"))
    assert isinstance(ev, Accepted) and ev.new_sensors == ("wearable-1",)
