"""``eldercare edge``: run a gateway's agent, or check its gateway file."""

from __future__ import annotations

import logging
import signal
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
