"""``eldercare db``: migrate, status, maintain."""

from __future__ import annotations

import json
import time

import click

from eldercare.cli_settings import get_settings


@click.group()
def db() -> None:
    """Migrate, inspect and maintain the database."""


@db.command()
@click.pass_context
def migrate(ctx: click.Context) -> None:
    """Apply pending migrations, then one maintenance pass (idempotent)."""
    import psycopg

    from eldercare.db import maintain as maint
    from eldercare.db import resolve_url, retention_policy
    from eldercare.db.migrate import status, upgrade

    settings = get_settings(ctx)
    url = resolve_url(settings)
    before = status(url)
    if before.unknown:
        raise click.ClickException(f"migration failed: {_newer(before.current, before.head)}")
    try:
        choice = upgrade(url, timescale=settings.timescale)
    except Exception as exc:  # alembic wraps driver errors; show the cause in one line
        raise click.ClickException(f"migration failed: {exc}") from exc
    after = status(url)
    with psycopg.connect(url, autocommit=True) as conn:
        maint.run(conn, retention_policy(settings))
    applied = [r for r in after.applied if r not in before.applied]
    flavour = "TimescaleDB" if after.timescale else "plain PostgreSQL"
    why = choice.reason if before.current is None else "chosen when the database was created"
    click.echo(f"applied {len(applied)} migration(s) {applied or ''}; at {after.current} ({flavour}: {why})")


@db.command("status")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def status_cmd(ctx: click.Context, as_json: bool) -> None:
    """Show applied and pending migrations."""
    from eldercare.db import resolve_url
    from eldercare.db.migrate import status

    st = status(resolve_url(get_settings(ctx)))
    if as_json:
        click.echo(json.dumps(st.__dict__ | {"up_to_date": st.up_to_date}))
        return
    flavour = {True: "TimescaleDB", False: "plain PostgreSQL", None: "not migrated"}[st.timescale]
    click.echo(f"current: {st.current or '(none)'}   head: {st.head}   storage: {flavour}")
    if st.unknown:
        click.echo(f"  {_newer(st.current, st.head)}")
    for rev in st.applied:
        click.echo(f"  [x] {rev}")
    for rev in st.pending:
        click.echo(f"  [ ] {rev}")


@db.command()
@click.option(
    "--loop",
    "interval",
    type=click.IntRange(min=10),
    default=None,
    help="Run again every INTERVAL seconds instead of once.",
)
@click.pass_context
def maintain(ctx: click.Context, interval: int | None) -> None:
    """Create partitions ahead, apply retention, refresh the hourly rollup, prune dedup."""
    import psycopg

    from eldercare.db import maintain as maint
    from eldercare.db import resolve_url, retention_policy

    settings = get_settings(ctx)
    url = resolve_url(settings)
    while True:
        with psycopg.connect(url, autocommit=True) as conn:
            report = maint.run(conn, retention_policy(settings))
        click.echo(json.dumps(report.__dict__))
        if interval is None:
            return
        time.sleep(interval)


def _newer(current: str | None, head: str) -> str:
    return (
        f"the database is at revision {current}, which this release (head {head}) does not have: "
        "a newer release migrated it; run that release or a later one"
    )
