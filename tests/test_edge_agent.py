"""The edge agent against a real Mosquitto: outages, SOS priority, remote config, check-ins,
clock, status and the zigbee2mqtt bridge. Each test has its own topic root."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from edge_support import Mosquitto, Subscriber, gateway, gw_file

from eldercare.edge import checkin
from eldercare.edge.agent import Agent
from eldercare.edge.drivers import AccChunk, Action, Health, Sample
from eldercare.edge.drivers.simulated import SimulatedDriver
from eldercare.edge.drivers.zigbee2mqtt import Zigbee2MqttDriver

pytestmark = pytest.mark.timeout(60)
pytest_plugins = ["edge_fixtures"]  # fixtures: edge_broker, edge_root, private_broker


class MarkerStream:
    """Stands in for the fall model: a fall (confidence 0.9) wherever |acc| passes 5 g."""

    def push(self, t: np.ndarray, acc: np.ndarray) -> list[Any]:
        idx = np.flatnonzero(np.linalg.norm(acc, axis=1) > 5)
        return [SimpleNamespace(t=float(t[i]), confidence=0.9) for i in idx[:1]]


def run_agent(raw: dict[str, Any], **kw: Any) -> Agent:
    agent = Agent(gw_file(raw), **kw)
    agent.start()
    assert agent.connected_once.wait(10), "agent did not connect"
    return agent


def sim(agent: Agent) -> SimulatedDriver:
    d = agent.driver("sim")
    assert isinstance(d, SimulatedDriver)
    return d


def dedup(
    sub: Subscriber, kinds: tuple[str, ...] = ("telemetry", "event")
) -> tuple[list[dict[str, Any]], int]:
    """Messages by first arrival, checking that any redelivery is byte-for-byte the same."""
    first: dict[int, dict[str, Any]] = {}
    dupes = 0
    for kind, p in list(sub.messages):
        if kind in kinds:
            if p["seq"] in first:
                assert first[p["seq"]] == p, "a redelivered seq must carry the same contents"
                dupes += 1
            else:
                first[p["seq"]] = p
    return list(first.values()), dupes


def wait_until(pred: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def stopper() -> Any:
    agents: list[Agent] = []
    yield agents.append
    for a in agents:
        a.stop()


def test_broker_outage_every_seq_once_and_in_order(
    private_broker: Mosquitto, tmp_path: Path, edge_root: str, stopper: Any
) -> None:
    sub = Subscriber("127.0.0.1", private_broker.port, edge_root, client_id=f"sub-{tmp_path.name}"[:60])
    raw = gateway(
        tmp_path,
        edge_root,
        private_broker.port,
        config={"telemetry_batch_max": 20, "telemetry_batch_ms": 50, "heartbeat_s": 3600},
    )
    n = 900
    raw["drivers"] = [
        {"type": "simulated", "name": "sim", "counter": {"sensor": "counter-1", "rate_hz": 300, "limit": n}}
    ]
    agent = run_agent(raw)
    stopper(agent)
    assert sub.wait_for(lambda s: len(s.of("telemetry")) >= 3)
    private_broker.stop()  # the uplink is cut while readings keep coming
    assert wait_until(lambda: not agent.connected, 5)
    time.sleep(1.0)
    private_broker.start()

    def all_arrived(s: Subscriber) -> bool:
        return any(
            r["sensor"] == "counter-1" and r["value"] == n - 1
            for p in s.of("telemetry")
            for r in p["readings"]
        )

    assert sub.wait_for(all_arrived, 20)
    time.sleep(0.3)
    msgs, dupes = dedup(sub)
    seqs = [p["seq"] for p in msgs]
    assert seqs == list(range(len(seqs))), "every seq once, in order, no gap"
    values = [r["value"] for p in msgs for r in p.get("readings", []) if r["sensor"] == "counter-1"]
    assert values == [float(i) for i in range(n)]
    assert len({p["epoch"] for p in msgs}) == 1
    print(f"outage test: {len(seqs)} messages, {dupes} redeliveries (QoS 1), none lost")
    sub.close()


def test_sos_goes_ahead_of_a_telemetry_backlog(
    private_broker: Mosquitto, tmp_path: Path, edge_root: str, stopper: Any
) -> None:
    sub = Subscriber("127.0.0.1", private_broker.port, edge_root, client_id=f"sub-{tmp_path.name}"[:60])
    raw = gateway(
        tmp_path, edge_root, private_broker.port, config={"telemetry_batch_max": 10, "telemetry_batch_ms": 20}
    )
    agent = run_agent(raw)
    stopper(agent)
    assert sub.wait_for(lambda s: bool(s.of("telemetry")))  # the start-up heartbeat is through
    time.sleep(0.2)
    before = len(sub.messages)
    private_broker.stop()
    assert wait_until(lambda: not agent.connected, 5)
    sim(agent).feed_many(Sample("pir-kitchen", "motion", float(i % 2)) for i in range(300))
    assert wait_until(lambda: agent.outbox.n_messages >= 30, 5)  # 30 telemetry messages on disk
    sim(agent).feed(Action("sos-1", "sos"))
    assert wait_until(lambda: agent.outbox.n_messages >= 31, 5)  # the SOS behind them
    private_broker.start()
    assert sub.wait_for(lambda s: len(s.of("telemetry")) >= 31 and s.of("event"), 15)
    arrived = [(k, p) for k, p in sub.messages[before:] if k in ("telemetry", "event")]
    kind, sos = arrived[0]
    assert kind == "event" and sos["kind"] == "sos" and sos["resident"] == "res-1"
    # the 30 batches sealed before the press, with lower seqs, all arrived after it
    overtaken = [p["seq"] for k, p in arrived[1:] if k == "telemetry" and p["seq"] < sos["seq"]]
    assert len(set(overtaken)) == 30
    sub.close()


def test_remote_config_invalid_refused_valid_applied_without_restart(
    edge_broker: tuple[str, int], tmp_path: Path, edge_root: str, stopper: Any
) -> None:
    host, port = edge_broker
    sub = Subscriber(host, port, edge_root)
    agent = run_agent(gateway(tmp_path, edge_root, port, host=host))
    stopper(agent)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    pub.connect(host, port)
    pub.loop_start()
    topic = f"{edge_root}/home-1/gw-1/config"
    try:
        bad = b'{"v": 1, "revision": 1, "telemetry_batch_max": 0}'
        pub.publish(topic, bad, qos=1, retain=True).wait_for_publish(5)
        assert sub.wait_for(lambda s: any(e["kind"] == "config_rejected" for e in s.of("event")))
        rejected = next(e for e in sub.of("event") if e["kind"] == "config_rejected")
        assert rejected["evidence"]["field"] == "telemetry_batch_max"
        assert rejected["evidence"]["kept_revision"] == 0
        assert agent.config.telemetry_batch_max == 50  # the old config is kept
        # the retained status says which revision is in force and why the push was refused
        assert sub.wait_for(lambda s: any(st.get("config_error") for st in s.of("status")))
        refused = next(st for st in sub.of("status") if st.get("config_error"))
        assert refused["config_revision"] == 0
        assert refused["config_error"].startswith("revision 1: telemetry_batch_max")
        good = (
            b'{"v": 1, "revision": 2, "telemetry_batch_max": 7, "telemetry_batch_ms": 60000,'
            b' "heartbeat_s": 3600,'
            b' "sensors": [{"id": "pir-kitchen", "kind": "pir", "room": "kitchen"}]}'
        )
        pub.publish(topic, good, qos=1, retain=True).wait_for_publish(5)
        assert wait_until(lambda: agent.config.revision == 2)
        assert sub.wait_for(
            lambda s: any(
                st.get("config_revision") == 2 and st["config_error"] is None for st in s.of("status")
            )
        )
        sim(agent).feed_many(Sample("pir-kitchen", "motion", 1.0) for _ in range(7))
        # a batch of exactly 7, long before the new 60 s time bound: the new size bound is in force
        assert sub.wait_for(lambda s: any(len(p["readings"]) == 7 for p in s.of("telemetry")), 5)
    finally:
        pub.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)


def test_a_gateway_registered_again_applies_the_new_registrations_revision_0(
    edge_broker: tuple[str, int], tmp_path: Path, edge_root: str
) -> None:
    """Protocol section 8: revisions count within one registration. A gateway deleted and
    registered again (moved to another site, given new credentials) gets revision 0; the agent
    kept the last registration's config (revision 2) across the restart with its new password and
    refused revision 0 and everything after it up to 2."""
    host, port = edge_broker
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    pub.connect(host, port)
    pub.loop_start()
    topic = f"{edge_root}/home-1/gw-1/config"
    first = gateway(tmp_path, edge_root, port, host=host, broker={"password": "registration-one"})
    try:
        pub.publish(
            topic, b'{"v": 1, "revision": 2, "heartbeat_s": 600}', qos=1, retain=True
        ).wait_for_publish(5)
        agent = run_agent(first)
        assert wait_until(lambda: agent.config.revision == 2)
        agent.stop()
        agent = run_agent(first)  # the same registration restarted: its config is kept
        assert agent.config.revision == 2
        # a config of thresholds only keeps the gateway file's sensors across the restart too
        assert set(agent.sensors) == {s["id"] for s in first["sensors"]}
        agent.stop()
        pub.publish(
            topic, b'{"v": 1, "revision": 0, "heartbeat_s": 900}', qos=1, retain=True
        ).wait_for_publish(5)
        agent = run_agent(
            gateway(tmp_path, edge_root, port, host=host, broker={"password": "registration-two"})
        )
        try:
            assert wait_until(lambda: agent.config.heartbeat_s == 900), agent.config
            assert agent.config.revision == 0 and agent.config_error is None
        finally:
            agent.stop()
    finally:
        pub.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
        pub.loop_stop()
        pub.disconnect()


def test_fall_checkin_cancelled_then_unanswered_fall_with_context(
    edge_broker: tuple[str, int],
    tmp_path: Path,
    edge_root: str,
    stopper: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(checkin, "SETTLE_S", 0.1)
    host, port = edge_broker
    sub = Subscriber(host, port, edge_root)
    raw = gateway(tmp_path, edge_root, port, host=host, config={"checkin_window_s": 1, "heartbeat_s": 3600})
    agent = run_agent(raw, fall_stream=MarkerStream)
    stopper(agent)
    d = sim(agent)
    t = np.arange(50) / 50.0
    fall = np.tile([0.0, 0.0, 1.0], (50, 1))
    fall[25] = [6.0, 1.0, 2.0]  # the impact
    d.feed(Sample("pir-kitchen", "motion", 1.0))
    d.feed(AccChunk("wearable-1", t, fall))
    assert wait_until(lambda: len(d.prompts) == 1, 5)
    d.feed(Action("wearable-1", "ok"))  # "I'm fine"
    assert sub.wait_for(lambda s: any(e["kind"] == "fall_cancelled" for e in s.of("event")))
    cancelled = next(e for e in sub.of("event") if e["kind"] == "fall_cancelled")
    assert cancelled["evidence"]["checkin"]["answered_by"] == "wearable-1"
    assert cancelled["resident"] == "res-1" and cancelled["confidence"] == 0.9
    # the answer closed the check-in: nothing is left whose deadline could still report a fall
    assert not agent.checkins.open and agent.checkins.next_deadline() is None
    assert not any(e["kind"] == "fall" for e in sub.of("event")), "a cancelled check-in is not a fall"
    time.sleep(
        0.6
    )  # not a deadline: the next impact (0.48 s before its chunk) must follow the kitchen motion

    d.feed(AccChunk("wearable-1", t + 1.0, fall))
    time.sleep(0.3)
    d.feed(Sample("pir-bedroom", "motion", 1.0))  # someone walks about elsewhere after the impact
    assert sub.wait_for(lambda s: any(e["kind"] == "fall" for e in s.of("event")), 5)
    ev = next(e for e in sub.of("event") if e["kind"] == "fall")
    assert ev["confidence"] == pytest.approx(0.45)
    assert ev["evidence"]["context"]["room"] == "kitchen"
    assert ev["evidence"]["context"]["motion_elsewhere"] == ["bedroom"]
    acc = ev["evidence"]["acc"]
    # both chunks lie within -5 s..+10 s of the second impact: 100 samples, the impact among them
    assert acc["unit"] == "mg" and len(acc["x"]) == len(acc["y"]) == len(acc["z"]) == 100
    assert acc["x"][75] == 6000 and acc["z"][0] == 1000
    assert ev["t"] - 5000 <= acc["t0"] <= ev["t"] - 500
    # raw 50 Hz stays local by default
    assert not any(r["metric"].startswith("acc_") for p in sub.of("telemetry") for r in p["readings"])
    sub.close()


def test_status_online_with_batteries_heartbeat_and_offline(
    edge_broker: tuple[str, int], tmp_path: Path, edge_root: str
) -> None:
    host, port = edge_broker
    sub = Subscriber(host, port, edge_root)
    agent = run_agent(gateway(tmp_path, edge_root, port, host=host))
    sim(agent).feed(Health("wearable-1", battery=0.42))
    assert sub.wait_for(
        lambda s: any(p["sensors"].get("wearable-1", {}).get("battery") == 0.42 for p in s.of("status")), 6
    )
    online = sub.of("status")[-1]
    assert online["state"] == "online" and online["clock_ok"] is True
    # a device that only says "battery low" (zigbee2mqtt battery_low): one low_battery event
    for _ in range(3):
        sim(agent).feed(Health("pir-kitchen", battery_low=True))
    assert sub.wait_for(lambda s: any(e["kind"] == "low_battery" for e in s.of("event")), 6)
    low = [e for e in sub.of("event") if e["kind"] == "low_battery"]
    assert [(e["sensor"], e["evidence"]) for e in low] == [("pir-kitchen", {"battery_low": True})]
    assert sub.wait_for(
        lambda s: any(
            r["metric"] == "heartbeat" and r["sensor"] == "gw-1"
            for p in s.of("telemetry")
            for r in p["readings"]
        )
    )
    # a late subscriber sees the retained status
    late = Subscriber(host, port, edge_root)
    assert late.wait_for(lambda s: bool(s.of("status")), 5)
    agent.stop()
    assert sub.wait_for(lambda s: s.of("status")[-1]["state"] == "offline", 5)
    late.close()
    sub.close()


def test_heartbeat_follows_the_agents_injected_clock(
    edge_broker: tuple[str, int], tmp_path: Path, edge_root: str, stopper: Any
) -> None:
    host, port = edge_broker
    sub = Subscriber(host, port, edge_root)
    clock = {"t": 1000.0}
    wall0 = time.time()
    raw = gateway(tmp_path, edge_root, port, host=host, config={"heartbeat_s": 60, "telemetry_batch_max": 1})
    agent = run_agent(raw, mono=lambda: clock["t"], wall=lambda: wall0 + clock["t"] - 1000.0)
    stopper(agent)

    def values(s: Subscriber, sensor: str) -> list[float]:
        return [r["value"] for p in s.of("telemetry") for r in p["readings"] if r["sensor"] == sensor]

    assert sub.wait_for(lambda s: values(s, "gw-1") == [0.0])  # the one at start
    clock["t"] += 59.0
    sim(agent).feed(Sample("pir-kitchen", "motion", 1.0))  # a turn at 59 s: proof it had its chance
    assert sub.wait_for(lambda s: values(s, "pir-kitchen") == [1.0])
    assert values(sub, "gw-1") == [0.0]
    clock["t"] += 2.0
    sim(agent).feed(Sample("pir-kitchen", "motion", 0.0))
    assert sub.wait_for(lambda s: values(s, "gw-1") == [0.0, 61.0])
    sub.close()


def test_bad_clock_reported_and_readings_held_until_it_is_good(
    edge_broker: tuple[str, int], tmp_path: Path, edge_root: str, stopper: Any
) -> None:
    host, port = edge_broker
    sub = Subscriber(host, port, edge_root)
    wall = {"offset": -time.time()}  # the clock reads 1970
    agent = run_agent(
        gateway(tmp_path, edge_root, port, host=host), wall=lambda: time.time() + wall["offset"]
    )
    stopper(agent)
    assert sub.wait_for(lambda s: any(p["clock_ok"] is False for p in s.of("status")), 5)
    before = int(time.time() * 1000)
    sim(agent).feed_many(Sample("pir-kitchen", "motion", 1.0) for _ in range(5))
    held = lambda: [e for e in list(agent.held) if e[0] == "r" and e[2][0] == "pir-kitchen"]  # noqa: E731
    assert wait_until(lambda: len(held()) == 5, 5)  # handled, and held
    assert not any(r["sensor"] == "pir-kitchen" for p in sub.of("telemetry") for r in p["readings"])
    wall["offset"] = 0.0  # NTP answered
    assert sub.wait_for(lambda s: any(e["kind"] == "clock_error" for e in s.of("event")), 5)
    assert sub.wait_for(
        lambda s: sum(r["sensor"] == "pir-kitchen" for p in s.of("telemetry") for r in p["readings"]) == 5, 5
    )
    ts = [r["t"] for p in sub.of("telemetry") for r in p["readings"] if r["sensor"] == "pir-kitchen"]
    assert all(before - 100 <= t <= before + 600 for t in ts), "held readings get their true time"
    err = next(e for e in sub.of("event") if e["kind"] == "clock_error")
    assert "before" in err["evidence"]["reason"]
    sub.close()


@pytest.mark.mqtt5  # fails on the embedded amqtt broker ("client is not currently connected")
def test_zigbee2mqtt_bridge_end_to_end(
    edge_broker: tuple[str, int], tmp_path: Path, edge_root: str, stopper: Any
) -> None:
    host, port = edge_broker
    sub = Subscriber(host, port, edge_root)
    base = f"{edge_root}/z2m"
    raw = gateway(tmp_path, edge_root, port, host=host)
    raw["drivers"] = [
        {
            "type": "zigbee2mqtt",
            "url": f"mqtt://{host}:{port}",
            "base_topic": base,
            "devices": {
                "kitchen_motion": {"sensor": "pir-kitchen", "kind": "pir"},
                "sos_button": {"sensor": "sos-1", "kind": "sos"},
            },
        }
    ]
    agent = run_agent(raw)
    stopper(agent)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    pub.connect(host, port)
    pub.loop_start()
    try:
        bridge = agent.drivers[0]
        assert isinstance(bridge, Zigbee2MqttDriver)
        assert bridge.subscribed.wait(5), "the driver never subscribed to the bridge's topics"
        pub.publish(
            f"{base}/kitchen_motion",
            b'{"occupancy":true,"illuminance_lux":40,"battery":77,"voltage":2995,"linkquality":90}',
            qos=1,
        ).wait_for_publish(5)
        pub.publish(
            f"{base}/sos_button", b'{"action":"single","battery":100,"voltage":3042,"linkquality":39}', qos=1
        ).wait_for_publish(5)
        assert sub.wait_for(lambda s: any(e["kind"] == "sos" for e in s.of("event")), 5)
        assert sub.wait_for(
            lambda s: any(
                r["sensor"] == "pir-kitchen" and r["metric"] == "motion" and r["value"] == 1.0
                for p in s.of("telemetry")
                for r in p["readings"]
            ),
            5,
        )
        assert sub.wait_for(
            lambda s: any(p["sensors"].get("pir-kitchen", {}).get("battery") == 0.77 for p in s.of("status")),
            6,
        )
    finally:
        pub.disconnect()
        pub.loop_stop()
        sub.close()


def test_reconnect_backs_off_as_scheduled_with_jitter(tmp_path: Path, edge_root: str) -> None:
    """Against a port where nothing listens, each failed attempt picks the next wait of the
    schedule (tests/test_edge_units.py checks the schedule itself); waits on the attempts, not
    on a clock."""
    from edge_support import free_port

    from eldercare.edge.connection import backoff_delay

    broker = {
        "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.4,
        "reconnect_fast_max_s": 0.1,
        "reconnect_fast_attempts": 2,
    }
    raw = gateway(tmp_path, edge_root, free_port(), broker=broker)
    gw = gw_file(raw)
    agent = Agent(gw, rand=lambda: 0.5)  # jitter factor 0.75
    agent.start()
    try:
        assert wait_until(lambda: hasattr(agent, "uplink") and len(agent.uplink.delays) >= 5, 20)
        expected = [backoff_delay(gw.broker, n, 0.5) for n in range(5)]
        assert agent.uplink.delays[:5] == pytest.approx(expected)
        assert expected == pytest.approx([0.0375, 0.075, 0.15, 0.3, 0.3])
        assert not agent.connected_once.is_set()
    finally:
        agent.stop()


def test_raw_stream_only_when_configured(
    edge_broker: tuple[str, int], tmp_path: Path, edge_root: str, stopper: Any
) -> None:
    host, port = edge_broker
    sub = Subscriber(host, port, edge_root)
    agent = run_agent(gateway(tmp_path, edge_root, port, host=host), fall_stream=MarkerStream)
    stopper(agent)
    t = np.arange(50) / 50.0
    still = np.tile([0.01, -0.02, 0.98], (50, 1))
    sim(agent).feed(AccChunk("wearable-1", t, still))
    sim(agent).feed(Sample("pir-kitchen", "motion", 1.0))
    assert sub.wait_for(
        lambda s: any(r["sensor"] == "pir-kitchen" for p in s.of("telemetry") for r in p["readings"])
    )
    assert not any(r["metric"].startswith("acc_") for p in sub.of("telemetry") for r in p["readings"])
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    pub.connect(host, port)
    topic = f"{edge_root}/home-1/gw-1/config"
    # thresholds only: the sensors of the gateway file are kept
    pub.publish(topic, b'{"v": 1, "revision": 1, "stream_raw_acc": true, "telemetry_batch_ms": 100}', qos=1)
    pub.loop(1)
    assert wait_until(lambda: agent.config.stream_raw_acc)
    assert agent.config.sensors and agent.sensors["wearable-1"].resident == "res-1"
    sim(agent).feed(AccChunk("wearable-1", t + 1, still))

    def raw(s: Subscriber) -> list[dict[str, Any]]:
        return [r for p in s.of("telemetry") for r in p["readings"] if r["metric"].startswith("acc_")]

    assert sub.wait_for(lambda s: len(raw(s)) == 150, 5)
    z = [r for r in raw(sub) if r["metric"] == "acc_z"]
    assert [r["value"] for r in z] == [0.98] * 50
    assert z[-1]["t"] - z[0]["t"] == pytest.approx(980, abs=2)  # 49 samples at 50 Hz
    pub.publish(topic, b"", qos=1, retain=True)
    pub.loop(1)
    pub.disconnect()
    sub.close()


def test_outbox_write_errors_are_retried_not_fatal(
    edge_broker: tuple[str, int], tmp_path: Path, edge_root: str, stopper: Any
) -> None:
    import sqlite3

    host, port = edge_broker
    sub = Subscriber(host, port, edge_root)
    agent = run_agent(gateway(tmp_path, edge_root, port, host=host))
    stopper(agent)
    real_add, real_event = agent.outbox.add_readings, agent.outbox.add_event
    failures = {"n": 0}

    def flaky(*a: Any, **k: Any) -> Any:
        if failures["n"] < 3:
            failures["n"] += 1
            raise sqlite3.OperationalError("database or disk is full")
        return real_add(*a, **k)

    def flaky_event(*a: Any, **k: Any) -> Any:
        if failures["n"] < 3:
            raise sqlite3.OperationalError("database or disk is full")
        return real_event(*a, **k)

    agent.outbox.add_readings = flaky  # type: ignore[method-assign]
    agent.outbox.add_event = flaky_event  # type: ignore[method-assign]
    sim(agent).feed_many(Sample("pir-kitchen", "motion", float(i)) for i in range(10))
    sim(agent).feed(Action("sos-1", "sos"))
    assert sub.wait_for(lambda s: any(e["kind"] == "sos" for e in s.of("event")), 10)
    assert sub.wait_for(
        lambda s: (
            [r["value"] for p in s.of("telemetry") for r in p["readings"] if r["sensor"] == "pir-kitchen"]
            == [float(i) for i in range(10)]
        ),
        10,
    )
    assert failures["n"] == 3 and agent.error is None
    sub.close()


def test_wearable_put_down_reports_not_worn_then_worn_again(
    edge_broker: tuple[str, int], tmp_path: Path, edge_root: str, stopper: Any
) -> None:
    """A wearable lying still as a table for a minute is ``not_worn`` in the status (never a fall);
    breathing micro-motion again (put back on) makes it ``worn``."""
    host, port = edge_broker
    sub = Subscriber(host, port, edge_root)
    clock = {"t": 1000.0}
    raw = gateway(tmp_path, edge_root, port, host=host, config={"heartbeat_s": 3600})
    agent = run_agent(raw, fall_stream=MarkerStream, mono=lambda: clock["t"])
    stopper(agent)
    rng = np.random.default_rng(3)
    t1 = np.arange(50) / 50.0

    def chunk(i: int, worn: bool) -> AccChunk:
        t = i + t1
        acc = np.tile([0.02, -0.03, 0.999], (50, 1)) + rng.normal(0, 0.002, (50, 3))
        if worn:  # breathing lifts the chest by ~6 mg at 0.25 Hz
            acc[:, 2] += 0.006 * np.sin(2 * np.pi * 0.25 * t)
            acc[:, 0] += 0.004 * np.sin(2 * np.pi * 0.25 * t + 1.0)
        return AccChunk("wearable-1", t, acc)

    def wear(s: Subscriber) -> list[Any]:
        return [p["sensors"].get("wearable-1", {}).get("wear") for p in s.of("status")]

    def seen(pred: Any) -> bool:
        """Wait for ``pred``, moving the injected clock on meanwhile: the agent publishes a status at
        most every 2 s of its clock, and on a loaded machine it may read the chunks only after the
        feeding (and the clock) stopped, so a status it owes would otherwise wait forever."""
        for _ in range(50):
            if sub.wait_for(pred, timeout=0.2):
                return True
            clock["t"] += 1.0
        return False

    for i in range(30):
        sim(agent).feed(chunk(i, worn=True))
        clock["t"] += 1.0
    assert seen(lambda s: "worn" in wear(s))
    for i in range(30, 100):
        sim(agent).feed(chunk(i, worn=False))
        clock["t"] += 1.0
    assert seen(lambda s: "not_worn" in wear(s))
    status = next(p for p in sub.of("status") if p["sensors"].get("wearable-1", {}).get("wear") == "not_worn")
    since = status["sensors"]["wearable-1"]["not_worn_since"]
    assert since is not None and since <= status["t"] - 60_000
    for i in range(100, 110):
        sim(agent).feed(chunk(i, worn=True))
        clock["t"] += 1.0
    assert seen(lambda s: wear(s)[-1] == "worn")
    assert not any(e["kind"] == "fall" for e in sub.of("event"))
    sub.close()


def test_a_refused_config_nested_deeper_than_the_parser_is_still_reported() -> None:
    """``status.config_error`` for a payload ``[[[[...``: the reason, without a revision to read."""
    from eldercare import protocol
    from eldercare.edge.config import refusal

    deep = b'{"revision": 3, "x": ' + b"[" * 100_000
    with pytest.raises(protocol.ProtocolError) as exc:
        protocol.decode("config", deep)
    assert refusal(deep, exc.value) == f"{exc.value.field}: {exc.value.reason}"[:500]
    assert refusal(b'{"revision": 3}', exc.value).startswith("revision 3: ")
