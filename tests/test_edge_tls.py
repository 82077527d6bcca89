"""TLS and username/password to a private mosquitto that demands both."""

from __future__ import annotations

import ssl
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from edge_support import Mosquitto, gateway, gw_file, make_tls, write_toml

from eldercare.edge.agent import Agent
from eldercare.embedded import free_port

pytestmark = pytest.mark.timeout(60)
pytest_plugins = ["edge_fixtures"]


def test_agent_connects_with_tls_and_password_and_is_refused_without(tmp_path: Path, edge_root: str) -> None:
    tls = make_tls(tmp_path / "tls")
    pw = tmp_path / "passwd"
    pw.write_text("")
    subprocess.run(["mosquitto_passwd", "-b", str(pw), "gw-1", "s3cret"], check=True, capture_output=True)
    pw.chmod(0o644)
    broker = Mosquitto(
        tmp_path / "mq",
        extra=(
            f"cafile {tls['ca']}\ncertfile {tls['cert']}\nkeyfile {tls['key']}\n"
            f"allow_anonymous false\npassword_file {pw}\n"
        ),
    )
    broker.conf.write_text(broker.conf.read_text().replace("allow_anonymous true\n", ""))
    broker.start()
    try:
        seen: list[bytes] = []
        sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        sub.tls_set(ca_certs=str(tls["ca"]), cert_reqs=ssl.CERT_REQUIRED)
        sub.username_pw_set("gw-1", "s3cret")
        sub.on_connect = lambda c, *_: c.subscribe(f"{edge_root}/#", qos=1)
        sub.on_message = lambda _c, _u, m: seen.append(m.payload)
        sub.connect("127.0.0.1", broker.port)
        sub.loop_start()

        raw = gateway(
            tmp_path,
            edge_root,
            broker.port,
            broker={"url": f"mqtts://gw-1:s3cret@127.0.0.1:{broker.port}", "ca_file": str(tls["ca"])},
        )
        agent = Agent(gw_file(raw))
        agent.start()
        try:
            assert agent.connected_once.wait(10), "TLS + password connection failed"
            deadline = time.monotonic() + 5
            while not any(b'"state":"online"' in p for p in seen) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert any(b'"state":"online"' in p for p in seen)
        finally:
            agent.stop()

        raw["broker"]["url"] = f"mqtts://gw-1:wrong@127.0.0.1:{broker.port}"
        raw["outbox"]["path"] = str(tmp_path / "other.sqlite3")
        refused = Agent(gw_file(raw))
        refused.start()
        try:
            assert not refused.connected_once.wait(2), "a wrong password must not connect"
        finally:
            refused.stop()
        sub.disconnect()
        sub.loop_stop()
    finally:
        broker.stop()


def test_a_broker_the_agent_cannot_connect_to_is_logged_with_the_reason(
    tmp_path: Path, edge_root: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A certificate the gateway does not trust (no ca_file for a private CA), or nothing listening:
    paho retried in silence and the agent's log showed a healthy start and nothing more."""
    tls = make_tls(tmp_path / "tls")
    broker = Mosquitto(tmp_path / "mq", extra=f"certfile {tls['cert']}\nkeyfile {tls['key']}\n")
    broker.start()
    caplog.set_level("WARNING", logger="eldercare.edge.connection")
    try:
        cases = [
            (f"mqtts://127.0.0.1:{broker.port}", "certificate verify failed"),  # ca_file forgotten
            (f"mqtt://127.0.0.1:{free_port()}", "Connection refused"),
        ]
        for i, (url, reason) in enumerate(cases):
            raw = gateway(tmp_path, edge_root, broker.port, broker={"url": url})
            raw["outbox"]["path"] = str(tmp_path / f"outbox-{i}.sqlite3")
            agent = Agent(gw_file(raw))
            agent.start()
            try:
                deadline = time.monotonic() + 10
                while reason not in caplog.text and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert not agent.connected_once.is_set()
            finally:
                agent.stop()
            host_port = url.split("://")[1]
            lines = [r.getMessage() for r in caplog.records if host_port in r.getMessage()]
            assert lines and lines[0].startswith(f"cannot connect to the broker at {host_port}: "), lines
            assert reason in lines[0], lines
            # at most one line a minute: not one per reconnect (every 0.1-0.5 s here)
            assert len(lines) == 1, lines
    finally:
        broker.stop()


def test_tls_files_that_cannot_be_used_are_one_line_from_check_and_run(tmp_path: Path) -> None:
    """A ca_file that is not there, or is no certificate: `edge check` said the file was fine and
    `edge run` ended in paho's FileNotFoundError / SSLError traceback."""
    tls = make_tls(tmp_path / "tls")
    not_pem = tmp_path / "notes.txt"
    not_pem.write_text("not a certificate\n")
    cases = [
        ({"ca_file": str(tmp_path / "missing-ca.pem")}, "broker.ca_file: "),
        ({"ca_file": str(not_pem)}, "broker: cannot use the TLS files ("),
        ({"ca_file": str(tls["ca"]), "cert_file": str(tls["ca"])}, "broker: cannot use the TLS files ("),
        ({"ca_file": str(tls["ca"])}, None),
    ]
    for i, (files, error) in enumerate(cases):
        raw = gateway(tmp_path, "tls-files/v1", 1, broker={"url": "mqtts://127.0.0.1:1", **files})
        raw["outbox"]["path"] = str(tmp_path / f"outbox-{i}.sqlite3")
        config = write_toml(tmp_path / f"gateway-{i}.toml", raw)
        commands = [["check"]] if error is None else [["check"], ["run", "--for-seconds", "5"]]
        for command in commands:
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "eldercare.cli",
                    "edge",
                    command[0],
                    "--config",
                    str(config),
                    *command[1:],
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            if error is None:
                assert out.returncode == 0, out.stderr
                continue
            assert out.returncode == 1 and "Traceback" not in out.stderr, (command, out.stderr)
            lines = [line for line in out.stderr.splitlines() if line.strip()]
            assert len(lines) == 1 and error in lines[0], (command, lines)
