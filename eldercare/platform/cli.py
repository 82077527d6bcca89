"""``eldercare serve`` (the API and the consoles in uvicorn worker(s), plus one alert engine
process), ``eldercare engine`` (that process alone), ``eldercare broker`` (the broker's accounts
generated from the registry), ``eldercare users`` and ``eldercare gateways``."""

from __future__ import annotations

import signal
import sys
from typing import Any

import click

from eldercare import i18n
from eldercare.cli_settings import database_error_line, get_settings


@click.command()
@click.option("--host", default=None, help="Listen address (default: settings.http_host).")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=None, help="Listen port (default: settings.http_port)."
)
@click.option(
    "--no-engine",
    is_flag=True,
    help="Serve the API and live pushes only: the alert engine runs elsewhere (`eldercare engine`).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="API processes sharing the port (about 15 database connections each), besides the one "
    "alert engine process (about 12).",
)
@click.option(
    "--engines",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Alert engine processes (sharing the work through the database): more take a storm "
    "faster where cores are shared or many.",
)
@click.pass_context
def serve(
    ctx: click.Context, host: str | None, port: int | None, no_engine: bool, workers: int, engines: int
) -> None:
    """Run the HTTP API and the web consoles, and the alert engine in a process of its own.

    运行 HTTP 接口和网页控制台，并在独立进程中运行告警引擎。
    """
    import os

    import uvicorn

    from eldercare.db import require_database, require_schema
    from eldercare.platform import app as platform_app
    from eldercare.platform.engine.process import EngineChild

    settings = get_settings(ctx)
    # before any process starts: the API's start-up and each engine would each fail on it
    require_database(settings)
    require_schema(settings)
    listen_host = host or settings.http_host
    listen_port = port if port is not None else settings.http_port
    _port_free(listen_host, listen_port)  # before the engines and the broker sync start
    where = {
        "host": listen_host,
        "port": listen_port,
        "log_level": settings.log_level.lower(),
        "proxy_headers": False,  # the app believes X-Forwarded-For only from ELDERCARE_TRUSTED_PROXIES
    }
    config_file = (ctx.find_root().obj or {}).get("config_file") or None
    # The engine in a process of its own: under any API load its Python never waits for the
    # API's (a thread of this process shares one interpreter). It shares work through the
    # database, as replicas do, and inherits this process's environment (every ELDERCARE_*).
    # uvicorn raises the SIGTERM it caught again once it has shut down: with the default handler
    # this process would die there (before stopping its engine, which would notice on its own)
    signal.signal(signal.SIGTERM, _exit_cleanly)
    children = [] if no_engine else [EngineChild(config_file, index=i) for i in range(engines)]
    for child in children:
        child.start()
    try:
        if workers == 1:
            app = platform_app.create_app(settings, start_engine=False, pushes=True)
            uvicorn.run(app, **where)  # type: ignore[arg-type]
            return
        # Each worker is a fresh process that builds its own app from the same settings (the
        # environment is inherited; the config file is passed on).
        os.environ[platform_app.SERVE_CONFIG_ENV] = str(config_file or "")
        uvicorn.run(f"{platform_app.__name__}:app_for_worker", factory=True, workers=workers, **where)  # type: ignore[arg-type]
    finally:
        for child in children:
            child.stop()


def _port_free(host: str, port: int) -> None:
    """Say in one line that the address is taken (a second ``serve``), before anything starts;
    uvicorn found it only after the engines had started, and said it in a traceback."""
    import socket

    if port == 0:
        return
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind(addr)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _exit_cleanly(_sig: int, _frame: object) -> None:
    raise SystemExit(0)


@click.command()
@click.option("--parent-pid", type=int, default=None, hidden=True, help="Stop when this process is gone.")
@click.option(
    "--index",
    type=click.IntRange(0),
    default=0,
    hidden=True,
    help="Which of serve's engines (metrics port + i)",
)
@click.pass_context
def engine(ctx: click.Context, parent_pid: int | None, index: int) -> None:
    """Run the alert engine alone: alert work, escalation, inactivity, notifications.

    Any number may run, on any hosts, beside any number of `serve --no-engine`: they share the
    work through the database. Stops on SIGTERM or SIGINT.

    单独运行告警引擎（告警处理、升级、不活动检测、通知）。
    """
    from eldercare.db import require_schema
    from eldercare.platform.engine import process

    settings = get_settings(ctx)
    if parent_pid is None:  # serve looked before it started this one
        require_schema(settings)
    try:
        process.run(settings, parent_pid=parent_pid, index=index)
    except process.MetricsPortError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def broker() -> None:
    """Mosquitto's password and ACL files, generated from the gateway registry.

    由网关注册表生成 Mosquitto 的密码文件和 ACL 文件。
    """


@broker.command()
@click.pass_context
def sync(ctx: click.Context) -> None:
    """Rewrite the files from the registry and ask the broker to reload (first start, repairs)."""
    import asyncio

    import psycopg

    from eldercare.db import resolve_url
    from eldercare.platform import broker_sync
    from eldercare.platform.repo.connections import connect

    settings = get_settings(ctx)
    if not broker_sync.enabled(settings):
        msg = "set ELDERCARE_BROKER_PASSWORD_FILE and ELDERCARE_BROKER_ACL_FILE (see docs/operations.md)"
        raise click.ClickException(msg)

    async def run() -> broker_sync.SyncResult:
        async with await connect(resolve_url(settings)) as conn:
            return await broker_sync.sync(conn, settings, force_reload=True)

    try:
        result = asyncio.run(run())
    except (OSError, psycopg.Error) as exc:
        raise click.ClickException(database_error_line(exc)) from None
    state = "written" if result.changed else "unchanged"
    reload = ", ".join(result.reloaded) or ("failed" if result.reload_error else "no reload configured")
    click.echo(
        f"{result.accounts} broker accounts; {settings.broker_password_file} and "
        f"{settings.broker_acl_file} {state}; reload: {reload}"
    )
    for name, why in sorted(result.skipped.items()):
        click.echo(f"  left out {name}: {why}", err=True)
    if result.reload_error:
        raise click.ClickException(f"the broker was not told to reload: {result.reload_error}")


@click.group()
def users() -> None:
    """Accounts, for the first administrator and for scripts (the admin console does the rest).

    账户管理：创建第一个管理员，或供脚本使用（其余在管理页面完成）。
    """


@users.command("create")
@click.argument("username")
@click.option(
    "--role",
    type=click.Choice(["admin", "care_worker", "family", "tester"]),
    default="admin",
    show_default=True,
)
@click.option("--display-name", help="Name shown in the consoles (default: the username).")
@click.option("--provider", "provider_id", help="The provider employing a care worker.")
@click.option("--locale", type=click.Choice(i18n.LOCALES), default=i18n.DEFAULT_LOCALE, show_default=True)
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from standard input (scripts); otherwise it is asked for twice, hidden.",
)
@click.pass_context
def create_user(
    ctx: click.Context,
    username: str,
    role: str,
    display_name: str | None,
    provider_id: str | None,
    locale: str,
    password_stdin: bool,
) -> None:
    """Create an account, checked by the same rules as POST /api/v1/users."""
    import asyncio

    import psycopg
    from pydantic import ValidationError

    from eldercare.db import resolve_url
    from eldercare.platform import security
    from eldercare.platform.errors import problem
    from eldercare.platform.repo import users as users_repo
    from eldercare.platform.repo.connections import connect
    from eldercare.platform.schemas import UserIn

    settings = get_settings(ctx)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    try:
        user = UserIn(
            username=username,
            display_name=display_name or username,
            password=password,
            role=role,  # type: ignore[arg-type]
            provider_id=provider_id,
            locale=locale,  # type: ignore[arg-type]
        )
    except ValidationError as exc:
        # worded as the API words it ("must be 3 to 64 letters, digits or ..."), never a pattern
        err = exc.errors()[0]
        said = problem(str(err["loc"][0]), err["type"], i18n.FALLBACK, err.get("ctx"), err["msg"])
        raise click.ClickException(f"{said['field']}: {said['message']}") from None

    async def run() -> dict[str, object]:
        async with await connect(resolve_url(settings)) as conn:
            pw_hash = await asyncio.to_thread(security.hash_password, user.password)
            return await users_repo.create_user(
                conn, password_hash=pw_hash, **user.model_dump(exclude={"password"})
            )

    try:
        row = asyncio.run(run())
    except psycopg.errors.UniqueViolation:
        raise click.ClickException(f"a user named {username!r} already exists") from None
    except psycopg.errors.ForeignKeyViolation:
        raise click.ClickException(f"no provider {provider_id!r}") from None
    except (OSError, psycopg.Error) as exc:
        raise click.ClickException(database_error_line(exc)) from None
    click.echo(f"created {row['role']} {row['username']} (id {row['id']})")


@click.group()
def gateways() -> None:
    """Register gateways (their MQTT credentials are printed once) and find their unknown sensors.

    注册网关（MQTT 凭据只显示一次），查看未登记的传感器。
    """


def _run_db(ctx: click.Context, job: Any) -> Any:
    """Run ``job(conn, settings)`` on one autocommit connection; database errors are one line."""
    import asyncio

    import psycopg

    from eldercare.db import resolve_url
    from eldercare.platform.repo.connections import connect

    settings = get_settings(ctx)

    async def run() -> Any:
        async with await connect(resolve_url(settings)) as conn:
            return await job(conn, settings)

    try:
        return asyncio.run(run())
    except (OSError, psycopg.Error) as exc:
        raise click.ClickException(database_error_line(exc)) from None


def _sensor_option(value: str) -> dict[str, Any]:
    parts = value.split(":")
    if len(parts) not in (2, 3) or not all(parts[:2]):
        msg = f"--sensor {value!r}: expected ID:KIND or ID:KIND:ROOM"
        raise click.ClickException(msg)
    return {"id": parts[0], "kind": parts[1], "room": parts[2] if len(parts) == 3 else None}


@gateways.command("add")
@click.argument("site")
@click.argument("gateway")
@click.option("--description", help="Shown in the consoles.")
@click.option("--sensor", "sensors", multiple=True, help="ID:KIND[:ROOM], e.g. pir-kitchen:pir:kitchen.")
@click.pass_context
def add_gateway(
    ctx: click.Context, site: str, gateway: str, description: str | None, sensors: tuple[str, ...]
) -> None:
    """Register GATEWAY at SITE and print its MQTT credentials (once: only hashes are kept).

    The same as POST /api/v1/gateways: the broker's accounts are updated when this platform
    manages them, and the revision-0 config is published retained on the gateway's config topic.
    """
    import psycopg

    from eldercare.platform import provisioning
    from eldercare.protocol import SENSOR_KINDS

    parsed = [_sensor_option(s) for s in sensors]
    for s in parsed:
        if s["kind"] not in SENSOR_KINDS:
            msg = f"--sensor {s['id']}: unknown kind {s['kind']!r}; one of {', '.join(SENSOR_KINDS)}"
            raise click.ClickException(msg)

    async def job(conn: Any, settings: Any) -> provisioning.Provisioned:
        try:
            return await provisioning.provision(
                conn, settings, gateway_id=gateway, site_id=site, description=description, sensors=parsed
            )
        except psycopg.errors.UniqueViolation:
            raise provisioning.ProvisionError("gateway", f"{gateway!r} (or that MQTT user) exists") from None
        except psycopg.errors.ForeignKeyViolation:
            raise provisioning.ProvisionError("site", f"no site {site!r}; create it first") from None

    try:
        done = _run_db(ctx, job)
    except provisioning.ProvisionError as exc:
        raise click.ClickException(str(exc)) from None
    broker = {None: "not managed by this platform", True: "accounts updated", False: "NOT updated"}
    config = "published (retained)" if done.published else "stored, NOT published (broker unreachable)"
    click.echo(f"registered gateway {gateway} at site {site}")
    click.echo(f"mqtt_username: {done.gateway['mqtt_username']}")
    click.echo(f"mqtt_password: {done.password}")
    click.echo(f"topic_prefix:  {done.topic_prefix}")
    click.echo(f"config:        revision 0 {config} on {done.topic_prefix}config")
    click.echo(f"broker:        {broker[done.broker_updated]}")
    click.echo(
        "The password is shown only now; rotate it with POST /api/v1/gateways/{id}/credentials.", err=True
    )


def _set_disabled(ctx: click.Context, gateway: str, disabled: bool) -> None:
    from datetime import UTC, datetime

    from eldercare.platform import broker_sync
    from eldercare.platform.repo import registry

    async def job(conn: Any, settings: Any) -> tuple[Any, bool | None]:
        at = datetime.now(UTC) if disabled else None
        row = await registry.update(conn, table="gateways", key={"id": gateway}, fields={"disabled_at": at})
        return row, (await broker_sync.sync_quietly(conn, settings) if row is not None else None)

    row, broker = _run_db(ctx, job)
    if row is None:
        raise click.ClickException(f"no gateway {gateway!r}")
    state = "disabled: ingest refuses its messages" if disabled else "enabled"
    account = {None: "", True: "; broker account updated", False: "; broker account NOT updated"}[broker]
    click.echo(f"gateway {gateway} {state}{account}")


@gateways.command("disable")
@click.argument("gateway")
@click.pass_context
def disable_gateway(ctx: click.Context, gateway: str) -> None:
    """Refuse GATEWAY's messages from now on (ingest is told at once); they are dead-lettered."""
    _set_disabled(ctx, gateway, True)


@gateways.command("enable")
@click.argument("gateway")
@click.pass_context
def enable_gateway(ctx: click.Context, gateway: str) -> None:
    """Accept GATEWAY's messages again."""
    _set_disabled(ctx, gateway, False)


@gateways.command("unknown-sensors")
@click.pass_context
def unknown_sensors(ctx: click.Context) -> None:
    """Sensor ids gateways sent that are not registered (their data is stored): register or remove them."""
    from eldercare.platform.repo import registry

    async def job(conn: Any, _settings: Any) -> list[dict[str, Any]]:
        return await registry.list_unknown_sensors(conn)

    for row in _run_db(ctx, job):
        click.echo(
            f"{row['site_id']}\t{row['gateway_id']}\t{row['sensor_id']}\t"
            f"first seen {row['first_seen']:%Y-%m-%d %H:%M}\tlast seen {row['last_seen']:%Y-%m-%d %H:%M}"
        )
