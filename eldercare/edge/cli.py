"""``eldercare edge``: run a gateway's agent, or check its gateway file."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from pathlib import Path
from typing import Any

import click


@click.group()
def edge() -> None:
    """Run a gateway's edge agent / 运行网关边缘代理."""


def _load(path: str) -> Any:
    from eldercare.edge.config import load_gateway_file
    from eldercare.edge.errors import EdgeError

    try:
        return load_gateway_file(path)
    except EdgeError as exc:
        raise click.ClickException(str(exc)) from None


@edge.command()
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="The gateway file (gateway.toml).",
)
@click.option("--for-seconds", type=float, default=None, hidden=True, help="Stop after this long.")
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    envvar="ELDERCARE_LOG_LEVEL",
    show_default=True,
    help="Logging level (ELDERCARE_LOG_LEVEL).",
)
def run(config_path: str, for_seconds: float | None, log_level: str) -> None:
    """Run the agent until stopped (SIGTERM or Ctrl-C) / 运行代理直到停止."""
    # Not the platform's Settings (pydantic-settings): the gateway file is the agent's settings
    # object, and the agent must stay small (docs/edge.md, "Footprint").
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from eldercare.edge.agent import Agent
    from eldercare.edge.errors import EdgeError

    gw = _load(config_path)
    lock = _lock_outbox(Path(gw.outbox.path))
    try:
        try:
            agent = Agent(gw)
        except EdgeError as exc:
            raise click.ClickException(str(exc)) from None
        signal.signal(signal.SIGTERM, lambda *_: agent.request_stop())
        try:
            agent.run(for_seconds)
        except KeyboardInterrupt:
            pass
        except EdgeError as exc:
            raise click.ClickException(str(exc)) from None
    finally:
        if lock is not None:
            os.close(lock)  # drops the flock


def _lock_outbox(outbox: Path) -> int | None:
    """One agent per outbox: hold ``<outbox>.lock`` (an exclusive ``flock``, dropped when the process
    dies). Two agents on one gateway file took the broker connection from each other every second
    and sealed messages from one file with counters each kept in memory: a seq sealed twice with
    different contents, and the platform drops the second as a copy. A lock file that cannot be made
    (a full disk) does not stop the agent: the outbox copes with the disk itself."""
    import fcntl

    log = logging.getLogger("eldercare.edge.agent")
    path = outbox.with_name(outbox.name + ".lock")
    try:
        outbox.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        log.warning("cannot lock the outbox (%s): another agent on it would not be noticed", exc)
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = ""
        with contextlib.suppress(OSError):
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        msg = (
            f"outbox {outbox} is in use by another edge agent (pid {holder or '?'}): one agent per"
            " gateway file; stop it first"
        )
        raise click.ClickException(msg) from None
    with contextlib.suppress(OSError):  # the pid is for the message above only
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


@edge.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False))
def check(config_path: str) -> None:
    """Validate a gateway file and show what it sets up / 检查网关配置文件."""
    from eldercare.edge.drivers import driver_class, driver_options
    from eldercare.edge.errors import EdgeError

    gw = _load(config_path)
    try:
        if gw.broker.tls:
            from eldercare.edge.connection import check_tls_files

            check_tls_files(gw.broker)
        for d in gw.drivers:
            driver_options(driver_class(d.type), d.options, d.name or d.type)
    except EdgeError as exc:
        raise click.ClickException(str(exc)) from None
    cfg = gw.initial_config()
    click.echo(f"gateway {gw.site}/{gw.gateway} -> {gw.broker.host}:{gw.broker.port} (tls={gw.broker.tls})")
    click.echo(
        f"outbox {gw.outbox.path} (max {gw.outbox.max_messages} messages, {gw.outbox.max_bytes} bytes)"
    )
    click.echo(f"{len(cfg.sensors)} sensors, drivers: {', '.join(d.type for d in gw.drivers) or 'none'}")
