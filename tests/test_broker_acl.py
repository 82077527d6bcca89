"""A real Mosquitto with the password and ACL files the platform generates from the registry.

Each test starts its own ``mosquitto`` on a spare port (``allow_anonymous false``, the generated
``password_file`` and ``acl_file``, a ``pid_file`` the platform signals), provisions gateways
through the API and checks what the broker lets each account do.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from broker_support import Client, conf_lines, connack, mosquitto, wait_until_refused
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from eldercare.config import Settings
from eldercare.embedded import free_port
from eldercare.platform import broker_auth as ba

if TYPE_CHECKING:
    from platform_api_support import Api

pytest_plugins = ["platform_api_support"]

INGEST_PW = "ingest-test-password"
PLATFORM_PW = "platform-test-password"


@pytest.fixture
def acl_style() -> str:
    return "per_gateway"


@pytest.fixture
def settings(settings: Settings, tmp_path: Path, acl_style: str) -> Settings:
    """The test settings plus broker files in tmp_path (the app writes them at start)."""
    auth = tmp_path / "broker"
    return Settings(
        **{
            **dict(settings),
            "broker_password_file": auth / "passwd",
            "broker_acl_file": auth / "acl",
            "broker_pid_file": tmp_path / "mosquitto.pid",
            "broker_reload_stamp_file": auth / "reload.stamp",
            "broker_ingest_password": INGEST_PW,
            "broker_platform_password": PLATFORM_PW,
            "broker_acl_style": acl_style,
        }
    )


@pytest.fixture
def broker_port(api: Api, settings: Settings, tmp_path: Path) -> Iterator[int]:
    """mosquitto on a spare port with the files the app wrote at start (``api`` entered its lifespan)."""
    assert settings.broker_password_file is not None and settings.broker_acl_file is not None
    assert settings.broker_password_file.exists(), "the app did not write the files at start"
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    lines = conf_lines(port, settings.broker_password_file, settings.broker_acl_file)
    conf.write_text("\n".join([*lines, f"pid_file {settings.broker_pid_file}"]) + "\n")
    with mosquitto(conf, port, tmp_path / "mosquitto.log"):
        yield port


def provision(api: Api, gateway: str, site: str) -> dict[str, Any]:
    r = api.post("admin", "/api/v1/gateways", json={"id": gateway, "site_id": site, "sensors": []})
    assert r.status_code == 201, r.text
    creds: dict[str, Any] = r.json()["credentials"]
    assert creds["broker_updated"] is True
    return creds


@pytest.mark.parametrize("acl_style", ["per_gateway", "pattern"])
def test_each_gateway_publishes_only_as_itself(
    api: Api, settings: Settings, broker_port: int, acl_style: str
) -> None:
    root = settings.mqtt_topic_root
    a = provision(api, "gw-a", "home-1")
    b = provision(api, "gw-b", "home-2")
    acl = Path(str(settings.broker_acl_file)).read_text()
    assert ("user gw-a" in acl) is (acl_style == "per_gateway")
    ingest = Client(broker_port, ba.INGEST_USER, INGEST_PW)
    assert not ingest.rc.is_failure, str(ingest.rc)
    ingest.subscribe(f"$share/ingest/{root}/+/+/telemetry")
    gw_a = Client(broker_port, "gw-a", a["mqtt_password"])
    assert not gw_a.rc.is_failure, str(gw_a.rc)
    try:
        own = f"{root}/home-1/gw-a/telemetry"
        assert a["topic_prefix"] + "telemetry" == own
        assert not gw_a.publish(own, b"from-a").is_failure
        assert ingest.received(1) == [(own, b"from-a")]
        # as gateway B (its site or another): refused with "not authorised", never delivered
        for topic in (f"{root}/home-2/gw-b/telemetry", f"{root}/home-1/gw-b/telemetry"):
            rc = gw_a.publish(topic, b"forged")
            assert rc.is_failure and rc.value == 0x87, str(rc)
        assert ingest.received(timeout=0.5) == []  # nor anything extra
        # nor may a gateway overwrite its own retained config
        assert gw_a.publish(f"{root}/home-1/gw-a/config", b"{}", retain=True).value == 0x87
        # the platform publishes configs; each gateway reads only its own
        platform = Client(broker_port, ba.PLATFORM_USER, PLATFORM_PW)
        for gw, site in (("gw-a", "home-1"), ("gw-b", "home-2")):
            assert not platform.publish(f"{root}/{site}/{gw}/config", gw.encode(), retain=True).is_failure
        platform.close()
        gw_a.subscribe(f"{root}/+/+/config")
        assert gw_a.received(1) == [(f"{root}/home-1/gw-a/config", b"gw-a")]
        assert gw_a.received(timeout=0.5) == []  # never gw-b's
        # ingest publishes each gateway's retained ack; each gateway reads only its own
        for gw, site in (("gw-a", "home-1"), ("gw-b", "home-2")):
            assert not ingest.publish(f"{root}/{site}/{gw}/ack", gw.encode(), retain=True).is_failure
        gw_a.subscribe(f"{root}/+/+/ack")
        assert gw_a.received(1) == [(f"{root}/home-1/gw-a/ack", b"gw-a")]
        assert gw_a.received(timeout=0.5) == []  # never gw-b's
        # nor may a gateway forge its own ack, and ingest publishes nothing but acks
        assert gw_a.publish(f"{root}/home-1/gw-a/ack", b"{}", retain=True).value == 0x87
        assert ingest.publish(own, b"x").value == 0x87
    finally:
        gw_a.close()
        ingest.close()
    assert not connack(broker_port, "gw-b", b["mqtt_password"]).is_failure


def test_wrong_password_unknown_user_and_anonymous_are_refused(api: Api, broker_port: int) -> None:
    creds = provision(api, "gw-a", "home-1")
    assert not connack(broker_port, "gw-a", creds["mqtt_password"]).is_failure
    for user, password in (("gw-a", creds["mqtt_password"] + "x"), ("gw-a", ""), ("gw-nobody", "pw")):
        rc = connack(broker_port, user, password)
        assert rc.is_failure and rc.getName() == "Not authorized", (user, str(rc))
    anonymous = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    got: queue.Queue[ReasonCode] = queue.Queue()
    anonymous.on_connect = lambda _c, _u, _f, rc, _p: got.put(rc)
    anonymous.connect("127.0.0.1", broker_port)
    anonymous.loop_start()
    try:
        assert got.get(timeout=5).is_failure
    finally:
        anonymous.loop_stop()
    # gateways seeded before migration 0003 have no Mosquitto hash: not in the file at all
    assert connack(broker_port, "gw-home-1", "mqtt-gw-home-1").is_failure


def test_rotation_and_deletion_take_effect_after_the_reload(
    api: Api, settings: Settings, broker_port: int
) -> None:
    old = provision(api, "gw-a", "home-1")["mqtt_password"]
    b = provision(api, "gw-b", "home-2")["mqtt_password"]
    live = Client(broker_port, "gw-a", old)
    assert not live.rc.is_failure
    assert settings.broker_reload_stamp_file is not None
    stamp = settings.broker_reload_stamp_file.read_text()
    r = api.post("admin", "/api/v1/gateways/gw-a/credentials")
    assert r.status_code == 200 and r.json()["broker_updated"] is True
    new = r.json()["mqtt_password"]
    assert settings.broker_reload_stamp_file.read_text() != stamp  # the compose watcher's cue
    rc = wait_until_refused(broker_port, "gw-a", old)
    assert rc.is_failure and rc.getName() == "Not authorized"
    assert not connack(broker_port, "gw-a", new).is_failure
    # the connection made with the old password is dropped when the broker reloads
    deadline = time.monotonic() + 5
    while not live.disconnected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert live.disconnected
    live.close()
    # deleting a gateway removes its account
    assert api.delete("admin", "/api/v1/gateways/gw-b").status_code == 204
    assert wait_until_refused(broker_port, "gw-b", b).is_failure
    assert "gw-b" not in Path(str(settings.broker_acl_file)).read_text()


def test_provisioning_refuses_names_the_broker_cannot_hold(api: Api) -> None:
    for bad in (ba.INGEST_USER, "gw:1"):
        r = api.post("admin", "/api/v1/gateways", json={"id": bad, "site_id": "home-1", "sensors": []})
        assert r.status_code == 422 and "id" in r.json()["detail"], r.text


def test_cli_sync_rebuilds_the_files_from_the_database(
    api: Api, settings: Settings, broker_port: int, db_url: str
) -> None:
    creds = provision(api, "gw-a", "home-1")
    assert settings.broker_password_file is not None and settings.broker_acl_file is not None
    settings.broker_password_file.unlink()
    settings.broker_acl_file.unlink()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELDERCARE_")} | {
        "ELDERCARE_DATABASE_URL": db_url,
        "ELDERCARE_MQTT_TOPIC_ROOT": settings.mqtt_topic_root,
        "ELDERCARE_BROKER_PASSWORD_FILE": str(settings.broker_password_file),
        "ELDERCARE_BROKER_ACL_FILE": str(settings.broker_acl_file),
        "ELDERCARE_BROKER_PID_FILE": str(settings.broker_pid_file),
        "ELDERCARE_BROKER_INGEST_PASSWORD": INGEST_PW,
    }
    out = sync_cli(env)
    assert out.returncode == 0, out.stderr
    assert "2 broker accounts" in out.stdout and "written; reload: SIGHUP pid" in out.stdout, out.stdout
    # the seeded gateways (argon2 only) are named, with what to do about them
    assert "left out gw-home-1: no broker credential yet" in out.stderr
    users = [line.split(":")[0] for line in settings.broker_password_file.read_text().splitlines()]
    assert users == ["eldercare-ingest", "gw-a"]  # no platform password in this environment
    assert not connack(broker_port, "gw-a", creds["mqtt_password"]).is_failure
    assert wait_until_refused(broker_port, ba.PLATFORM_USER, PLATFORM_PW).is_failure
    # unchanged files are not rewritten; the operator's sync still asks for a reload
    mtime = settings.broker_password_file.stat().st_mtime_ns
    again = sync_cli(env)
    assert again.returncode == 0 and "unchanged; reload: SIGHUP pid" in again.stdout, again.stdout
    assert settings.broker_password_file.stat().st_mtime_ns == mtime
    # no broker to signal: the files are written all the same, and the command says what failed
    settings.broker_password_file.unlink()
    failed = sync_cli(env | {"ELDERCARE_BROKER_PID_FILE": str(settings.broker_password_file) + ".pid"})
    assert failed.returncode == 1 and "not told to reload" in failed.stderr, failed.stderr
    assert "written; reload: failed" in failed.stdout, failed.stdout  # not "no reload configured"
    assert settings.broker_password_file.exists()
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT broker_password_hash FROM gateways WHERE id = 'gw-a'").fetchone()
    assert row is not None and ba.verify(creds["mqtt_password"], row[0])


def sync_cli(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eldercare.cli", "broker", "sync"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_provisioning_stands_when_the_broker_cannot_be_told(api: Api, settings: Settings) -> None:
    # no mosquitto started: its pid file does not exist
    r = api.post("admin", "/api/v1/gateways", json={"id": "gw-a", "site_id": "home-1", "sensors": []})
    assert r.status_code == 201, r.text
    assert r.json()["credentials"]["broker_updated"] is False
    assert api.get("admin", "/api/v1/gateways/gw-a").status_code == 200
    passwords = Path(str(settings.broker_password_file)).read_text()
    assert passwords.count("\ngw-a:$7$101$") == 1  # written, for the broker's next (re)start
