"""Edge agent logic without a broker: outbox, batching, clock, check-in, zigbee2mqtt mapping, config."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
from edge_support import gateway, gw_file, write_toml

from eldercare import protocol
from eldercare.edge.batching import Batcher
from eldercare.edge.checkin import CheckIns, HomeContext, combine_confidence
from eldercare.edge.clock import ClockGuard
from eldercare.edge.config import BrokerConfig, ClockConfig, DriverEntry, OutboxConfig, load_gateway_file
from eldercare.edge.connection import backoff_delay
from eldercare.edge.drivers import Action, Health, Sample, driver_class, load_driver
from eldercare.edge.drivers.zigbee2mqtt import DeviceMap, Zigbee2MqttDriver, Zigbee2MqttOptions
from eldercare.edge.errors import DriverError, GatewayConfigError
from eldercare.edge.outbox import Outbox

T0 = 1_790_000_000_000  # 2026-09, a plausible time


# outbox ---------------------------------------------------------------------------------------


def test_outbox_seq_and_epoch_survive_reopen(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite3")
    epoch = ob.epoch
    ob.add_readings([(T0, "pir-1", "motion", 1.0), (T0 + 1, "pir-1", "motion", 0.0)])
    assert ob.seal_batch(50, T0) == (0, 2)
    assert ob.add_event({"t": T0, "sensor": "sos-1", "kind": "sos"}, T0) == 1
    ob.add_readings([(T0 + 2, "pir-1", "motion", 1.0)])
    ob.close()
    ob = Outbox(tmp_path / "o.sqlite3")
    assert ob.epoch == epoch and ob.next_seq == 2
    assert ob.n_pending == 1 and ob.n_messages == 2
    sealed = ob.seal_batch(50, T0)
    assert sealed == (2, 1)
    msg = protocol.decode("telemetry", ob.next_batch([], 10)[-1].payload)
    assert isinstance(msg, protocol.Telemetry) and msg.seq == 2 and msg.epoch == epoch
    assert Outbox(tmp_path / "other.sqlite3").epoch != epoch  # a new outbox is a new epoch


def test_outbox_durability_settings_in_force(tmp_path: Path) -> None:
    """WAL with an fsync per commit (FULL = 2) on the live connection, restored after each ack."""
    ob = Outbox(tmp_path / "o.sqlite3")
    pragma = lambda name: ob._db.execute(f"PRAGMA {name}").fetchone()[0]  # noqa: E731
    assert pragma("journal_mode") == "wal" and pragma("synchronous") == 2
    ob.add_readings([(T0, "pir-1", "motion", 1.0)])
    seq, _ = ob.seal_batch(50, T0) or (None, 0)
    ob.ack([seq])  # the one commit allowed without fsync: a lost ack is only a redelivery
    assert pragma("synchronous") == 2 and ob.n_messages == 0
    normal = Outbox(tmp_path / "n.sqlite3", OutboxConfig(path=tmp_path / "n.sqlite3", synchronous="normal"))
    assert normal._db.execute("PRAGMA synchronous").fetchone()[0] == 1


def test_outbox_sends_alarms_first_then_by_seq_and_forgets_acked(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite3")
    for i in range(3):
        ob.add_readings([(T0 + i, "pir-1", "motion", 1.0)])
        ob.seal_batch(50, T0)
    ob.add_event({"t": T0, "sensor": "gw-1", "kind": "config_rejected"}, T0)
    ob.add_event({"t": T0, "sensor": "sos-1", "kind": "sos"}, T0)
    order = [m.seq for m in ob.next_batch([], 10)]
    assert order == [4, 3, 0, 1, 2]
    assert [m.seq for m in ob.next_batch([4, 0], 10)] == [3, 1, 2]
    ob.ack([4, 3, 0])
    assert ob.n_messages == 2
    assert [m.seq for m in ob.next_batch([], 10)] == [1, 2]


def test_outbox_sheds_oldest_telemetry_never_events(tmp_path: Path) -> None:
    cfg = OutboxConfig(path=tmp_path / "o.sqlite3", max_messages=100, max_age_s=3600)
    ob = Outbox(cfg.path, cfg)
    for i in range(150):
        if i % 10 == 0:
            ob.add_event({"t": T0, "sensor": "sos-1", "kind": "sos"}, T0)
        ob.add_readings([(T0 + i, "pir-1", "motion", 1.0)])
        ob.seal_batch(50, T0)
    shed = ob.enforce_bounds(T0)
    assert shed >= 65 and ob.n_messages <= 100
    left = ob.next_batch([], 1000)
    assert sum(m.kind == "event" for m in left) == 15  # every event kept
    tele = [m.seq for m in left if m.kind == "telemetry"]
    assert tele == sorted(tele) and tele[-1] == ob.next_seq - 1  # the newest telemetry is kept
    assert ob.stats()["shed_messages"] == shed
    # too old: telemetry shed by age, events kept whatever their age
    assert ob.enforce_bounds(T0 + 3_601_000) == len(tele)
    assert {m.kind for m in ob.next_batch([], 1000)} == {"event"}


def test_outbox_refuses_events_the_platform_would_dead_letter(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite3")
    with pytest.raises(protocol.ProtocolError):
        ob.add_event({"t": T0, "sensor": "sos-1", "kind": "nonsense"}, T0)
    assert ob.next_seq == 0 and ob.n_messages == 0


# batching -------------------------------------------------------------------------------------


def test_reconnect_backoff_is_capped_low_for_the_first_attempts() -> None:
    b = BrokerConfig(
        reconnect_min_s=0.5, reconnect_max_s=10, reconnect_fast_max_s=2, reconnect_fast_attempts=3
    )
    longest = [backoff_delay(b, n, 0.999999) for n in range(8)]
    assert longest == pytest.approx([0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0], rel=1e-5)
    shortest = [backoff_delay(b, n, 0.0) for n in range(8)]
    assert shortest == pytest.approx([x / 2 for x in longest], rel=1e-5)  # jitter: factor 0.5..1
    defaults = BrokerConfig()
    first = [backoff_delay(defaults, n, 0.999999) for n in range(defaults.reconnect_fast_attempts)]
    assert max(first) <= 2.0 and sum(first) < 20  # a broker restart costs a gateway seconds
    assert backoff_delay(defaults, 100, 0.999999) == pytest.approx(10.0)


def test_batcher_due_by_size_or_age() -> None:
    b = Batcher(max_readings=50, max_ms=1000)
    assert not b.due(0.0)
    b.added(10, now=0.0)
    assert not b.due(0.5) and b.deadline() == 1.0
    assert b.due(1.0)
    b.added(40, now=0.6)
    assert b.due(0.6)  # size bound
    b.sealed(50, now=0.6)
    assert b.count == 0 and b.deadline() is None


# clock ----------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self, wall_s: float) -> None:
        self.wall_s, self.mono_s = wall_s, 100.0

    def advance(self, s: float) -> None:
        self.wall_s += s
        self.mono_s += s


def test_clock_before_build_date_holds_until_plausible() -> None:
    c = FakeClock(0.0)  # 1970: the RTC lost power
    g = ClockGuard(ClockConfig(), wall=lambda: c.wall_s, mono=lambda: c.mono_s)
    assert g.now_ms() is None and not g.ok
    assert "before" in g.changes[0].reason
    held_at = c.mono_s
    c.advance(5)
    c.wall_s = T0 / 1000  # NTP answered
    assert g.now_ms() == T0 and g.ok
    assert g.ms_at(held_at) == T0 - 5000  # held readings get their true time back


def test_clock_jump_is_reported_and_not_used_until_settled() -> None:
    c = FakeClock(T0 / 1000)
    g = ClockGuard(ClockConfig(settle_s=60), wall=lambda: c.wall_s, mono=lambda: c.mono_s)
    assert g.now_ms() == T0
    c.advance(10)
    c.wall_s += 86400  # someone set the clock a day ahead
    assert g.now_ms() == T0 + 10_000  # estimated from the monotonic clock
    assert not g.ok and "jumped" in g.changes[-1].reason
    c.advance(30)
    assert g.now_ms() == T0 + 40_000
    c.advance(31)  # the new clock stayed self-consistent for settle_s: trusted again
    assert g.now_ms() == T0 + 71_000 + 86_400_000 and g.ok


def test_clock_far_future_and_before_last_good() -> None:
    c = FakeClock(4_200_000_000.0)
    g = ClockGuard(ClockConfig(), wall=lambda: c.wall_s, mono=lambda: c.mono_s)
    assert g.now_ms() is None and "future" in g.changes[0].reason
    c.wall_s = (T0 - 3_600_000) / 1000
    g2 = ClockGuard(ClockConfig(), last_good_ms=T0, wall=lambda: c.wall_s, mono=lambda: c.mono_s)
    assert g2.now_ms() is None and "last good" in g2.changes[0].reason


# check-in and context -------------------------------------------------------------------------


def test_checkin_answer_and_expiry() -> None:
    ci = CheckIns(window_s=30)
    assert ci.start("wearable-1", "res-1", T0, 10.0, 0.9, now=16.0) is not None
    assert ci.start("wearable-1", "res-1", T0, 11.0, 0.95, now=17.0) is None  # same fall
    assert ci.open["wearable-1"].confidence == 0.95
    assert ci.expired(45.0) == []
    assert [s.wearable for s in ci.answer(resident="res-1")] == ["wearable-1"]
    ci.start("wearable-2", "res-2", T0, 10.0, 0.8, now=16.0)
    assert [s.wearable for s in ci.expired(46.0)] == ["wearable-2"]


def test_context_lowers_or_raises_confidence() -> None:
    ctx = HomeContext()
    ctx.add(0.0, "pir", "kitchen", 1.0)
    room = ctx.room_at(5.0)
    assert room == "kitchen"
    still, c1 = combine_confidence(0.8, room, [], has_pir=True)
    assert still > 0.8 and c1["still"]
    ctx.add(20.0, "pir", "bedroom", 1.0)
    walked, c2 = combine_confidence(0.8, room, ctx.after(8.0, 40.0), has_pir=True)
    assert walked == pytest.approx(0.4) and c2["motion_elsewhere"] == ["bedroom"]
    ctx.add(25.0, "bed", "bedroom", 1.0)
    in_bed, _ = combine_confidence(0.8, room, ctx.after(8.0, 40.0), has_pir=True)
    assert in_bed < walked
    same_room, _ = combine_confidence(0.8, room, [ctx.events[0]], has_pir=True)
    assert same_room == 0.8  # moving on the kitchen floor says nothing


# zigbee2mqtt ----------------------------------------------------------------------------------

# Payload shapes as documented on zigbee2mqtt.io for each device's "exposes".
AQARA_RTCGQ11LM = {
    "occupancy": True,
    "illuminance": 120,
    "illuminance_lux": 120,
    "battery": 91,
    "voltage": 3005,
    "device_temperature": 24,
    "power_outage_count": 3,
    "linkquality": 117,
}
AQARA_MCCGQ11LM = {
    "contact": False,
    "battery": 100,
    "voltage": 3055,
    "device_temperature": 22,
    "linkquality": 96,
}
AQARA_WXKG11LM = {"action": "single", "battery": 100, "voltage": 3042, "linkquality": 39}
PLUG_TS011F = {
    "state": "ON",
    "power": 1843.2,
    "current": 8.1,
    "voltage": 229,
    "energy": 12.7,
    "linkquality": 150,
}
TUYA_TS0203 = {"contact": True, "battery_low": True, "tamper": False, "voltage": 2900, "linkquality": 80}
AQARA_WSDCGQ11LM = {
    "temperature": 21.85,
    "humidity": 48.3,
    "pressure": 1012.5,
    "battery": 12,
    "voltage": 2870,
}


def _driver(devices: dict[str, DeviceMap]) -> Zigbee2MqttDriver:
    gw = gw_file(gateway(Path("/tmp"), "r", 1883))
    # every state passes here (mapping only); throttling of unchanged states: test_edge_zigbee2mqtt.py
    return Zigbee2MqttDriver("z2m", Zigbee2MqttOptions(devices=devices, binary_heartbeat_s=0), gw)


def test_zigbee2mqtt_maps_real_device_payloads() -> None:
    d = _driver(
        {
            "kitchen_motion": DeviceMap(sensor="pir-kitchen", kind="pir"),
            "front_door": DeviceMap(sensor="door-front", kind="door"),
            "sos_button": DeviceMap(sensor="sos-1", kind="sos"),
            "pendant": DeviceMap(
                sensor="wearable-1", kind="wearable", actions={"single": "ok", "hold": "sos"}
            ),
            "kettle": DeviceMap(sensor="plug-kettle", kind="plug"),
            "climate": DeviceMap(sensor="env-1", kind="env"),
            "bed_mat": DeviceMap(sensor="bed-1", kind="bed", fields={"contact": "in_bed"}),
        }
    )
    enc = msgspec.json.encode
    assert d.handle("zigbee2mqtt/kitchen_motion", enc(AQARA_RTCGQ11LM)) == [
        Sample("pir-kitchen", "motion", 1.0),
        Health("pir-kitchen", battery=0.91),
    ]
    assert d.handle("zigbee2mqtt/kitchen_motion", enc({**AQARA_RTCGQ11LM, "occupancy": False}))[0] == Sample(
        "pir-kitchen", "motion", 0.0
    )
    # contact=false means the magnet is away: the door is open (1.0)
    assert d.handle("zigbee2mqtt/front_door", enc(AQARA_MCCGQ11LM))[0] == Sample("door-front", "contact", 1.0)
    assert d.handle("zigbee2mqtt/front_door", enc({**AQARA_MCCGQ11LM, "contact": True}))[0].value == 0.0
    assert Action("sos-1", "sos") in d.handle("zigbee2mqtt/sos_button", enc(AQARA_WXKG11LM))
    assert Action("sos-1", "sos") in d.handle(
        "zigbee2mqtt/sos_button", enc({**AQARA_WXKG11LM, "action": "double"})
    )
    assert not any(
        isinstance(i, Action) for i in d.handle("zigbee2mqtt/sos_button", enc({"action": "release"}))
    )
    assert not any(isinstance(i, Action) for i in d.handle("zigbee2mqtt/sos_button", enc({"action": ""})))
    assert Action("wearable-1", "ok") in d.handle("zigbee2mqtt/pendant", enc(AQARA_WXKG11LM))
    assert Action("wearable-1", "sos") in d.handle("zigbee2mqtt/pendant", enc({"action": "hold"}))
    assert d.handle("zigbee2mqtt/kettle", enc(PLUG_TS011F)) == [Sample("plug-kettle", "power", 1843.2)]
    env = d.handle("zigbee2mqtt/climate", enc(AQARA_WSDCGQ11LM))
    assert Sample("env-1", "temperature", 21.85) in env and Sample("env-1", "humidity", 48.3) in env
    assert Health("env-1", battery=0.12) in env
    assert d.handle("zigbee2mqtt/bed_mat", enc({"contact": True, "battery": 80}))[0] == Sample(
        "bed-1", "in_bed", 1.0
    )
    # a door sensor that reports only a low-battery flag (Tuya TS0203), and one with both
    assert d.handle("zigbee2mqtt/front_door", enc(TUYA_TS0203)) == [
        Sample("door-front", "contact", 0.0),
        Health("door-front", battery_low=True),
    ]
    assert d.handle("zigbee2mqtt/front_door", enc({"battery": 64, "battery_low": False})) == [
        Health("door-front", battery=0.64, battery_low=False)
    ]
    assert d.handle("zigbee2mqtt/front_door", enc({"battery_low": "yes"})) == []  # not a boolean
    # availability, new style and legacy
    assert d.handle("zigbee2mqtt/kitchen_motion/availability", b'{"state":"offline"}') == [
        Health("pir-kitchen", online=False, via="zigbee2mqtt")
    ]
    assert d.handle("zigbee2mqtt/kitchen_motion/availability", b"online") == [
        Health("pir-kitchen", online=True, via="zigbee2mqtt")
    ]
    # what is not ours (a bridge that says it is online, as it was: nothing new)
    assert d.handle("zigbee2mqtt/bridge/state", b'{"state":"online"}') == []
    assert d.handle("zigbee2mqtt/kitchen_motion/set", b'{"x":1}') == []
    assert d.handle("zigbee2mqtt/unknown_device", enc(AQARA_RTCGQ11LM)) == []
    assert d.handle("zigbee2mqtt/kitchen_motion", b"not json") == []


# config and drivers ---------------------------------------------------------------------------


def test_gateway_file_loads_and_resolves_paths(tmp_path: Path) -> None:
    raw = gateway(tmp_path, "eldercare/v1", 1883, outbox={"path": "state/ob.sqlite3"})
    del raw["broker"]["client_id"]  # the default
    gw = load_gateway_file(write_toml(tmp_path / "gateway.toml", raw))
    assert gw.outbox.path == tmp_path / "state" / "ob.sqlite3"
    assert gw.initial_config().telemetry_batch_ms == 100
    assert gw.client_id == "home-1-gw-1"


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"site": "bad site"}, "site"),
        ({"gateway": "gw-1\n"}, "gateway"),  # "$" in the pattern would let a final newline pass
        ({"broker": {"url": "http://x"}}, "broker.url"),
        ({"config": {"telemetry_batch_max": 0}}, "telemetry_batch_max"),
        ({"sensors": [{"id": "a", "kind": "pir"}, {"id": "a", "kind": "door"}]}, "duplicate"),
    ],
)
def test_gateway_file_errors_are_one_line(tmp_path: Path, change: dict[str, object], words: str) -> None:
    raw = gateway(tmp_path, "eldercare/v1", 1883, **change)
    with pytest.raises(GatewayConfigError, match=words) as exc:
        load_gateway_file(write_toml(tmp_path / "gateway.toml", raw))
    assert "\n" not in str(exc.value)


def test_examples_gateway_toml_is_valid() -> None:
    gw = load_gateway_file(Path(__file__).resolve().parents[1] / "examples" / "gateway.toml")
    assert [driver_class(d.type).__name__ for d in gw.drivers] == ["Zigbee2MqttDriver", "SimulatedDriver"]
    # the account to uncomment is the one `eldercare gateways add SITE GATEWAY` creates: the gateway
    # id (it read "home-001-gw-001", which the broker refuses)
    text = (Path(__file__).resolve().parents[1] / "examples" / "gateway.toml").read_text()
    assert re.search(r'^# username = "([^"]+)"', text, re.M)[1] == gw.gateway  # type: ignore[index]


def test_drivers_are_found_by_name_and_options_validated(tmp_path: Path) -> None:
    gw = gw_file(gateway(tmp_path, "r", 1883))
    with pytest.raises(DriverError, match="unknown driver"):
        driver_class("no_such_driver")
    entry = DriverEntry.from_table({"type": "simulated", "bogus": 1})
    with pytest.raises(DriverError, match="bogus"):
        load_driver(entry, gw)
    # a third-party driver by "module:Class", touching nothing in eldercare
    custom = DriverEntry.from_table({"type": "eldercare.edge.drivers.simulated:SimulatedDriver"})
    assert load_driver(custom, gw).name == "eldercare.edge.drivers.simulated:SimulatedDriver"


def test_third_party_driver_options_may_be_a_pydantic_model(tmp_path: Path) -> None:
    """The shipped drivers use msgspec; a third party's pydantic ``Options`` still validate."""
    from pydantic import BaseModel, Field

    from eldercare.edge.drivers import driver_options
    from eldercare.edge.drivers.simulated import SimulatedDriver

    class Opts(BaseModel):
        port: str = "/dev/ttyUSB0"
        baud: int = Field(default=9600, gt=0)

    class SerialDriver(SimulatedDriver):
        Options = Opts

    assert driver_options(SerialDriver, {"baud": 115200}, "serial") == Opts(baud=115200)
    with pytest.raises(DriverError, match="driver serial: baud"):
        driver_options(SerialDriver, {"baud": 0}, "serial")
    with pytest.raises(DriverError, match=r"driver sim: counter\.rate_hz"):
        driver_options(SimulatedDriver, {"counter": {"rate_hz": 0}}, "sim")


def test_edge_imports_without_server_libraries(tmp_path: Path) -> None:
    """A gateway has only eldercare[edge]: the agent must import and detect falls without them."""
    code = """
import sys
for name in ("psycopg", "psycopg_pool", "fastapi", "sklearn", "skops", "sqlalchemy", "alembic",
             "uvicorn", "orjson", "scipy", "pandas", "jinja2", "httpx", "starlette"):
    sys.modules[name] = None
import eldercare.edge.agent, eldercare.edge.cli, eldercare.edge.drivers.zigbee2mqtt
import eldercare.edge.drivers.simulated
from eldercare.edge.falls import open_stream
stream, name = open_stream("auto")
print(name)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    # the shipped model needs numpy only: blocking the server libraries must not change which
    # detector runs (the threshold rule only when the model itself cannot be loaded)
    from eldercare.models.fall import FallDetector, FallModelError

    try:
        FallDetector.pretrained()
        expected = "pretrained"
    except FallModelError:
        expected = "threshold"
    assert out.stdout.strip().splitlines()[-1] == expected


# what a gateway must never load: server libraries, and pydantic (~7 MB RSS; docs/edge.md)
HEAVY = [
    "sklearn",
    "scipy",
    "fastapi",
    "starlette",
    "uvicorn",
    "psycopg",
    "psycopg_pool",
    "sqlalchemy",
    "alembic",
    "skops",
    "orjson",
    "jinja2",
    "httpx",
    "pandas",
    "matplotlib",
    "pydantic",
    "pydantic_settings",
    "pydantic_core",
]


def test_edge_run_path_imports_no_heavy_module() -> None:
    """``eldercare edge run`` up to a running fall stream loads none of HEAVY (they are installed)."""
    code = """
import json, sys
from eldercare.cli import cli
try:
    cli(["edge", "run", "--help"], prog_name="eldercare", standalone_mode=False)
except SystemExit:
    pass
import eldercare.edge.agent, eldercare.edge.drivers.simulated, eldercare.edge.drivers.zigbee2mqtt
from eldercare.edge.config import build_gateway_file
from eldercare.edge.falls import open_stream
build_gateway_file({"site": "s", "gateway": "g", "drivers": [{"type": "simulated"}]})
open_stream("auto")
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert {"numpy", "paho", "msgspec", "sqlite3"} <= loaded  # what the agent really needs
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))


def test_cli_check_and_bad_file(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from eldercare.cli import cli

    path = write_toml(tmp_path / "gateway.toml", gateway(tmp_path, "eldercare/v1", 1883))
    res = CliRunner().invoke(cli, ["edge", "check", "--config", str(path)])
    assert res.exit_code == 0, res.output
    assert "home-1/gw-1" in res.output
    res = CliRunner().invoke(cli, ["edge", "run", "--config", str(tmp_path / "missing.toml")])
    assert res.exit_code == 1 and "no such gateway file" in res.output


def test_status_and_events_match_the_published_schemas() -> None:
    """Edge payloads decode with the protocol module (what ingest uses)."""
    status = {"v": 1, "t": T0, "state": "online", "sensors": {"pir-1": {"battery": 0.5}}, "clock_ok": False}
    assert isinstance(protocol.decode("status", json.dumps(status)), protocol.Status)


def test_seal_batches_in_one_commit_and_rollback_restores_counters(tmp_path: Path) -> None:
    import sqlite3

    ob = Outbox(tmp_path / "o.sqlite3")
    ob.add_readings([(T0 + i, "pir-1", "motion", 1.0) for i in range(120)])
    real = ob._insert
    calls = {"n": 0}

    def failing(*a: object) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise sqlite3.OperationalError("disk I/O error")
        real(*a)  # type: ignore[arg-type]

    ob._insert = failing  # type: ignore[method-assign]
    with pytest.raises(sqlite3.OperationalError):
        ob.seal_batches(50, T0)
    assert (ob.next_seq, ob.n_pending, ob.n_messages) == (0, 120, 0)  # nothing half-done
    ob._insert = real  # type: ignore[method-assign]
    assert ob.seal_batches(50, T0, partial=False) == [(0, 50), (1, 50)]
    assert ob.n_pending == 20
    assert ob.seal_batches(50, T0) == [(2, 20)]
    ob.close()
    ob = Outbox(tmp_path / "o.sqlite3")
    assert (ob.next_seq, ob.n_pending, ob.n_messages) == (3, 0, 3)
