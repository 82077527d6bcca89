"""Wire protocol v1: round trips, rejections that name field and reason, topics, fuzzing."""

from __future__ import annotations

import json
import math
import os
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eldercare import protocol as p
from eldercare.protocol import ProtocolError

T = 1_767_225_600_000  # 2026-01-01 UTC


def telemetry(**over: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "v": 1,
        "epoch": "3f9c2a7be41d0c55",
        "seq": 7,
        "readings": [
            {"t": T, "sensor": "pir-kitchen", "metric": "motion", "value": 1.0},
            {"t": T + 250, "sensor": "env-living", "metric": "temperature", "value": 21.5},
            {"t": T + 900, "sensor": "gw-0001", "metric": "heartbeat", "value": 3600},
        ],
    }
    msg.update(over)
    return msg


def event(**over: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "v": 1,
        "epoch": "3f9c2a7be41d0c55",
        "seq": 8,
        "t": T,
        "sensor": "wearable-1",
        "kind": "fall",
        "confidence": 0.93,
        "resident": "res-0042",
        "evidence": {"t0": T - 2000, "hz": 50, "unit": "mg", "x": [1, 2], "y": [3, 4], "z": [980, 990]},
    }
    msg.update(over)
    return msg


def status(**over: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "v": 1,
        "t": T,
        "state": "online",
        "sensors": {"wearable-1": {"battery": 0.81, "last_seen": T - 5000, "online": True}},
        "version": "0.1.0",
        "clock_ok": True,
        "outbox": {"messages": 0, "pending_readings": 3},
    }
    msg.update(over)
    return msg


def config(**over: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "v": 1,
        "revision": 3,
        "sensors": [
            {"id": "wearable-1", "kind": "wearable", "resident": "res-0042", "sample_hz": 50},
            {"id": "pir-kitchen", "kind": "pir", "room": "kitchen"},
        ],
        "heartbeat_s": 30,
        "vitals_ranges": {"heart_rate": [40, 120]},
    }
    msg.update(over)
    return msg


def ack(**over: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {"v": 1, "epoch": "3f9c2a7be41d0c55", "seq": 1044}
    msg.update(over)
    return msg


BUILDERS = {"telemetry": telemetry, "event": event, "status": status, "config": config, "ack": ack}


def raw(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def rejection(kind: str, data: bytes | str) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        p.decode(kind, data)
    return info.value


# Round trips --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_valid_payloads_decode_and_round_trip(kind: str) -> None:
    msg = p.decode(kind, raw(BUILDERS[kind]()))
    assert isinstance(msg, p.KINDS[kind])
    again = p.decode(kind, p.encode(msg))
    assert again == msg


def test_decoded_fields_have_wire_values() -> None:
    msg = p.decode_telemetry(raw(telemetry()))
    assert (msg.epoch, msg.seq, len(msg.readings)) == ("3f9c2a7be41d0c55", 7, 3)
    assert msg.readings[2] == p.Reading(t=T + 900, sensor="gw-0001", metric="heartbeat", value=3600.0)
    assert isinstance(msg.readings[2].value, float)  # JSON integers are fine for values


def test_typed_decoders_return_their_types() -> None:
    assert isinstance(p.decode_telemetry(raw(telemetry())), p.Telemetry)
    assert isinstance(p.decode_event(raw(event())), p.Event)
    assert isinstance(p.decode_status(raw(status())), p.Status)
    assert isinstance(p.decode_config(raw(config())), p.GatewayConfig)
    with pytest.raises(ProtocolError):
        p.decode_event(raw(telemetry()))


def test_defaults_of_optional_fields() -> None:
    ev = p.decode_event(
        raw({k: v for k, v in event().items() if k not in ("confidence", "resident", "evidence")})
    )
    assert (ev.confidence, ev.resident, ev.evidence) == (1.0, None, {})
    st_ = p.decode_status(raw({"v": 1, "t": T, "state": "offline"}))
    assert (st_.sensors, st_.version, st_.clock_ok, st_.outbox) == ({}, None, True, {})
    cfg = p.decode_config(raw({"v": 1, "revision": 0}))
    assert (cfg.telemetry_batch_max, cfg.heartbeat_s, cfg.stream_raw_acc) == (50, 60, False)


def test_input_types_accepted() -> None:
    data = raw(telemetry())
    for form in (data, bytearray(data), memoryview(data), data.decode()):
        assert p.decode_telemetry(form).seq == 7


def test_vendor_keys_inside_sensor_status_are_ignored() -> None:
    msg = status(sensors={"plug-tv": {"battery": 0.5, "firmware": "2.1", "lqi": 87}})
    assert p.decode_status(raw(msg)).sensors["plug-tv"].battery == 0.5


def test_encode_is_compact_json() -> None:
    msg = p.decode_event(raw(event()))
    out = p.encode(msg)
    assert b" " not in out and json.loads(out)["kind"] == "fall"


# Rejections: each names the field and the reason --------------------------------------------


def _drop(d: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != key}


def _reading(**over: Any) -> dict[str, Any]:
    r = {"t": T, "sensor": "pir-kitchen", "metric": "motion", "value": 1.0}
    r.update(over)
    return telemetry(readings=[telemetry()["readings"][0], r])


CASES: list[tuple[str, str, Any, str, str]] = [
    # (id, kind, payload, field, reason substring)
    ("wrong type seq", "telemetry", telemetry(seq="7"), "seq", "Expected `int`, got `str`"),
    ("wrong type value", "telemetry", _reading(value="1"), "readings[1].value", "Expected `float`"),
    ("bool is not a number", "telemetry", _reading(value=True), "readings[1].value", "got `bool`"),
    ("float t", "telemetry", _reading(t=T + 0.5), "readings[1].t", "Expected `int`, got `float`"),
    ("t with exponent", "status", b'{"v": 1, "t": 1.7672256e12, "state": "online"}', "t", "got `float`"),
    ("missing field", "telemetry", _drop(telemetry(), "epoch"), "epoch", "missing required field"),
    ("missing in reading", "telemetry", _reading(metric=None) | {}, "readings[1].metric", "Expected `str`"),
    ("unknown field", "event", event(colour="red"), "colour", "unknown field"),
    ("unknown in reading", "telemetry", _reading(unit="C"), "readings[1].unit", "unknown field"),
    ("t in seconds", "event", event(t=T // 1000), "t", ">= 1000000000000"),
    ("t in microseconds", "telemetry", _reading(t=T * 1000), "readings[1].t", "<= 4102444799999"),
    ("negative seq", "telemetry", telemetry(seq=-1), "seq", ">= 0"),
    ("seq too big", "event", event(seq=2**63), "seq", "<= 9223372036854775807"),
    ("bad sensor id", "telemetry", _reading(sensor="pir kitchen"), "readings[1].sensor", "does not match"),
    ("sensor id newline", "telemetry", _reading(sensor="pir\n"), "readings[1].sensor", "does not match"),
    ("bad metric", "telemetry", _reading(metric="Heart-Rate"), "readings[1].metric", "does not match"),
    ("empty sensor", "telemetry", _reading(sensor=""), "readings[1].sensor", "length >= 1"),
    ("long sensor", "telemetry", _reading(sensor="s" * 65), "readings[1].sensor", "length <= 64"),
    ("bad event sensor", "event", event(sensor="-wearable"), "sensor", "matching regex"),
    ("event sensor newline", "event", event(sensor="wearable-1\n"), "sensor", "matching regex"),
    ("bad resident", "event", event(resident="res/1"), "resident", "matching regex"),
    ("bad epoch", "telemetry", telemetry(epoch="short"), "epoch", "matching regex"),
    ("value huge", "telemetry", _reading(value=1e16), "readings[1].value", "<= 1000000000000000.0"),
    ("value inf", "telemetry", _reading(value=math.inf), "$", "not valid JSON"),
    ("value nan", "telemetry", _reading(value=math.nan), "$", "not valid JSON"),
    ("value 1e400", "telemetry", b"1e400", "readings[1].value", "out of range"),
    ("empty readings", "telemetry", telemetry(readings=[]), "readings", "length >= 1"),
    ("wrong v", "telemetry", telemetry(v=2), "v", "unsupported protocol version"),
    ("v as string", "status", status(v="1"), "v", "unsupported protocol version"),
    ("unknown event kind", "event", event(kind="explosion"), "kind", "known kinds: fall"),
    ("confidence > 1", "event", event(confidence=1.01), "confidence", "<= 1.0"),
    ("confidence < 0", "event", event(confidence=-0.1), "confidence", ">= 0.0"),
    ("evidence not object", "event", event(evidence=[1]), "evidence", "Expected `object`"),
    ("bad state", "status", status(state="sleeping"), "state", "Invalid enum value"),
    ("battery > 1", "status", status(sensors={"w": {"battery": 81}}), "sensors[...].battery", "<= 1.0"),
    ("bad status key", "status", status(sensors={"a b": {}}), "sensors", "bad key"),
    ("negative outbox", "status", status(outbox={"messages": -1}), "outbox[...]", ">= 0"),
    (
        "config dup ids",
        "config",
        config(sensors=[{"id": "a", "kind": "pir"}] * 2),
        "sensors[1].id",
        "duplicate",
    ),
    ("config range", "config", config(vitals_ranges={"spo2": [100, 92]}), "vitals_ranges.spo2", "not below"),
    ("config kind", "config", config(sensors=[{"id": "a", "kind": "camera"}]), "sensors[0].kind", "enum"),
    ("config revision", "config", config(revision=-1), "revision", ">= 0"),
    ("config heartbeat", "config", config(heartbeat_s=1), "heartbeat_s", ">= 5"),
    ("not an object", "event", [1, 2], "$", "Expected `object`, got `array`"),
]


@pytest.mark.parametrize(
    ("kind", "payload", "field", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_rejection_names_field_and_reason(kind: str, payload: Any, field: str, reason: str) -> None:
    if payload == b"1e400":  # not expressible with json.dumps
        data = raw(_reading(value=0.5)).replace(b"0.5", b"1e400")
    elif isinstance(payload, bytes):
        data = payload
    else:
        data = raw(payload)
    err = rejection(kind, data)
    assert err.field == field
    assert reason in err.reason
    assert str(err) == f"{err.field}: {err.reason}"


def test_missing_reading_field_is_named() -> None:
    msg = telemetry()
    del msg["readings"][1]["value"]
    err = rejection("telemetry", raw(msg))
    assert (err.field, err.reason) == ("readings[1].value", "missing required field")


@pytest.mark.parametrize(("key", "field"), [("", '$[""]'), ("a b", '$["a b"]'), ("x`y", '$["x`y"]')])
def test_odd_unknown_field_names_are_quoted(key: str, field: str) -> None:
    err = rejection("status", raw(status() | {key: 1}))
    assert (err.field, err.reason) == (field, "unknown field (not in protocol v1)")


def test_too_many_readings() -> None:
    one = {"t": T, "sensor": "pir-kitchen", "metric": "motion", "value": 1.0}
    ok = telemetry(readings=[one] * p.MAX_READINGS)
    assert len(p.decode_telemetry(raw(ok)).readings) == p.MAX_READINGS
    err = rejection("telemetry", raw(telemetry(readings=[one] * (p.MAX_READINGS + 1))))
    assert err.field == "readings" and "length <= 10000" in err.reason


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b'{"v": 1,}', "not valid JSON"),
        (raw(telemetry()) + b" trailing", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b'{"v": 1, "epoch": "\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8", "seq": 1}', "not valid UTF-8"),
    ],
)
def test_bad_json(data: bytes, reason: str) -> None:
    err = rejection("telemetry", data)
    assert err.field == "$" and reason in err.reason


def test_bad_names_are_rejected_even_after_good_ones_were_cached() -> None:
    p.decode_telemetry(raw(telemetry()))  # fills the cache of known-good names
    err = rejection("telemetry", raw(_reading(sensor="pir kitchen")))
    assert err.field == "readings[1].sensor"
    err = rejection("telemetry", raw(_reading(metric="Motion")))
    assert err.field == "readings[1].metric"


def test_unknown_message_kind() -> None:
    err = rejection("alarm", raw(event()))
    assert err.field == "topic" and "alarm" in err.reason


def test_error_shows_the_documented_pattern() -> None:
    err = rejection("event", raw(event(sensor="a b")))
    assert p.ID_PATTERN in err.reason and "\\Z" not in err.reason


# Identifiers and topics ---------------------------------------------------------------------


@pytest.mark.parametrize("good", ["a", "home-0001", "gw_1.2:3", "A" * 64, "0"])
def test_identifiers_accepted(good: str) -> None:
    assert p.is_identifier(good)
    assert p.parse_topic(p.topic(good, good, "event")) == p.TopicParts(good, good, "event")


@pytest.mark.parametrize("bad", ["", "-a", "_a", "a b", "a/b", "+", "#", "a\n", "A" * 65, "ä", "a\x00"])
def test_identifiers_rejected(bad: str) -> None:
    assert not p.is_identifier(bad)
    with pytest.raises(ProtocolError) as info:
        p.topic(bad, "gw-1", "telemetry")
    assert info.value.field == "site"
    with pytest.raises(ProtocolError) as info:
        p.topic("home-1", bad, "telemetry")
    assert info.value.field == "gateway"


@pytest.mark.parametrize("kind", ["telemetry", "event", "status", "config"])
def test_topic_build_and_parse(kind: p.TopicKind) -> None:
    name = p.topic("home-0001", "gw-0001", kind)
    assert name == f"eldercare/v1/home-0001/gw-0001/{kind}"
    assert p.parse_topic(name) == p.TopicParts("home-0001", "gw-0001", kind)


@pytest.mark.parametrize("root", ["test-42/eldercare/v1", "x", "a/b/c/d"])
def test_custom_roots(root: str) -> None:
    name = p.topic("s1", "g1", "status", root=root)
    assert name == f"{root}/s1/g1/status"
    assert p.parse_topic(name, root=root) == p.TopicParts("s1", "g1", "status")
    with pytest.raises(ProtocolError):
        p.parse_topic(name)  # not under the default root
    assert p.subscription("telemetry", root=root) == f"{root}/+/+/telemetry"


@pytest.mark.parametrize(
    ("name", "field", "reason"),
    [
        ("other/v1/s/g/telemetry", "topic", "is not under eldercare/v1/"),
        ("eldercare/v2/s/g/telemetry", "topic", "is not under"),
        ("eldercare/v1s/g/telemetry", "topic", "is not under"),
        ("eldercare/v1/s/g", "topic", "has 2 levels after eldercare/v1/, not 3"),
        ("eldercare/v1/s/g/telemetry/extra", "topic", "has 4 levels after eldercare/v1/, not 3"),
        (
            "eldercare/v1/s/g/readings",
            "topic",
            "eldercare/v1/<site>/<gateway>/<telemetry|event|status|config|ack>",
        ),
        ("eldercare/v1/s/g/alarm", "topic", "unknown message kind"),
        ("eldercare/v1//g/telemetry", "topic.site", "not a valid identifier"),
        ("eldercare/v1/s/+/telemetry", "topic.gateway", "not a valid identifier"),
        ("eldercare/v1/s\n/g/event", "topic.site", "not a valid identifier"),
        ("eldercare/v1/s/g/Event", "topic", "unknown message kind 'Event' (kinds are lower-case)"),
    ],
)
def test_bad_topics(name: str, field: str, reason: str) -> None:
    with pytest.raises(ProtocolError) as info:
        p.parse_topic(name)
    assert info.value.field == field and reason in info.value.reason


def test_topic_rejects_unknown_kind() -> None:
    with pytest.raises(ProtocolError) as info:
        p.topic("s", "g", "alarm")  # type: ignore[arg-type]
    assert info.value.field == "kind"


def test_subscriptions() -> None:
    assert p.subscription("telemetry") == "eldercare/v1/+/+/telemetry"
    assert p.subscription("event", shared_group="ingest") == "$share/ingest/eldercare/v1/+/+/event"
    with pytest.raises(ProtocolError):
        p.subscription("alarm")
    with pytest.raises(ProtocolError):
        p.subscription("event", shared_group="a/b")


def test_metrics_and_event_kinds_are_well_formed() -> None:
    assert all(p.is_identifier(m) and m == m.lower() for m in p.METRICS)
    assert {"fall", "sos", "clock_error", "config_rejected"} <= set(p.EVENT_KINDS)
    for kind in p.EVENT_KINDS:
        assert p.decode_event(raw(event(kind=kind))).kind == kind


# Property-based fuzzing ---------------------------------------------------------------------

# PROTOCOL_FUZZ_EXAMPLES=20000 for a longer hunt; the suite stays quick by default.
EXAMPLES = int(os.environ.get("PROTOCOL_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KINDS = sorted(p.KINDS)

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
json_like = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=30,
)


def _decode_or_protocol_error(kind: str, data: bytes) -> None:
    try:
        msg = p.decode(kind, data)
    except ProtocolError as exc:
        assert exc.field and exc.reason
    else:
        assert isinstance(msg, p.KINDS[kind])


@FUZZ
@given(kind=st.sampled_from(KINDS), data=st.binary(max_size=300))
def test_fuzz_arbitrary_bytes(kind: str, data: bytes) -> None:
    _decode_or_protocol_error(kind, data)


@FUZZ
@given(kind=st.sampled_from(KINDS), obj=json_like)
def test_fuzz_arbitrary_json(kind: str, obj: Any) -> None:
    _decode_or_protocol_error(kind, json.dumps(obj).encode())


@FUZZ
@given(kind=st.sampled_from(KINDS), data=st.data())
def test_fuzz_valid_messages_with_one_field_replaced(kind: str, data: st.DataObject) -> None:
    msg = BUILDERS[kind]()
    key = data.draw(st.sampled_from([*msg, "extra"]))
    msg[key] = data.draw(json_like)
    if kind == "telemetry" and data.draw(st.booleans()):
        readings = telemetry()["readings"]
        i = data.draw(st.integers(0, len(readings) - 1))
        readings[i][data.draw(st.sampled_from(["t", "sensor", "metric", "value", "x"]))] = data.draw(
            json_like
        )
        msg = telemetry(readings=readings)
    _decode_or_protocol_error(kind, json.dumps(msg).encode())


@FUZZ
@given(kind=st.sampled_from(KINDS), data=st.data())
def test_fuzz_truncated_and_corrupted_payloads(kind: str, data: st.DataObject) -> None:
    blob = bytearray(raw(BUILDERS[kind]()))
    cut = data.draw(st.integers(0, len(blob)))
    pos = data.draw(st.integers(0, len(blob) - 1))
    blob[pos] = data.draw(st.integers(0, 255))
    _decode_or_protocol_error(kind, bytes(blob[:cut] if data.draw(st.booleans()) else blob))


idents = st.from_regex(p._py(p.ID_PATTERN), fullmatch=True)
metrics = st.from_regex(p._py(p.METRIC_PATTERN), fullmatch=True)
epochs = st.from_regex(p._py(p.EPOCH_PATTERN), fullmatch=True)
times = st.integers(p.T_MIN_MS, p.T_MAX_MS - 1)
seqs = st.integers(0, 2**63 - 1)
values = st.floats(-p.VALUE_LIMIT, p.VALUE_LIMIT, allow_nan=False)
unit = st.floats(0.0, 1.0)
finite = st.floats(allow_nan=False, allow_infinity=False)


def texts(max_size: int) -> st.SearchStrategy[str]:
    """Free-form strings a valid message may hold: any Unicode but NUL (section 4)."""
    return st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=max_size)


evidence_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | finite | texts(10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts(8), inner, max_size=4),
    max_leaves=12,
)

readings = st.builds(p.Reading, t=times, sensor=idents, metric=metrics, value=values)
telemetries = st.builds(
    p.Telemetry, v=st.just(1), epoch=epochs, seq=seqs, readings=st.lists(readings, min_size=1, max_size=20)
)
events = st.builds(
    p.Event,
    v=st.just(1),
    epoch=epochs,
    seq=seqs,
    t=times,
    sensor=idents,
    kind=st.sampled_from(p.EVENT_KINDS),
    confidence=unit,
    resident=st.none() | idents,
    evidence=st.dictionaries(texts(8), evidence_values, max_size=4),
)
statuses = st.builds(
    p.Status,
    v=st.just(1),
    t=times,
    state=st.sampled_from(["online", "offline"]),
    sensors=st.dictionaries(
        idents,
        st.builds(
            p.SensorStatus, battery=st.none() | unit, last_seen=st.none() | times, online=st.booleans()
        ),
        max_size=4,
    ),
    version=st.none() | texts(64),
    clock_ok=st.booleans(),
    outbox=st.dictionaries(texts(16), st.integers(0, 2**63 - 1), max_size=4),
)
ranges = st.tuples(values, values).filter(lambda r: r[0] != r[1]).map(lambda r: (min(r), max(r)))
configs = st.builds(
    p.GatewayConfig,
    v=st.just(1),
    revision=st.integers(0, 2**31 - 1),  # as the platform stores it
    sensors=st.lists(
        st.builds(
            p.SensorConfig,
            id=idents,
            kind=st.sampled_from(p.SENSOR_KINDS),
            room=st.none() | st.text(max_size=64),
            resident=st.none() | idents,
            sample_hz=st.none() | st.floats(0.001, 200.0),
        ),
        max_size=5,
        unique_by=lambda s: s.id,
    ),
    telemetry_batch_max=st.integers(1, p.MAX_READINGS),
    telemetry_batch_ms=st.integers(10, 60_000),
    heartbeat_s=st.integers(5, 3600),
    stream_raw_acc=st.booleans(),
    fall_threshold=unit,
    checkin_window_s=st.integers(0, 600),
    vitals_ranges=st.dictionaries(metrics, ranges, max_size=3),
)
MESSAGES = {"telemetry": telemetries, "event": events, "status": statuses, "config": configs}


ROUND_TRIP = settings(FUZZ, max_examples=max(10, EXAMPLES // 3))


@ROUND_TRIP
@given(msg=st.one_of(*MESSAGES.values()))
def test_valid_generated_messages_round_trip(msg: p.Payload) -> None:
    kind = next(k for k, cls in p.KINDS.items() if isinstance(msg, cls))
    assert p.decode(kind, p.encode(msg)) == msg
    assert p.decode(kind, json.dumps(msgspec.to_builtins(msg)).encode()) == msg  # any JSON encoder


# Reasons that name the field and the rule (issue 18) -------------------------------------------

EVENT_HEAD = (
    '{"v":1,"epoch":"3f9c2a7be41d0c55","seq":1,"t":1767225600000,"sensor":"s","kind":"sos","evidence":'
)


@pytest.mark.parametrize(
    ("evidence", "field"),
    [
        ('{"a":"\\ud800"}', "evidence.a"),  # high surrogate at the end of a string: msgspec says "truncated"
        ('{"a":["x","\\udc00x"]}', "evidence.a[1]"),
        ('{"\\ud800":1}', 'evidence["\\ud800"]'),
    ],
)
def test_a_lone_surrogate_is_named_as_such(evidence: str, field: str) -> None:
    with pytest.raises(ProtocolError) as info:
        p.decode("event", EVENT_HEAD + evidence + "}")
    assert info.value.field == field
    assert "lone UTF-16 surrogate" in info.value.reason and "truncated" not in info.value.reason


def test_a_surrogate_pair_is_a_character() -> None:
    ev = p.decode_event(EVENT_HEAD + '{"a":"\\ud83d\\ude00"}}')
    assert ev.evidence == {"a": "\U0001f600"}


@pytest.mark.parametrize("shape", ["[", '{"b":'])
def test_evidence_nested_1000_deep_gets_a_clear_reason(shape: str) -> None:
    closing = "]" if shape == "[" else "}"
    inner = shape * 1000 + ("" if shape == "[" else "1") + closing * 1000
    with pytest.raises(ProtocolError) as info:
        p.decode("event", EVENT_HEAD + '{"a":' + inner + "}}")
    assert info.value.field == "evidence"
    assert f"nested more than {p.MAX_EVIDENCE_DEPTH} levels deep" in info.value.reason


def test_evidence_depth_limit_is_exact() -> None:
    d = p.MAX_EVIDENCE_DEPTH
    # the evidence object is level 1, so d - 1 arrays inside it reach the limit exactly
    ok = "[" * (d - 1) + "]" * (d - 1)
    node = p.decode_event(EVENT_HEAD + '{"a":' + ok + "}}").evidence["a"]
    for _ in range(d - 2):
        node = node[0]
    assert node == []
    with pytest.raises(ProtocolError) as info:
        p.decode("event", EVENT_HEAD + '{"a":[' + ok + "]}}")
    assert info.value.field == "evidence"
