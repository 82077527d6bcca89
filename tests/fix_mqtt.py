"""MQTT fixtures (a pytest plugin loaded by tests/conftest.py).

Which broker: as for PostgreSQL, ``ELDERCARE_TEST_SERVERS`` (real, embedded, auto; see
fix_db.servers_mode) decides. The real one is ``ELDERCARE_TEST_MQTT_URL`` if set, else the broker
at ``ELDERCARE_TEST_MQTT_PROBE`` (default 127.0.0.1:1883) if it answers an MQTT CONNECT; the
embedded one is a private broker per xdist worker on a free port (``mosquitto`` when installed,
else amqtt; ``ELDERCARE_TEST_EMBEDDED_BROKER=amqtt`` forces the latter). Tests share a broker, so
each one publishes under its own ``topic_root``.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import pytest
from fix_db import SERVERS_ENV, real_required_by, servers_mode, unique_tag

from eldercare.embedded import EmbeddedBroker

DEFAULT_MQTT_PROBE = "127.0.0.1:1883"
_SPEAKS_V5: dict[tuple[str, int], bool] = {}  # this worker's broker, once known: (host, port) -> v5


def mqtt_protocol_of(url: str) -> str:
    """The ``ELDERCARE_MQTT_PROTOCOL`` for a process using this worker's broker at ``url``: "3.1.1"
    on a broker without MQTT 5 (amqtt, embedded where mosquitto is not installed), else "5"."""
    return "5" if _SPEAKS_V5.get(host_port(url), True) else "3.1.1"


def real_mqtt_url() -> str:
    explicit = os.environ.get("ELDERCARE_TEST_MQTT_URL")
    if explicit:
        return explicit
    return "mqtt://" + os.environ.get("ELDERCARE_TEST_MQTT_PROBE", DEFAULT_MQTT_PROBE)


def host_port(url: str) -> tuple[str, int]:
    u = urlsplit(url)
    return u.hostname or "127.0.0.1", u.port or 1883


def mqtt_connack(host: str, port: int, *, v5: bool, timeout: float = 3.0) -> str | None:
    """None if the broker accepts an MQTT connection (v5 or 3.1.1), else why not."""
    done = threading.Event()
    result: dict[str, Any] = {}

    def on_connect(_c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any = None) -> None:
        result["rc"] = reason
        done.set()

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"probe-{unique_tag()}",
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
    )
    client.on_connect = on_connect
    client.on_disconnect = lambda *_a: done.set()
    try:
        client.connect(host, port, keepalive=10)
    except OSError as exc:
        return str(exc) or type(exc).__name__
    client.loop_start()
    try:
        if not done.wait(timeout):
            return "no CONNACK"
        rc = result.get("rc")
        if rc is None:
            return "connection closed"
        return None if not rc.is_failure else str(rc)
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.fixture(scope="session")
def _broker() -> Iterator[tuple[str, int, bool]]:
    """(host, port, speaks MQTT v5) of the broker every test of this worker uses."""
    mode = servers_mode()
    explicit = os.environ.get("ELDERCARE_TEST_MQTT_URL")
    if mode == "embedded" and explicit:
        pytest.fail(f"ELDERCARE_TEST_MQTT_URL is set but {SERVERS_ENV}=embedded", pytrace=False)
    if mode != "embedded":
        host, port = host_port(real_mqtt_url())
        why = mqtt_connack(host, port, v5=False)
        if why is None:
            _SPEAKS_V5[(host, port)] = v5 = mqtt_connack(host, port, v5=True) is None
            yield host, port, v5
            return
        if mode == "real":
            msg = f"{real_required_by()} needs the MQTT broker at {host}:{port}, which is unreachable: {why}"
            pytest.fail(msg, pytrace=False)
        if explicit:
            pytest.fail(f"ELDERCARE_TEST_MQTT_URL {host}:{port} is unreachable: {why}", pytrace=False)
    kind = os.environ.get("ELDERCARE_TEST_EMBEDDED_BROKER", "auto")
    if kind not in {"auto", "mosquitto", "amqtt"}:
        pytest.fail(f"ELDERCARE_TEST_EMBEDDED_BROKER must be auto, mosquitto or amqtt, not {kind!r}")
    broker = EmbeddedBroker(kind=kind)  # type: ignore[arg-type]
    try:
        host, port = broker.start()
        _SPEAKS_V5[(host, port)] = broker.supports_v5
        yield host, port, broker.supports_v5
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def mqtt_host_port(_broker: tuple[str, int, bool]) -> tuple[str, int]:
    return _broker[0], _broker[1]


@pytest.fixture(scope="session")
def mqtt_url(mqtt_host_port: tuple[str, int]) -> str:
    explicit = os.environ.get("ELDERCARE_TEST_MQTT_URL")
    if explicit and host_port(explicit) == mqtt_host_port:
        return explicit  # keeps credentials or mqtts:// of an explicit broker
    return "mqtt://{}:{}".format(*mqtt_host_port)


@pytest.fixture(scope="session")
def mqtt_is_v5(_broker: tuple[str, int, bool]) -> bool:
    return _broker[2]


def make_topic_root(test_name: str) -> str:
    """``t/<test name>-<16 hex digits>/eldercare/v1`` (64 random bits: runs share the broker); only
    letters, digits, ``-`` and ``_`` from the name."""
    safe = re.sub(r"[^A-Za-z0-9_-]+", "-", test_name).strip("-")[:40] or "test"
    return f"t/{safe}-{unique_tag()}/eldercare/v1"


@pytest.fixture
def topic_root(request: pytest.FixtureRequest) -> str:
    """This test's own topics on the shared broker (use it as ``Settings.mqtt_topic_root``)."""
    return make_topic_root(request.node.name)
