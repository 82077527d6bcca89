"""The alert engine as a process of its own: ``eldercare engine``, which ``eldercare serve`` starts.

An alarm must not wait for page loads. On a thread of the API's process the engine had its own
loop and connections but shared the interpreter: under 50 polling clients a storm's last tier-1
push left 28 s after the commit, where alone it took 2.3 s. In its own process it shares only the
database with the API, as replicas do: every step claims its rows (``FOR UPDATE SKIP LOCKED``),
so any number of engine processes, on any hosts, may run side by side.

:class:`EngineChild` is ``serve``'s side: it starts the child with the same settings (the
environment is inherited, the config file passed on), starts it again if it dies, and stops it
with ``serve``. The child watches its parent too, so a ``serve`` killed outright leaves nothing
behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
from typing import Any

from eldercare.platform.engine import service

log = logging.getLogger(__name__)

PARENT_CHECK_S = 1.0
RESTART_S = 2.0  # a child that died is started again after this
STOP_S = 20.0  # a child that does not stop on SIGTERM within this is killed


class MetricsPortError(Exception):
    """The engine's /metrics port cannot be bound (taken, or not allowed)."""


def run(settings: Any, *, parent_pid: int | None = None, index: int = 0) -> None:
    """Run the engine until SIGTERM or SIGINT (or, with ``parent_pid``, until that process is gone).

    With ``engine_metrics_port`` set, its counters are served at ``/metrics`` on that port + ``index``
    (the API's ``/metrics`` shows the database's gauges, but counters live in the process counting).
    """
    server = None
    if settings.engine_metrics_port:
        from eldercare.platform.engine.metrics import serve_counters

        port = settings.engine_metrics_port + index
        try:
            server = serve_counters(settings.http_host, port)
        except OSError as exc:
            msg = (
                f"cannot serve /metrics on {settings.http_host}:{port}: {exc.strerror or exc} "
                "(ELDERCARE_ENGINE_METRICS_PORT; engine i uses port + i; 0 turns it off)"
            )
            raise MetricsPortError(msg) from None
        log.info("engine metrics: http://%s:%s/metrics", settings.http_host, port)
    try:
        asyncio.run(_main(settings, parent_pid))
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()


async def _main(settings: Any, parent_pid: int | None) -> None:
    from eldercare.db import resolve_url

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watch = asyncio.create_task(_watch_parent(parent_pid, stop)) if parent_pid else None
    try:
        await service.engine_for(resolve_url(settings), settings).run(stop)
    finally:
        if watch is not None:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
    log.info("alert engine stopped")


async def _watch_parent(parent_pid: int, stop: asyncio.Event) -> None:
    """Stop when the parent is gone (this process was re-parented)."""
    while os.getppid() == parent_pid:
        await asyncio.sleep(PARENT_CHECK_S)
    log.warning("the process that started the engine (%s) is gone; stopping", parent_pid)
    stop.set()


class EngineChild:
    """``eldercare engine`` as a child of ``serve``: started again if it dies, stopped with it."""

    def __init__(self, config_file: str | None, *, index: int = 0) -> None:
        root = ["--config", config_file] if config_file else []
        self.cmd = [
            sys.executable, "-m", "eldercare.cli", *root, "engine",
            "--parent-pid", str(os.getpid()), "--index", str(index),
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._watcher = threading.Thread(target=self._watch, name="engine-child", daemon=True)

    def start(self) -> None:
        self._spawn()
        self._watcher.start()

    def _spawn(self) -> None:
        with self._lock:
            if self._stopping.is_set():
                return
            # its own session: a terminal's Ctrl-C reaches serve, which stops the engine after the API
            self.proc = subprocess.Popen(self.cmd, env=os.environ.copy(), start_new_session=True)
        log.info("alert engine started (process %s)", self.proc.pid)

    def _watch(self) -> None:
        while not self._stopping.is_set():
            proc = self.proc
            assert proc is not None
            code = proc.wait()
            if self._stopping.wait(RESTART_S):
                return
            log.error("the alert engine (process %s) exited with %s; starting it again", proc.pid, code)
            self._spawn()

    def stop(self) -> int | None:
        """Stop the child (SIGTERM, then SIGKILL after :data:`STOP_S`); its exit code."""
        with self._lock:
            self._stopping.set()
            proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.terminate()
        try:
            code = proc.wait(STOP_S)
        except subprocess.TimeoutExpired:
            log.error("the alert engine did not stop within %s s; killing it", STOP_S)
            proc.kill()
            code = proc.wait()
        with contextlib.suppress(RuntimeError):  # never started
            self._watcher.join(5)
        return code
