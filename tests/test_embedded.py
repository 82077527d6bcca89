"""The embedded PostgreSQL and brokers that ``eldercare demo`` and server-less test runs use."""

from __future__ import annotations

import json
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from fix_db import in_ci
from fix_mqtt import mqtt_connack

from eldercare.embedded import EmbeddedBroker, EmbeddedError, EmbeddedPostgres, mosquitto_binary, port_open


@pytest.fixture
def pg_data() -> Iterator[Path]:
    """A directory outside /tmp/pytest-of-root: every pytest start makes that 0700 again, which
    locks out the ``pgserver`` user the server runs as under root."""
    with tempfile.TemporaryDirectory(prefix="eldercare-embedded-test-") as d:
        yield Path(d) / "pg"


@pytest.mark.slow
def test_postgres_starts_answers_stops_and_keeps_its_data(pg_data: Path) -> None:
    data = pg_data
    with EmbeddedPostgres(data) as url, psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT 6 * 7").fetchone() == (42,)
        conn.execute("CREATE TABLE kept (x int)")
        conn.execute("INSERT INTO kept VALUES (1)")
        # a demo killed with -9 stays in pgserver's list of users; it must not keep the server up
        users = data / ".handle_pids.json"
        users.write_text(json.dumps([*json.loads(users.read_text()), _dead_pid()]))
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)
    # a second run (the demo restarted) finds the same data
    again = EmbeddedPostgres(data)
    try:
        with psycopg.connect(again.start()) as conn:
            assert conn.execute("SELECT x FROM kept").fetchall() == [(1,)]
    finally:
        again.stop()


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _deliver_qos1(host: str, port: int) -> list[tuple[str, bytes, int]]:
    """Publish one QoS 1 message with paho 2.x and return what a subscriber received."""
    got: list[tuple[str, bytes, int]] = []
    arrived, subscribed = threading.Event(), threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="embedded-sub")
    sub.on_connect = lambda c, *_: c.subscribe("eldercare/v1/#", qos=1)
    sub.on_subscribe = lambda *_: subscribed.set()
    sub.on_message = lambda _c, _u, m: (got.append((m.topic, m.payload, m.qos)), arrived.set())
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="embedded-pub")
    sub.connect(host, port)
    sub.loop_start()
    pub.connect(host, port)
    pub.loop_start()
    try:
        assert subscribed.wait(5), "no SUBACK"
        info = pub.publish("eldercare/v1/home-1/gw-1/event", b'{"v": 1}', qos=1)
        info.wait_for_publish(5)
        assert info.is_published(), "no PUBACK"
        assert arrived.wait(5), "nothing delivered"
    finally:
        for c in (pub, sub):
            c.disconnect()
            c.loop_stop()
    return got


def test_amqtt_broker_delivers_qos1() -> None:
    broker = EmbeddedBroker(kind="amqtt")
    with broker as (host, port):
        assert broker.kind == "amqtt" and not broker.supports_v5
        assert _deliver_qos1(host, port) == [("eldercare/v1/home-1/gw-1/event", b'{"v": 1}', 1)]
        assert mqtt_connack(host, port, v5=True) is not None  # amqtt refuses MQTT v5
    assert not port_open(host, port)


def test_mosquitto_broker_delivers_qos1(tmp_path: Path) -> None:
    if mosquitto_binary() is None and not in_ci():
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    broker = EmbeddedBroker(kind="mosquitto", data_dir=tmp_path / "broker")
    with broker as (host, port):
        assert broker.supports_v5 and broker.url == f"mqtt://{host}:{port}"
        assert _deliver_qos1(host, port) == [("eldercare/v1/home-1/gw-1/event", b'{"v": 1}', 1)]
        assert mqtt_connack(host, port, v5=True) is None
        assert "max_inflight_messages 1000" in (tmp_path / "broker" / "mosquitto.conf").read_text()
    assert not port_open(host, port)


def test_auto_broker_prefers_mosquitto() -> None:
    expected = "mosquitto" if mosquitto_binary() else "amqtt"
    assert EmbeddedBroker().kind == expected


def test_free_ports_come_from_outside_the_ephemeral_range_and_are_free() -> None:
    """An outgoing connection takes its local port from the ephemeral range: a port handed out from
    there could be gone before the demo's platform binds it (it once was, in a busy test run)."""
    import socket

    from eldercare.embedded import FREE_PORT_LOW, ephemeral_ports, free_port

    low, high = ephemeral_ports()
    ports = {free_port() for _ in range(50)}
    assert all(FREE_PORT_LOW <= p < low for p in ports), (sorted(ports), low, high)
    assert len(ports) > 40  # drawn at random, not one port for everyone
    for p in list(ports)[:5]:  # and free
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))


def test_a_server_that_cannot_start_says_why(pg_data: Path) -> None:
    """initdb's own words reach the error (pgserver only logs them): here a data folder in use."""
    pg_data.mkdir()
    (pg_data / "something-else").write_text("not a database")
    pg_data.parent.chmod(0o777)
    pg_data.chmod(0o777)
    with pytest.raises(EmbeddedError, match="exists but is not empty"):
        EmbeddedPostgres(pg_data).start()
