"""zigbee2mqtt as deployed (issue 18): bridge offline, the legacy action topic, unchanged binary
states throttled, values sent as strings; the driver alone, then an agent on the real Mosquitto."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from edge_support import Subscriber, gateway, gw_file

from eldercare.edge.agent import Agent
from eldercare.edge.drivers import Action, Health, Sample
from eldercare.edge.drivers.zigbee2mqtt import DeviceMap, Zigbee2MqttDriver, Zigbee2MqttOptions
from eldercare.platform.engine import rules

pytest_plugins = ["edge_fixtures"]  # fixtures: edge_broker, edge_root

DEVICES = {
    "kitchen_motion": DeviceMap(sensor="pir-kitchen", kind="pir"),
    "front_door": DeviceMap(sensor="door-front", kind="door"),
    "sos_button": DeviceMap(sensor="sos-1", kind="sos"),
    "kettle": DeviceMap(sensor="plug-kettle", kind="plug"),
}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def driver(clock: Clock | None = None) -> Zigbee2MqttDriver:
    gw = gw_file(gateway(Path("/tmp"), "r", 1883))
    return Zigbee2MqttDriver("z2m", Zigbee2MqttOptions(devices=DEVICES), gw, clock=clock or Clock())


def enc(d: dict[str, Any]) -> bytes:
    return json.dumps(d).encode()


@pytest.mark.parametrize("offline", [b"offline", b'{"state":"offline"}'], ids=["legacy-text", "json"])
def test_bridge_offline_marks_every_device_offline_via_the_bridge(offline: bytes) -> None:
    d = driver()
    out = d.handle("zigbee2mqtt/bridge/state", offline)
    assert out[0] == Health("zigbee2mqtt", online=False)
    assert sorted(out[1:], key=lambda h: h.sensor) == [
        Health(s, online=False, via="zigbee2mqtt")
        for s in ("door-front", "pir-kitchen", "plug-kettle", "sos-1")
    ]
    assert d.handle("zigbee2mqtt/bridge/state", offline) == []  # no news, no items


def test_bridge_back_online_restores_each_devices_own_state() -> None:
    d = driver()
    d.handle("zigbee2mqtt/front_door/availability", b'{"state":"offline"}')  # dead before the outage
    d.handle("zigbee2mqtt/bridge/state", b"offline")
    # heard during the outage: remembered, not sent (the device is already offline with its bridge)
    assert d.handle("zigbee2mqtt/kettle/availability", b"offline") == []
    back = {h.sensor: h.online for h in d.handle("zigbee2mqtt/bridge/state", b'{"state":"online"}')}
    assert back == {
        "zigbee2mqtt": True,
        "pir-kitchen": True,
        "sos-1": True,
        "door-front": False,
        "plug-kettle": False,
    }


def test_the_legacy_action_topic_works() -> None:
    d = driver()
    assert d.handle("zigbee2mqtt/sos_button/action", b"single") == [Action("sos-1", "sos")]
    assert d.handle("zigbee2mqtt/sos_button/action", b"release") == []  # merely ends a hold
    # an IKEA remote used as the button: a press, a long press; brightness_stop ends the long press
    assert d.handle("zigbee2mqtt/sos_button", enc({"action": "on"})) == [Action("sos-1", "sos")]
    assert d.handle("zigbee2mqtt/sos_button/action", b"brightness_move_up") == [Action("sos-1", "sos")]
    assert d.handle("zigbee2mqtt/sos_button/action", b"brightness_stop") == []
    assert d.handle("zigbee2mqtt/sos_button/action", b"") == []
    assert d.handle("zigbee2mqtt/stranger/action", b"single") == []


def test_payloads_nested_deeper_than_the_parser_are_ignored() -> None:
    """Other people's bytes: ``[[[[...`` raised RecursionError, which in paho's thread would have
    ended the driver's loop (every device deaf)."""
    d = driver()
    deep = b'{"state": ' + b"[" * 100_000
    assert d.handle("zigbee2mqtt/bridge/state", deep) == []
    assert d.handle("zigbee2mqtt/front_door/availability", deep) == []
    assert d.handle("zigbee2mqtt/front_door", b"[" * 100_000) == []
    assert d.handle("zigbee2mqtt/sos_button/action", b"single") == [Action("sos-1", "sos")]  # still works


def test_unchanged_binary_states_are_sent_on_change_and_once_a_minute() -> None:
    clock = Clock()
    d = driver(clock)

    def motion(payload: dict[str, Any]) -> list[float]:
        return [
            i.value for i in d.handle("zigbee2mqtt/kitchen_motion", enc(payload)) if isinstance(i, Sample)
        ]

    assert motion({"occupancy": True}) == [1.0]
    for _ in range(2):  # the same state twice more within 3 s: nothing new
        clock.now += 1.5
        assert motion({"occupancy": True}) == []
    clock.now += 1
    assert motion({"occupancy": False}) == [0.0]  # a change goes at once
    clock.now += 59.9
    assert motion({"occupancy": False}) == []
    clock.now += 0.2  # a minute after it was last sent: again, as a heartbeat
    assert motion({"occupancy": False}) == [0.0]
    # numbers are not throttled (a plug's power is reported as it changes)
    kettle = [d.handle("zigbee2mqtt/kettle", enc({"power": 5.0})) for _ in range(2)]
    assert kettle == [[Sample("plug-kettle", "power", 5.0)]] * 2


@pytest.mark.parametrize(
    ("device", "payload", "expected"),
    [
        ("kitchen_motion", {"occupancy": "true"}, [Sample("pir-kitchen", "motion", 1.0)]),
        ("kitchen_motion", {"occupancy": " FALSE "}, [Sample("pir-kitchen", "motion", 0.0)]),
        ("front_door", {"contact": "false"}, [Sample("door-front", "contact", 1.0)]),  # not closed: open
        ("kettle", {"power": "56.2"}, [Sample("plug-kettle", "power", 56.2)]),
        ("kettle", {"power": "ON"}, [Sample("plug-kettle", "power", 1.0)]),
        ("kettle", {"power": "nan"}, []),
        ("kettle", {"power": "lots"}, []),
    ],
)
def test_values_sent_as_strings_are_understood(
    device: str, payload: dict[str, Any], expected: list[Any]
) -> None:
    assert driver().handle(f"zigbee2mqtt/{device}", enc(payload)) == expected


def test_a_bridge_outage_is_one_alert_not_one_per_device() -> None:
    off = {"online": False, "via": "zigbee2mqtt"}
    work = {
        "site": "home-1",
        "gateway": "gw-1",
        "t": 1_767_225_600_000,
        "state": "online",
        "sensors": {"zigbee2mqtt": {"online": False}, "pir-kitchen": off, "sos-1": off},
    }
    opened = [d for d in rules.decide_status(work) if isinstance(d, rules.Open)]
    assert [(o.kind, o.sensor_id) for o in opened] == [("device_offline", "zigbee2mqtt")]
    # a device lost while its bridge is up is its own alert, as before
    work["sensors"] = {"zigbee2mqtt": {"online": True}, "pir-kitchen": off}
    opened = [d for d in rules.decide_status(work) if isinstance(d, rules.Open)]
    assert [(o.kind, o.sensor_id) for o in opened] == [("device_offline", "pir-kitchen")]


# On the real broker -------------------------------------------------------------------------


@pytest.mark.mqtt5  # fails on the embedded amqtt broker ("client is not currently connected")
def test_zigbee2mqtt_as_deployed_through_a_real_agent(
    edge_broker: tuple[str, int], tmp_path: Path, edge_root: str
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
    agent = Agent(gw_file(raw))
    agent.start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    pub.connect(host, port)
    pub.loop_start()

    def send(topic: str, payload: bytes) -> None:
        pub.publish(f"{base}/{topic}", payload, qos=1).wait_for_publish(5)

    def motion(value: float) -> int:
        return sum(
            r["sensor"] == "pir-kitchen" and r["metric"] == "motion" and r["value"] == value
            for p in sub.of("telemetry")
            for r in p["readings"]
        )

    try:
        assert agent.connected_once.wait(10), "agent did not connect"
        z2m = agent.driver("zigbee2mqtt")
        assert isinstance(z2m, Zigbee2MqttDriver)
        assert z2m.subscribed.wait(5), "the driver never subscribed to the bridge's topics"
        for _ in range(3):  # occupancy true three times in a row: one reading
            send("kitchen_motion", b'{"occupancy":true,"linkquality":90}')
        send("kitchen_motion", b'{"occupancy":"false"}')  # the change that proves the others were seen
        assert sub.wait_for(lambda s: motion(0.0) == 1, 6)
        assert motion(1.0) == 1
        send("sos_button/action", b"single")  # the legacy action topic
        assert sub.wait_for(
            lambda s: any(e["kind"] == "sos" and e["sensor"] == "sos-1" for e in s.of("event")), 5
        )
        send("bridge/state", b"offline")  # the legacy plain-text bridge state

        def bridge_down(s: Subscriber) -> bool:
            return any(
                p["sensors"].get("zigbee2mqtt", {}).get("online") is False
                and p["sensors"].get("sos-1", {}).get("online") is False
                and p["sensors"].get("pir-kitchen", {}).get("via") == "zigbee2mqtt"
                for p in s.of("status")
            )

        assert sub.wait_for(bridge_down, 8), sub.of("status")[-1:]
        send("bridge/state", b'{"state":"online"}')
        assert sub.wait_for(
            lambda s: s.of("status")[-1]["sensors"].get("sos-1", {}).get("online") is True, 8
        ), sub.of("status")[-1:]
    finally:
        pub.disconnect()
        pub.loop_stop()
        agent.stop()
        sub.close()
