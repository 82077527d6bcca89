"""Cost of regenerating Mosquitto's password and ACL files, and of the broker's reload, per fleet size.

Every provisioning, rotation or deletion rewrites both files whole from the registry
(``eldercare.platform.broker_sync.write_files``) and sends Mosquitto SIGHUP. This measures, for N
gateways: rendering plus the atomic writes (the database read is not included), the file sizes,
and how long after the SIGHUP the broker accepts a newly added gateway (polled with CONNECTs;
the broker serves nobody while it re-reads the files), with a real ``mosquitto`` on a spare port,
for both ACL styles (``broker_acl_style``: a ``user`` block per gateway, or ``%u`` patterns).

    python bench/broker_auth.py                 # 1,000 / 5,000 / 10,000 gateways, both ACL styles
    python bench/broker_auth.py --json -n 1000  # one size, JSON
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from eldercare.config import Settings
from eldercare.embedded import free_port, mosquitto_binary, port_open
from eldercare.platform import broker_auth as ba
from eldercare.platform import broker_sync


def accepted(port: int, user: str, password: str) -> bool:
    """One CONNECT: did the broker accept this credential?"""
    got: queue.Queue[Any] = queue.Queue()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"b-{time.monotonic_ns()}", protocol=mqtt.MQTTv5)
    c.username_pw_set(user, password)
    c.on_connect = lambda _c, _u, _f, rc, _p: got.put(rc)
    c.connect("127.0.0.1", port, keepalive=5)
    c.loop_start()
    try:
        return not got.get(timeout=120).is_failure
    finally:
        c.disconnect()
        c.loop_stop()


def one(n: int, style: str, workdir: Path) -> dict[str, float | int | str]:
    settings = Settings(
        environment="test",
        broker_acl_style=style,  # type: ignore[arg-type]
        broker_password_file=workdir / "passwd",
        broker_acl_file=workdir / "acl",
        broker_ingest_password="ingest",  # type: ignore[arg-type]
    )
    hashed = ba.mosquitto_hash("pw")  # one hash for all: hashing is the API's cost, not the sync's
    gws = [
        {
            "id": f"gw-{i:06d}",
            "site_id": f"home-{i:06d}",
            "mqtt_username": f"gw-{i:06d}",
            "broker_password_hash": hashed,
        }
        for i in range(n)
    ]
    t0 = time.perf_counter()
    broker_sync.write_files(settings, gws)
    write_ms = (time.perf_counter() - t0) * 1000
    port = free_port()
    conf = workdir / "mosquitto.conf"
    lines = [
        f"listener {port} 127.0.0.1",
        "allow_anonymous false",
        f"password_file {workdir / 'passwd'}",
        f"acl_file {workdir / 'acl'}",
        "persistence false",
    ]
    if os.geteuid() == 0:
        lines.append(f"user {getpass.getuser()}")
    conf.write_text("\n".join(lines) + "\n")
    exe = mosquitto_binary()
    assert exe is not None, "mosquitto is not installed"
    t0 = time.perf_counter()
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not port_open("127.0.0.1", port, 0.05):
            time.sleep(0.01)
        start_ms = (time.perf_counter() - t0) * 1000
        new = "fresh-pw"
        gws.append(
            {
                "id": "gw-new",
                "site_id": "home-new",
                "mqtt_username": "gw-new",
                "broker_password_hash": ba.mosquitto_hash(new),
            }
        )
        t0 = time.perf_counter()
        broker_sync.write_files(settings, gws)
        rewrite_ms = (time.perf_counter() - t0) * 1000
        t0 = time.perf_counter()
        proc.send_signal(signal.SIGHUP)
        while not accepted(port, "gw-new", new):
            assert time.perf_counter() - t0 < 300, "the new gateway was never accepted"
        reload_ms = (time.perf_counter() - t0) * 1000
    finally:
        proc.terminate()
        proc.wait(10)
    return {
        "gateways": n,
        "acl_style": style,
        "write_ms": round(write_ms, 1),
        "rewrite_ms": round(rewrite_ms, 1),
        "passwd_kb": round((workdir / "passwd").stat().st_size / 1024),
        "acl_kb": round((workdir / "acl").stat().st_size / 1024),
        "broker_start_ms": round(start_ms, 1),
        "reload_to_accept_ms": round(reload_ms, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, action="append", help="gateways (repeatable)")
    ap.add_argument(
        "--style", action="append", choices=["per_gateway", "pattern"], help="ACL style (repeatable)"
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = []
    for n in args.n or [1_000, 5_000, 10_000]:
        for style in args.style or ["per_gateway", "pattern"]:
            with tempfile.TemporaryDirectory() as tmp:
                rows.append(one(n, style, Path(tmp)))
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        print()
        return
    cols = list(rows[0])
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(r[c]) for c in cols))


if __name__ == "__main__":
    main()
