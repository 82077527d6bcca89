"""deploy/mosquitto-reload.sh: the broker-side half of the compose setup, run here with /bin/sh.

The platform writes the files and the stamp (``broker_sync.write_files``, no pid file: another
container); the script copies them into the broker's own directory and sends mosquitto SIGHUP.
"""

from __future__ import annotations

import getpass
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

from broker_support import conf_lines, connack, mosquitto_or_skip, wait_for_port

from eldercare.config import Settings
from eldercare.embedded import free_port, port_open
from eldercare.platform import broker_auth as ba
from eldercare.platform import broker_sync

SCRIPT = Path(__file__).resolve().parents[1] / "deploy" / "mosquitto-reload.sh"


def test_script_installs_the_files_and_reloads_mosquitto_when_the_stamp_changes(tmp_path: Path) -> None:
    exe = mosquitto_or_skip()
    shared, own = tmp_path / "shared", tmp_path / "auth"
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text("\n".join(conf_lines(port, own / "passwd", own / "acl")) + "\n")
    settings = Settings(
        environment="test",
        broker_password_file=shared / "passwd",
        broker_acl_file=shared / "acl",
        broker_reload_stamp_file=shared / "reload.stamp",
        broker_ingest_password="ingest-pw",  # type: ignore[arg-type]
    )
    env = os.environ | {
        "BROKER_AUTH_SRC": str(shared),
        "BROKER_AUTH_DIR": str(own),
        "MOSQUITTO_CONF": str(conf),
        "MOSQUITTO": exe,
        "MOSQUITTO_USER": getpass.getuser(),
        "RELOAD_POLL_S": "0.2",
    }
    log = tmp_path / "script.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(["/bin/sh", str(SCRIPT)], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(proc, port, log)
        # nothing written by the platform yet: empty files, nobody gets in
        assert (own / "passwd").read_text() == ""
        assert connack(port, ba.INGEST_USER, "ingest-pw").is_failure
        gw = {"id": "gw-1", "site_id": "home-1", "mqtt_username": "gw-1"}
        result = broker_sync.write_files(
            settings, [gw | {"broker_password_hash": ba.mosquitto_hash("gw-pw")}]
        )
        assert result.changed and result.reloaded == [f"stamp {shared / 'reload.stamp'}"]
        deadline = time.monotonic() + 10
        while connack(port, ba.INGEST_USER, "ingest-pw").is_failure:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        assert not connack(port, "gw-1", "gw-pw").is_failure
        for name in ("passwd", "acl"):
            assert stat.S_IMODE((own / name).stat().st_mode) == 0o600
            assert (own / name).read_text() == (shared / name).read_text()
        assert "SIGHUP sent" in log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(15)
    assert code == 0, log.read_text()
    assert not port_open("127.0.0.1", port, 0.2)  # mosquitto went down with the script
