"""docker-compose.yml's services run as local processes: their commands, environments and order.

Without a Docker engine this is how the file's content is tested end to end. Each service runs the
command compose gives it, with the environment compose gives it, except that the hosts ``db`` and
``broker`` become this test's PostgreSQL database and a private Mosquitto (started by the broker
service's own command, ``deploy/mosquitto-reload.sh``, with ``deploy/mosquitto.conf``), named
volumes become directories, and each container's ports become spare ones. In compose's order:
``migrate`` (migrations and the broker's files), the broker, two ingest replicas and the platform
(each until its own health check passes), docs/deploy.md's first-administrator snippet (then a
sign-in), the simulator profile, whose simulated gateways log in with their own accounts and
publish under the ACL, the scale-down steps of docs/deploy.md, and a run of ``maintain``.
"""

from __future__ import annotations

import getpass
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from broker_support import mosquitto_or_skip
from compose_support import ROOT, env_of, interpolate, load, local_broker_conf, mounts

from eldercare.embedded import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ENTRYPOINT = "/usr/local/bin/docker-entrypoint.sh"  # where the Dockerfile puts it
DEPLOY_DOC = ROOT / "docs" / "deploy.md"


class Stack:
    """The compose services as processes in ``tmp``."""

    def __init__(self, tmp: Path, db_url: str) -> None:
        self.services: dict[str, Any] = load()["services"]
        self.tmp = tmp
        self.db_url = db_url
        self.broker_port = free_port()
        self.procs: list[tuple[str, subprocess.Popen[bytes], Path]] = []

    def volume(self, name: str) -> Path:
        d = self.tmp / "volumes" / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    def _localise(self, name: str, text: str, ports: dict[str, int]) -> str:
        """Container paths to local directories, container ports to spare ones."""
        for target, source in mounts(self.services[name]).items():
            local = ROOT / source if source.startswith("./") else self.volume(source)
            text = text.replace(target, str(local))
        for inside, outside in ports.items():
            text = re.sub(rf"\b{inside}\b", str(outside), text)
        return text.replace(ENTRYPOINT, str(ROOT / "deploy" / "docker-entrypoint.sh"))

    def env(self, name: str, ports: dict[str, int], **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ELDERCARE_")}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
        data = self.tmp / "data" / name  # the image's ELDERCARE_DATA_DIR
        data.mkdir(parents=True, exist_ok=True)
        env["ELDERCARE_DATA_DIR"] = str(data)
        for key, value in env_of(self.services[name]).items():
            if key == "ELDERCARE_DATABASE_URL":
                assert urlsplit(value).hostname == "db"
                value = self.db_url
            elif "://" in value and urlsplit(value).hostname == "broker":
                value = value.replace("@broker:1883", f"@127.0.0.1:{self.broker_port}")
            env[key] = self._localise(name, value, ports)
        return env | extra

    def command(self, name: str, ports: dict[str, int]) -> list[str]:
        return [self._localise(name, interpolate(word), ports) for word in self.services[name]["command"]]

    def start(
        self, name: str, ports: dict[str, int] | None = None, *, args: tuple[str, ...] = (), **extra: str
    ) -> int:
        ports = ports or {}
        log = self.tmp / f"{name}-{len(self.procs)}.log"
        command = self.command(name, ports)
        if args:
            command[-1] += " " + " ".join(args)
        with log.open("wb") as out:
            proc = subprocess.Popen(
                command,
                env=self.env(name, ports, **extra),
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.tmp,
            )
        self.procs.append((name, proc, log))
        return len(self.procs) - 1

    def wait_healthy(self, i: int, ports: dict[str, int], timeout: float = 60) -> None:
        """Run the service's own health check until it passes, as Docker would."""
        name, proc, log = self.procs[i]
        check = [self._localise(name, w, ports) for w in self.services[name]["healthcheck"]["test"][1:]]
        deadline = time.monotonic() + timeout
        while True:
            assert proc.poll() is None, f"{name} exited: {log.read_text()[-3000:]}"
            done = subprocess.run(
                check, env=self.env(name, ports), capture_output=True, timeout=30, check=False
            )
            if done.returncode == 0:
                return
            assert time.monotonic() < deadline, f"{name} never healthy: {log.read_text()[-3000:]}"
            time.sleep(0.5)

    def wait_exit(self, i: int, timeout: float) -> int:
        name, proc, log = self.procs[i]
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{name} still running: {log.read_text()[-3000:]}") from None

    def output(self, i: int) -> str:
        return self.procs[i][2].read_text(errors="replace")

    def stop(self) -> None:
        for _, proc, _ in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc, _ in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@pytest.fixture
def stack(tmp_path: Path, db_url: str) -> Iterator[Stack]:
    s = Stack(tmp_path, db_url)
    try:
        yield s
    finally:
        s.stop()


def start_broker(stack: Stack) -> int:
    """The broker service's command (deploy/mosquitto-reload.sh) on a config for this machine."""
    mosquitto = mosquitto_or_skip()
    broker = stack.services["broker"]
    health_port = free_port()
    own = stack.tmp / "mosquitto-auth"  # the broker container's own copy, not a volume
    text = local_broker_conf(
        (ROOT / "deploy" / "mosquitto.conf").read_text(),
        broker,
        {1883: stack.broker_port, 1880: health_port},
        {broker["environment"]["BROKER_AUTH_DIR"]: own, "/mosquitto/data/": stack.volume("broker-data")},
    )
    if os.geteuid() == 0:
        text += f"user {getpass.getuser()}\n"  # else it switches to "mosquitto" and cannot read tmp_path
    conf = stack.tmp / "mosquitto.conf"
    conf.write_text(text)
    ports = {"1880": health_port}
    i = stack.start(
        "broker",
        ports,
        BROKER_AUTH_DIR=str(own),
        MOSQUITTO_CONF=str(conf),
        MOSQUITTO=mosquitto,
        MOSQUITTO_USER=getpass.getuser(),
    )
    stack.wait_healthy(i, ports, timeout=20)
    return i


def count(db_url: str, query: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])


def test_the_compose_services_work_together(stack: Stack) -> None:
    services = stack.services
    migrate = stack.start("migrate")
    assert stack.wait_exit(migrate, 120) == 0, stack.output(migrate)
    auth = stack.volume("broker-auth")
    assert {p.name for p in auth.iterdir()} >= {"passwd", "acl", "reload.stamp"}

    broker = start_broker(stack)
    assert "eldercare-ingest:" in (stack.tmp / "mosquitto-auth" / "passwd").read_text()

    replicas = []
    for _ in range(services["ingest"]["deploy"]["replicas"]):
        ports = {"9108": free_port()}  # each container has its own network namespace
        replicas.append((stack.start("ingest", ports), ports))
    web = {"8000": free_port()}
    platform = stack.start("platform", web)
    for i, ports in replicas:
        stack.wait_healthy(i, ports)
    stack.wait_healthy(platform, web)
    ids = sorted(re.findall(r"ingest worker (\S+) started", "".join(stack.output(i) for i, _ in replicas)))
    assert ids == [f"eldercare-ingest-{k}" for k in range(len(replicas))]

    # docs/deploy.md's first administrator, run in the platform's environment, can sign in
    line = re.search(
        r"-T platform docker-entrypoint\.sh eldercare (users create [^\n]*)\n", DEPLOY_DOC.read_text()
    )
    assert line, "the scripted first-administrator line is gone from docs/deploy.md"
    password = "first-admin-password"
    done = subprocess.run(
        [sys.executable, "-m", "eldercare.cli", *shlex.split(line.group(1))],
        env=stack.env("platform", web), input=password + "\n", capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    token = httpx.post(
        f"http://127.0.0.1:{web['8000']}/api/v1/auth/token", data={"username": "admin", "password": password}
    )
    assert token.status_code == 200 and token.json()["access_token"], token.text

    # the simulator profile, shortened: two homes for 20 s at the compose speed
    sim = stack.start("simulator", args=("--duration", "20"), SIM_HOMES="2")
    assert stack.wait_exit(sim, 150) == 0, stack.output(sim)
    gateways = count(stack.db_url, "SELECT count(*) FROM gateways")
    assert gateways >= 3  # two homes and the station's gateways
    assert "SIGHUP sent" in stack.output(broker)  # the simulator's broker sync reached the broker

    def landed() -> int:
        return count(stack.db_url, "SELECT count(DISTINCT gateway_id) FROM ingested_messages")

    deadline = time.monotonic() + 20
    while landed() < gateways and time.monotonic() < deadline:
        time.sleep(0.5)
    # every simulated gateway got in with its own account and published within its ACL
    assert landed() == gateways
    assert count(stack.db_url, "SELECT count(*) FROM dead_letters") == 0
    assert "not authorised" not in stack.output(sim).lower()

    # docs/deploy.md's scale-down: stop a replica, then retire every slot no replica holds
    gone, gone_ports = replicas.pop()
    stack.procs[gone][1].send_signal(signal.SIGTERM)
    assert stack.wait_exit(gone, 30) == 0
    gone_id = re.findall(r"ingest worker (\S+) started", stack.output(gone))[0]
    results = {}
    for k in range(len(replicas) + 1):
        cmd = ["eldercare", "ingest", "retire", "--index", str(k)]
        env = stack.env("ingest", gone_ports)
        results[k] = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)
    freed = int(gone_id.rsplit("-", 1)[1])
    for k, done in results.items():
        if k == freed:
            assert done.returncode == 0 and f"retired {gone_id}: session forgotten" in done.stderr, (
                done.stderr
            )
        else:
            assert done.returncode == 1 and "held by a running worker: it is not retired" in done.stderr
    stack.wait_healthy(replicas[0][0], replicas[0][1])  # the remaining replica never noticed

    maintain = stack.start("maintain")  # `--loop 300`: one run, then its health check
    deadline = time.monotonic() + 60
    while '"rollup_rows"' not in stack.output(maintain):
        assert time.monotonic() < deadline, stack.output(maintain)
        time.sleep(0.5)
    stack.wait_healthy(maintain, {})
