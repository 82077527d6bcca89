"""``eldercare gateways``: register a gateway from the command line (credentials printed once, the
revision-0 config retained on the broker), disable it, list the sensors it sent but nobody registered."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading

import paho.mqtt.client as mqtt
import psycopg
from ingest_support import count

from eldercare.platform import security
from eldercare.platform.repo import registry
from eldercare.platform.repo.connections import connect


def cli(db_url: str, mqtt_url: str, root: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELDERCARE_")}
    env |= {
        "ELDERCARE_DATABASE_URL": db_url,
        "ELDERCARE_MQTT_URL": mqtt_url,
        "ELDERCARE_MQTT_TOPIC_ROOT": root,
    }
    return subprocess.run(
        [sys.executable, "-m", "eldercare.cli", "gateways", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def broker_accounts(db_url: str) -> list[str]:
    async def read() -> list[str]:
        async with await connect(db_url, autocommit=False) as conn:
            return [r["mqtt_username"] for r in await registry.broker_gateways(conn)]

    return asyncio.run(read())


def retained(host: str, port: int, topic: str) -> bytes:
    got: list[bytes] = []
    done = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.on_connect = lambda cl, *_: cl.subscribe(topic, qos=1)

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        got.append(msg.payload)
        done.set()

    c.on_message = on_message
    c.connect(host, port)
    c.loop_start()
    try:
        assert done.wait(5), f"nothing retained on {topic}"
    finally:
        c.disconnect()
        c.loop_stop()
    return got[0]


def test_add_prints_credentials_once_and_publishes_config_zero(
    db_url: str, mqtt_url: str, mqtt_host_port: tuple[str, int], topic_root: str
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO sites (id, kind, name) VALUES ('home-1', 'home', 'Home 1')")
    out = cli(db_url, mqtt_url, topic_root, "add", "home-1", "gw-1", "--sensor", "pir-kitchen:pir:kitchen")
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(":", 1) for line in out.stdout.splitlines()[1:])
    password = lines["mqtt_password"].strip()
    assert lines["mqtt_username"].strip() == "gw-1"
    assert lines["topic_prefix"].strip() == f"{topic_root}/home-1/gw-1/"
    assert "revision 0 published (retained)" in lines["config"]
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT mqtt_password_hash, config FROM gateways WHERE id = 'gw-1'").fetchone()
    assert row is not None and security.verify_password(row[0], password)
    assert password not in str(row)
    config = retained(*mqtt_host_port, f"{topic_root}/home-1/gw-1/config")
    assert json.loads(config) == row[1] and row[1]["revision"] == 0
    sensor = row[1]["sensors"][0]
    assert (sensor["id"], sensor["kind"], sensor["room"]) == ("pir-kitchen", "pir", "kitchen")
    # the same again, an unknown site, a bad sensor: one line each, nothing more created
    for args, error in [
        (("home-1", "gw-1"), "gateway: 'gw-1' (or that MQTT user) exists"),
        (("home-9", "gw-2"), "site: no site 'home-9'; create it first"),
        (("home-1", "gw-3", "--sensor", "cam-1:camera"), "unknown kind 'camera'"),
        (("home-1", "gw 4"), "id: not a valid identifier"),
    ]:
        bad = cli(db_url, mqtt_url, topic_root, "add", *args)
        assert bad.returncode == 1 and error in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1
    assert count(db_url, "SELECT count(*) FROM gateways") == 1


def test_disable_enable_and_unknown_sensors(db_url: str, mqtt_url: str, topic_root: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO sites (id, kind, name) VALUES ('home-1', 'home', 'Home 1')")
        conn.execute(
            "INSERT INTO gateways (id, site_id, mqtt_username, mqtt_password_hash)"
            " VALUES ('gw-1', 'home-1', 'gw-1', 'x')"
        )
        conn.execute("INSERT INTO sensors (gateway_id, id, kind) VALUES ('gw-1', 'pir-1', 'pir')")
        conn.execute(
            "INSERT INTO unknown_sensors (gateway_id, sensor_id)"
            " VALUES ('gw-1', 'pir-1'), ('gw-1', 'pir-attic')"
        )
    out = cli(db_url, mqtt_url, topic_root, "unknown-sensors")
    assert out.returncode == 0, out.stderr
    assert [line.split("\t")[:3] for line in out.stdout.splitlines()] == [["home-1", "gw-1", "pir-attic"]]
    assert cli(db_url, mqtt_url, topic_root, "disable", "gw-1").returncode == 0
    assert count(db_url, "SELECT count(*) FROM gateways WHERE disabled_at IS NOT NULL") == 1
    assert broker_accounts(db_url) == []  # a disabled gateway has no broker account either
    assert cli(db_url, mqtt_url, topic_root, "enable", "gw-1").returncode == 0
    assert count(db_url, "SELECT count(*) FROM gateways WHERE disabled_at IS NOT NULL") == 0
    assert broker_accounts(db_url) == ["gw-1"]
    missing = cli(db_url, mqtt_url, topic_root, "disable", "gw-9")
    assert missing.returncode == 1 and "no gateway 'gw-9'" in missing.stderr
