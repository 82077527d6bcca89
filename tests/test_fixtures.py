"""The shared fixtures: private migrated databases, private topic roots, CI refuses to skip."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from fix_db import cloned_database, server_address, servers_mode, url_of, url_params, with_database
from fix_mqtt import host_port, make_topic_root, mqtt_connack, real_mqtt_url
from ingest_support import IngestProcess, PausableProxy, Publisher, wait_for

from eldercare import protocol
from eldercare.config import Settings

REPO = Path(__file__).resolve().parent.parent


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {r[0] for r in rows}


def _database_exists(pg_url: str, name: str) -> bool:
    with psycopg.connect(pg_url) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


@pytest.mark.parametrize("side", ["left", "right"])
def test_db_url_is_migrated_and_private(db_url: str, side: str) -> None:
    # Both cases run (on any worker, in any order): a shared database would show the other's table.
    tables = _tables(db_url)
    assert {"alembic_version", "readings", "alerts"} <= tables
    assert not {t for t in tables if t.startswith("fixture_probe_")}
    with psycopg.connect(db_url) as conn:
        conn.execute(f"CREATE TABLE fixture_probe_{side} (x int)")
    assert f"fixture_probe_{side}" in _tables(db_url)


def test_clones_are_separate_and_dropped(pg_url: str, template_db: str) -> None:
    with cloned_database(pg_url, template_db) as a, cloned_database(pg_url, template_db) as b:
        assert a != b
        with psycopg.connect(a) as conn:
            conn.execute("CREATE TABLE only_in_a (x int)")
        assert "only_in_a" in _tables(a)
        assert "only_in_a" not in _tables(b)
        held = psycopg.connect(b)  # a connection left open must not keep the database alive
        names = [psycopg.conninfo.conninfo_to_dict(u)["dbname"] for u in (a, b)]
    assert not any(_database_exists(pg_url, str(n)) for n in names)
    held.close()


def test_db_conn_is_open_on_this_tests_database(db_conn: psycopg.Connection, db_url: str) -> None:
    assert not db_conn.autocommit
    (name,) = db_conn.execute("SELECT current_database()").fetchone() or ("",)
    assert name == psycopg.conninfo.conninfo_to_dict(db_url)["dbname"]


def test_topic_roots_are_unique_and_valid() -> None:
    roots = {make_topic_root("test_x[param/with #+ odd chars]") for _ in range(500)}
    # 64 random bits each: 500 of them collide about once in 10^14 runs (24 bits: once in ~130)
    assert len(roots) == 500
    for root in list(roots)[:20]:
        assert "#" not in root and "+" not in root and " " not in root
        m = re.fullmatch(r"t/test_x-param-with-odd-chars-([0-9a-f]+)/eldercare/v1", root)
        assert m is not None and len(m.group(1)) >= 16, root
        name = protocol.topic("home-1", "gw-1", "telemetry", root=root)
        assert protocol.parse_topic(name, root=root).gateway == "gw-1"


def test_settings_point_at_this_tests_servers(
    settings: Settings, db_url: str, mqtt_url: str, topic_root: str, tmp_path: Path
) -> None:
    if os.environ.get("EC_TEST_EXPECT_EMBEDDED"):  # an inner run of test_without_servers_...
        assert url_params(db_url)["host"].startswith("/"), db_url  # the embedded server's socket
        assert host_port(mqtt_url) != host_port(real_mqtt_url())  # a private broker on a free port
    assert settings.database_url is not None and settings.database_url.get_secret_value() == db_url
    assert settings.mqtt_url is not None and settings.mqtt_url.get_secret_value() == mqtt_url
    assert settings.mqtt_topic_root == topic_root
    assert settings.data_dir == tmp_path and settings.environment == "test"


def test_qos1_message_reaches_a_subscriber_under_topic_root(
    mqtt_host_port: tuple[str, int], topic_root: str, mqtt_is_v5: bool
) -> None:
    host, port = mqtt_host_port
    assert (mqtt_connack(host, port, v5=True) is None) == mqtt_is_v5
    got: list[bytes] = []
    arrived, subscribed = threading.Event(), threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.on_connect = lambda c, *_: c.subscribe(f"{topic_root}/#", qos=1)
    sub.on_subscribe = lambda *_: subscribed.set()
    sub.on_message = lambda _c, _u, m: (got.append(m.payload), arrived.set())
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.connect(host, port)
    sub.loop_start()
    pub.connect(host, port)
    pub.loop_start()
    try:
        assert subscribed.wait(5)
        pub.publish(f"{topic_root}/site/gw/status", b"hello", qos=1).wait_for_publish(5)
        assert arrived.wait(5)
        assert got == [b"hello"]
    finally:
        for c in (pub, sub):
            c.disconnect()
            c.loop_stop()


def _inner_pytest(
    basetemp: Path, env_changes: dict[str, str | None], *args: str
) -> subprocess.CompletedProcess[str]:
    """Run a few of these tests in a fresh pytest with a different environment (and its own
    basetemp: a pytest starting on the default one resets its permissions under the running suite)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "ELDERCARE_TEST_"))}
    for key, value in env_changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-n", "0"]
    cmd += [f"--basetemp={basetemp}", *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)


NOWHERE = {"ELDERCARE_TEST_PG_PROBE": "127.0.0.1:1", "ELDERCARE_TEST_MQTT_PROBE": "127.0.0.1:1"}


def test_ci_fails_when_servers_are_unreachable(tmp_path: Path) -> None:
    run = _inner_pytest(
        tmp_path / "inner",
        {"CI": "true", **NOWHERE},
        f"{__file__}::test_settings_point_at_this_tests_servers",
    )
    out = run.stdout + run.stderr
    assert run.returncode != 0, out
    assert "CI=true needs the real servers" in out and "127.0.0.1:1" in out
    assert "skipped" not in out


@pytest.mark.parametrize(
    ("env", "says"),
    [
        (
            {"CI": None, "ELDERCARE_TEST_SERVERS": "real"},
            "ELDERCARE_TEST_SERVERS=real needs the real servers",
        ),
        ({"CI": "true", "ELDERCARE_TEST_SERVERS": "sometimes"}, "ELDERCARE_TEST_SERVERS must be one of"),
    ],
)
def test_servers_setting_is_obeyed_or_refused(tmp_path: Path, env: dict[str, str | None], says: str) -> None:
    run = _inner_pytest(
        tmp_path / "inner", {**NOWHERE, **env}, f"{__file__}::test_settings_point_at_this_tests_servers"
    )
    out = run.stdout + run.stderr
    assert run.returncode not in (0, 5), out
    assert says in out and "passed" not in out, out


def test_servers_mode_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ELDERCARE_TEST_SERVERS", raising=False)
    monkeypatch.setenv("CI", "true")
    assert servers_mode() == "real"
    monkeypatch.delenv("CI")
    assert servers_mode() == "auto"
    monkeypatch.setenv("ELDERCARE_TEST_SERVERS", " Embedded ")
    assert servers_mode() == "embedded"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres@127.0.0.1:5432/postgres",
        "postgresql://postgres:@/postgres?host=/tmp/eldercare-test-pg-x",
        "postgresql://u%40x:p%3Ass%2F@db.example:6543/app?sslmode=disable&application_name=a%20b",
        "postgresql:///postgres?host=%2Fvar%2Frun%2Fpostgresql&port=5433",
    ],
)
def test_database_urls_of_tcp_and_unix_socket_servers(url: str) -> None:
    other = with_database(url, "t_123_abc")
    assert url_params(other) == {**url_params(url), "dbname": "t_123_abc"}
    assert url_params(url_of(url_params(url))) == url_params(url)
    assert other.startswith("postgresql://")
    p = url_params(url)
    assert server_address(url) == (p["host"] if p["host"].startswith("/") else f"{p['host']}:{p['port']}")


def test_proxy_forwards_to_a_unix_socket_server(tmp_path: Path) -> None:
    # the embedded PostgreSQL listens on <dir>/.s.PGSQL.5432 only: an echo server stands in for it
    path = tmp_path / ".s.PGSQL.5432"
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(path))
    srv.listen()

    def echo() -> None:
        conn, _ = srv.accept()
        with conn:
            while data := conn.recv(1024):
                conn.sendall(data)

    threading.Thread(target=echo, daemon=True).start()
    proxy = PausableProxy(f"postgresql://postgres:@/t_1?host={tmp_path}").start()
    try:
        through = url_params(proxy.url_for(f"postgresql://postgres:@/t_1?host={tmp_path}"))
        assert through == {"user": "postgres", "dbname": "t_1", "host": "127.0.0.1", "port": str(proxy.port)}
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as c:
            c.sendall(b"ping")
            assert c.recv(1024) == b"ping"
    finally:
        proxy.close()
        srv.close()


@pytest.mark.slow
@pytest.mark.parametrize("how", ["no servers answer", "ELDERCARE_TEST_SERVERS=embedded"])
def test_without_servers_the_embedded_ones_are_used(tmp_path: Path, how: str) -> None:
    # embedded by choice: the real servers (if any answer here) are not used even in CI
    env = (
        {"CI": None, **NOWHERE}
        if how == "no servers answer"
        else {"CI": "true", "ELDERCARE_TEST_SERVERS": "embedded"}
    )
    run = _inner_pytest(
        tmp_path / "inner",
        {**env, "ELDERCARE_TEST_EMBEDDED_BROKER": "amqtt", "EC_TEST_EXPECT_EMBEDDED": "1"},
        f"{__file__}::test_settings_point_at_this_tests_servers",
        f"{__file__}::test_qos1_message_reaches_a_subscriber_under_topic_root",
        *([f"{__file__}::test_mqtt5_marker_skips_on_amqtt"] if how == "no servers answer" else []),
        *(
            [f"{__file__}::test_ingest_and_publisher_speak_the_brokers_protocol"]
            if how != "no servers answer"
            else []
        ),
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    if how == "no servers answer":
        assert "2 passed, 1 skipped" in out, out
        assert "embedded amqtt broker has no MQTT v5 (shared subscriptions)" in out
    else:
        assert "3 passed" in out and "skipped" not in out, out


def test_ingest_and_publisher_speak_the_brokers_protocol(
    db_url: str, mqtt_url: str, topic_root: str, tmp_path: Path
) -> None:
    """An ingest process and a Publisher started the tests' way work on the run's broker, amqtt
    (MQTT 3.1.1 only, the embedded broker where mosquitto is not installed) as well: both assumed MQTT 5
    once, and every test using them timed out there."""
    ingest = IngestProcess(db_url, mqtt_url, topic_root, tmp_path).start()
    try:
        ingest.wait_healthy()
        publisher = Publisher(mqtt_url)
        try:
            publisher.publish(f"{topic_root}/site-x/gw-x/telemetry", b"not json")
        finally:
            publisher.close()

        def dead_lettered() -> bool:
            with psycopg.connect(db_url) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM dead_letters WHERE topic LIKE %s", (f"{topic_root}/%",)
                ).fetchone()
            return row is not None and row[0] == 1

        wait_for(dead_lettered, 30, "the junk message's dead letter")
    finally:
        ingest.stop()


@pytest.mark.mqtt5
def test_mqtt5_marker_skips_on_amqtt(mqtt_is_v5: bool) -> None:
    assert mqtt_is_v5  # reached only on a v5 broker; on amqtt the marker skips it
