"""``eldercare serve`` (the API, the alert engine and the consoles in one process, uvicorn) and
``eldercare broker`` (the broker's accounts generated from the registry)."""

from __future__ import annotations

import sys

import click

from eldercare.cli import get_settings


@click.command()
@click.option("--host", default=None, help="Listen address (default: settings.http_host).")
@click.option("--port", type=int, default=None, help="Listen port (default: settings.http_port).")
@click.option("--no-engine", is_flag=True, help="Serve the API only; run no alert engine work here.")
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None, no_engine: bool) -> None:
    """Run the HTTP API, the alert engine and the web consoles.

    运行 HTTP 接口、告警引擎和网页控制台。
    """
    import uvicorn

    from eldercare.platform.app import create_app

    settings = get_settings(ctx)
    app = create_app(settings, start_engine=not no_engine)
    uvicorn.run(
        app,
        host=host or settings.http_host,
        port=port if port is not None else settings.http_port,
        log_level=settings.log_level.lower(),
        proxy_headers=True,
    )


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

    settings = get_settings(ctx)
    if not broker_sync.enabled(settings):
        msg = "set ELDERCARE_BROKER_PASSWORD_FILE and ELDERCARE_BROKER_ACL_FILE (see docs/operations.md)"
        raise click.ClickException(msg)

    async def run() -> broker_sync.SyncResult:
        async with await psycopg.AsyncConnection.connect(resolve_url(settings), autocommit=True) as conn:
            return await broker_sync.sync(conn, settings, force_reload=True)

    try:
        result = asyncio.run(run())
    except (OSError, psycopg.Error) as exc:
        raise click.ClickException(str(exc)) from None
    state = "written" if result.changed else "unchanged"
    reload = ", ".join(result.reloaded) or "no reload configured"
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
@click.option("--locale", type=click.Choice(["zh-CN", "en"]), default="zh-CN", show_default=True)
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
    from eldercare.platform.repo import users as users_repo
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
        err = exc.errors()[0]
        raise click.ClickException(f"{err['loc'][0]}: {err['msg']}") from None

    async def run() -> dict[str, object]:
        async with await psycopg.AsyncConnection.connect(resolve_url(settings), autocommit=True) as conn:
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
        raise click.ClickException(str(exc).strip().splitlines()[0]) from None
    click.echo(f"created {row['role']} {row['username']} (id {row['id']})")
