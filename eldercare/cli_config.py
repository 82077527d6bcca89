"""``eldercare config``: what the process would run with."""

from __future__ import annotations

import json

import click

from eldercare.cli_settings import get_settings


@click.group()
def config() -> None:
    """Inspect the effective settings."""


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of NAME = value lines.")
@click.pass_context
def show(ctx: click.Context, as_json: bool) -> None:
    """Print the effective settings, secrets masked."""
    values = get_settings(ctx).masked()
    if as_json:
        click.echo(json.dumps(values, indent=2, default=str))
        return
    width = max(len(k) for k in values)
    for name, value in values.items():
        shown = "(embedded)" if value is None and name in {"database_url", "mqtt_url"} else value
        click.echo(f"{name.ljust(width)} = {shown}")
