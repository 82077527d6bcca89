"""Real Zigbee devices through a local zigbee2mqtt bridge.

zigbee2mqtt publishes each device's state as JSON on ``{base_topic}/{friendly_name}``, its
reachability on ``{base_topic}/{friendly_name}/availability``, button presses also on the legacy
``{base_topic}/{friendly_name}/action`` (plain text) and the coordinator's own state on
``{base_topic}/bridge/state`` (``online``/``offline``, plain or ``{"state": ...}``). This driver
subscribes to the local broker's ``{base_topic}/#`` and maps payloads to our sensors through the
``devices`` table of its options, keyed by friendly name.

When the bridge goes offline every device behind it is reported offline ``via`` the bridge's own
sensor id (``bridge_sensor``): the platform raises one device_offline alert for the bridge, not
one per device. Binary states (occupancy, contact...) are sent when they change and otherwise at
most once a minute (``binary_heartbeat_s``), as the protocol asks; numbers and booleans sent as
strings (``"56.2"``, ``"true"``) are understood.

Defaults per sensor kind follow the payloads zigbee2mqtt documents (e.g. Aqara RTCGQ11LM
``occupancy``, MCCGQ11LM ``contact`` where ``true`` means closed, WXKG11LM ``action`` =
single/double/hold/release, smart plugs' ``power`` in W, ``battery`` in %); ``fields`` overrides
them for other devices (docs/edge.md lists the mappings of common Aqara, Xiaomi, Tuya and IKEA devices)::

    [[drivers]]
    type = "zigbee2mqtt"
    url = "mqtt://127.0.0.1:1883"
    [drivers.devices.hallway_motion]
    sensor = "pir-hallway"
    kind = "pir"
    [drivers.devices.bed_mat]
    sensor = "bed-1"
    kind = "bed"
    fields = { contact = "in_bed" }        # "!metric" inverts a boolean

The driver's MQTT client is its own (the local broker), separate from the uplink.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

import msgspec

from eldercare.edge.drivers.base import Action, Driver, Health, Item, Sample, Sink
from eldercare.protocol import Ident

log = logging.getLogger(__name__)

Kind = Literal["wearable", "pir", "door", "bed", "plug", "sos", "env", "vitals"]

# payload field -> our metric ("!" inverts a boolean), by sensor kind
DEFAULT_FIELDS: dict[str, dict[str, str]] = {
    "pir": {"occupancy": "motion", "presence": "motion"},
    "door": {"contact": "!contact"},  # zigbee2mqtt: contact=true is closed; ours: 1.0 opened
    "bed": {"occupancy": "in_bed", "presence": "in_bed"},
    "plug": {"power": "power"},
    "env": {"temperature": "temperature", "humidity": "humidity"},
    "vitals": {"heart_rate": "heart_rate", "spo2": "spo2"},
    "wearable": {"heart_rate": "heart_rate"},
    "sos": {},
}
# an SOS button: any press is a call for help ("release" merely ends a "hold")
DEFAULT_ACTIONS: dict[str, dict[str, str]] = {
    "sos": {
        a: "sos"
        for a in (
            *("single", "double", "triple", "quadruple", "many", "hold", "long", "press", "sos", "shake"),
            # IKEA E1743 / E1812 and similar remotes: a press, or a long press (brightness_move_*)
            *("on", "off", "toggle", "brightness_move_up", "brightness_move_down"),
        )
    },
}


class DeviceMap(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    sensor: str
    kind: Kind
    fields: dict[str, str] | None = None  # replaces the kind's defaults
    actions: dict[str, Literal["sos", "ok", "ignore"]] | None = None  # action value -> meaning


class Zigbee2MqttOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    url: str = "mqtt://127.0.0.1:1883"
    username: str | None = None
    password: str | None = None
    base_topic: str = "zigbee2mqtt"
    client_id: str | None = None
    bridge_sensor: Ident = "zigbee2mqtt"  # the bridge's own sensor id in status (one alert when it dies)
    binary_heartbeat_s: float = 60.0  # an unchanged binary state is sent again at most this often
    devices: dict[str, DeviceMap] = msgspec.field(default_factory=dict)


_TRUE = {"on", "true", "yes", "open"}
_FALSE = {"off", "false", "no", "closed", "close"}


def _number(value: Any) -> float | None:
    """A reading's value: numbers, booleans, ``ON``/``OFF`` and either of them sent as a string."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE or text in _FALSE:
            return 1.0 if text in _TRUE else 0.0
        try:
            number = float(text)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _is_binary(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    return isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE


def _state(raw: bytes) -> str | None:
    """``online``/``offline`` from a plain-text or ``{"state": ...}`` payload (availability, bridge)."""
    text = raw.decode("utf-8", "replace").strip()
    state: Any = text
    if text.startswith("{"):
        try:
            state = msgspec.json.decode(raw).get("state")
        except (msgspec.DecodeError, AttributeError, RecursionError):  # nesting deeper than the parser
            return None
    return state if state in ("online", "offline") else None


def map_payload(device: DeviceMap, payload: dict[str, Any]) -> list[Item]:
    """The items one zigbee2mqtt state message means for our sensor (pure; tested directly)."""
    items: list[Item] = []
    fields = device.fields if device.fields is not None else DEFAULT_FIELDS.get(device.kind, {})
    for key, spec in fields.items():
        if key not in payload:
            continue
        invert = spec.startswith("!")
        value = _number(payload[key])
        if value is None:
            continue
        if invert:
            value = 1.0 - value
        items.append(Sample(device.sensor, spec.lstrip("!"), value))
    action = payload.get("action")
    if isinstance(action, str) and action:
        actions = device.actions if device.actions is not None else DEFAULT_ACTIONS.get(device.kind, {})
        meaning = actions.get(action, "ignore")
        if meaning in ("sos", "ok"):
            items.append(Action(device.sensor, meaning))  # type: ignore[arg-type]
    battery = payload.get("battery")
    level = None
    if isinstance(battery, int | float) and not isinstance(battery, bool) and 0 <= battery <= 100:
        level = round(battery / 100.0, 3)
    low = payload.get("battery_low")  # many Tuya/Sonoff/Heiman devices: a flag, no percentage
    if level is not None or isinstance(low, bool):
        items.append(Health(device.sensor, battery=level, battery_low=low if isinstance(low, bool) else None))
    return items


def map_availability(device: DeviceMap, raw: bytes) -> Item | None:
    """``{"state": "online"}`` (zigbee2mqtt 1.x/2.x) or legacy plain ``online``/``offline``."""
    state = _state(raw)
    return None if state is None else Health(device.sensor, online=state == "online")


class Zigbee2MqttDriver(Driver):
    """Subscribes to a local zigbee2mqtt bridge and maps its devices to our sensors."""

    Options = Zigbee2MqttOptions

    def __init__(
        self, name: str, options: Any, gateway: Any, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(name, options, gateway)
        self.opts: Zigbee2MqttOptions = options  # type: ignore[assignment]
        self._client: Any = None
        self.subscribed = threading.Event()  # the bridge's topics are ours (tests wait on it)
        self._sink: Sink | None = None
        self._clock = clock
        self.unknown: set[str] = set()
        self.bridge_online = True
        self.device_online: dict[str, bool] = {}  # each device's own last availability
        self._sent: dict[tuple[str, str], tuple[float, float]] = {}  # binary (sensor, metric) -> value, at

    def handle(self, topic: str, payload: bytes) -> list[Item]:
        """Map one message from the bridge; unknown devices and other bridge topics give nothing."""
        prefix = self.opts.base_topic + "/"
        if not topic.startswith(prefix):
            return []
        name = topic[len(prefix) :]
        if name == "bridge/state":
            return self._bridge(payload)
        if name.startswith("bridge/") or name.endswith(("/set", "/get")):
            return []
        if name.endswith("/availability"):
            return self._availability(name[: -len("/availability")], payload)
        legacy_action = name.endswith("/action")
        dev = self.opts.devices.get(name[: -len("/action")] if legacy_action else name)
        if dev is None:
            if name not in self.unknown:
                self.unknown.add(name)
                log.info("zigbee2mqtt device %r is not in the mapping; ignored", name)
            return []
        if legacy_action:  # zigbee2mqtt's legacy action topic: the action as plain text
            text = payload.decode("utf-8", "replace").strip()
            return map_payload(dev, {"action": text}) if text else []
        try:
            data = msgspec.json.decode(payload)
        except (msgspec.DecodeError, RecursionError):
            log.warning("zigbee2mqtt %s: payload is not JSON", name)
            return []
        if not isinstance(data, dict):
            return []
        return self._throttle(map_payload(dev, data), self._binary_metrics(dev, data))

    def _bridge(self, payload: bytes) -> list[Item]:
        """The coordinator itself: offline means every device behind it is unreachable."""
        state = _state(payload)
        if state is None:
            return []
        online = state == "online"
        if online == self.bridge_online:
            return []
        self.bridge_online = online
        if not online:
            log.warning(
                "zigbee2mqtt bridge %s is offline: all its devices are unreachable", self.opts.base_topic
            )
        bridge = self.opts.bridge_sensor
        items: list[Item] = [Health(bridge, online=online)]
        for dev in self.opts.devices.values():
            own = self.device_online.get(dev.sensor, True)
            items.append(Health(dev.sensor, online=own if online else False, via=bridge))
        return items

    def _availability(self, name: str, payload: bytes) -> list[Item]:
        dev = self.opts.devices.get(name)
        item = map_availability(dev, payload) if dev else None
        if dev is None or not isinstance(item, Health) or item.online is None:
            return []
        self.device_online[dev.sensor] = item.online
        if not self.bridge_online:
            return []  # already reported offline with its bridge; its own state counts once it is back
        return [Health(dev.sensor, online=item.online, via=self.opts.bridge_sensor)]

    @staticmethod
    def _binary_metrics(dev: DeviceMap, data: dict[str, Any]) -> set[str]:
        fields = dev.fields if dev.fields is not None else DEFAULT_FIELDS.get(dev.kind, {})
        return {spec.lstrip("!") for key, spec in fields.items() if key in data and _is_binary(data[key])}

    def _throttle(self, items: list[Item], binary: set[str]) -> list[Item]:
        """Binary states: on change, else at most once per ``binary_heartbeat_s``."""
        if not binary:
            return items
        now = self._clock()
        out: list[Item] = []
        for item in items:
            if isinstance(item, Sample) and item.metric in binary:
                key = (item.sensor, item.metric)
                last = self._sent.get(key)
                if (
                    last is not None
                    and last[0] == item.value
                    and now - last[1] < self.opts.binary_heartbeat_s
                ):
                    continue
                self._sent[key] = (item.value, now)
            out.append(item)
        return out

    def start(self, sink: Sink) -> None:
        from urllib.parse import urlsplit

        import paho.mqtt.client as mqtt

        self._sink = sink
        url = urlsplit(self.opts.url)
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.opts.client_id or f"eldercare-{self.gateway.gateway}-z2m",
        )
        user = self.opts.username or url.username
        if user:
            client.username_pw_set(user, self.opts.password or url.password)
        if url.scheme in {"mqtts", "ssl"}:
            client.tls_set()
        topic = f"{self.opts.base_topic}/#"

        def on_connect(c: Any, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
            if not rc.is_failure:
                c.subscribe(topic, qos=0)

        def on_message(_c: Any, _u: Any, msg: Any) -> None:
            try:
                items = self.handle(msg.topic, msg.payload)
            except Exception:  # an exception here would end paho's loop: every device deaf
                log.exception("zigbee2mqtt %s: message ignored", msg.topic)
                return
            for item in items:
                sink.put(item)

        client.on_connect = on_connect
        client.on_subscribe = lambda *_: self.subscribed.set()
        client.on_message = on_message
        client.reconnect_delay_set(1, 30)
        client.connect_async(url.hostname or "127.0.0.1", url.port or 1883, keepalive=30)
        client.loop_start()
        self._client = client

    def stop(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None


DRIVER = Zigbee2MqttDriver
