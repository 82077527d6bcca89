"""Versioned schema migrations (Alembic, raw SQL), applied by ``eldercare db migrate``.

Migrations live in ``eldercare/db/migrations/versions``; each is a numbered revision. Upgrading is
idempotent and safe to start from several replicas at once (the environment holds an advisory lock).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, pool, text

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
log = logging.getLogger(__name__)


class TimescaleUnavailable(RuntimeError):
    """``ELDERCARE_TIMESCALE=on`` on a server that cannot give TimescaleDB; the message says why."""


@dataclass(frozen=True)
class TimescaleChoice:
    """Which storage path migrations take, and why (logged and shown by ``eldercare db migrate``)."""

    use: bool
    reason: str


def choose_timescale(
    mode: str, *, available: bool, preloaded: bool, created: bool = False
) -> TimescaleChoice:
    """Decide the path from what the server offers, before anything is created.

    ``CREATE EXTENSION timescaledb`` on a server that has the files but not the library in
    ``shared_preload_libraries`` raises FATAL, which ends the session (no savepoint catches it), so
    ``auto`` must not try it: it asks the server's settings first.
    """
    if mode == "off":
        return TimescaleChoice(False, "ELDERCARE_TIMESCALE=off")
    if created or (available and preloaded):
        return TimescaleChoice(True, "timescaledb is installed and in shared_preload_libraries")
    if available:
        why = (
            "timescaledb is installed but not in shared_preload_libraries"
            " (add it there and restart the server to use it)"
        )
    else:
        why = "the timescaledb extension is not installed in this server"
    if mode == "on":
        raise TimescaleUnavailable(f"ELDERCARE_TIMESCALE=on but {why}")
    return TimescaleChoice(False, why + "; using plain PostgreSQL partitions")


def preload_libraries(setting: str) -> set[str]:
    """The library names of a ``shared_preload_libraries`` value (``'$libdir/timescaledb', x``)."""
    names = set()
    for item in setting.split(","):
        name = item.strip().strip('"').rsplit("/", 1)[-1]
        if name:
            names.add(name.removesuffix(".so"))
    return names


def probe_timescale(conn: psycopg.Connection, mode: str = "auto") -> TimescaleChoice:
    """:func:`choose_timescale` on this server: catalogue and settings reads only, nothing loaded."""
    row = conn.execute(
        """
        SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'),
               EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'),
               current_setting('shared_preload_libraries')
        """
    ).fetchone()
    assert row is not None
    available, created, preload = bool(row[0]), bool(row[1]), str(row[2])
    return choose_timescale(
        mode, available=available, preloaded="timescaledb" in preload_libraries(preload), created=created
    )


def engine(url: str) -> Engine:
    """A SQLAlchemy engine over psycopg 3 for any libpq URL or ``key=value`` connection string."""
    return create_engine(
        "postgresql+psycopg://", poolclass=pool.NullPool, creator=lambda: psycopg.connect(url)
    )


def alembic_config(url: str, *, timescale: str = "auto") -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["database_url"] = url
    cfg.attributes["timescale"] = timescale
    return cfg


def upgrade(url: str, *, timescale: str = "auto", revision: str = "head") -> TimescaleChoice:
    """Apply every pending migration (a no-op when the database is current); returns the path taken.

    ``auto`` is resolved to ``on`` or ``off`` here, from the server's catalogue and settings, so the
    migrations never try to load an extension the server cannot load. On plain PostgreSQL it also
    creates the time partitions around today, so a freshly migrated database accepts writes at
    once; ``eldercare db maintain`` keeps creating them ahead.
    """
    from eldercare.db import maintain

    with psycopg.connect(url, autocommit=True) as conn:
        choice = probe_timescale(conn, timescale)
    log.info("storage: %s (%s)", "TimescaleDB" if choice.use else "plain PostgreSQL", choice.reason)
    command.upgrade(alembic_config(url, timescale="on" if choice.use else "off"), revision)
    with psycopg.connect(url, autocommit=True) as conn:
        now = datetime.now(UTC)  # on TimescaleDB: the dedup log's only
        maintain.ensure_partitions(conn, now - timedelta(days=1), now + timedelta(days=7))
    return choice


@dataclass(frozen=True)
class MigrationStatus:
    current: str | None
    head: str
    applied: list[str]
    pending: list[str]
    timescale: bool | None

    @property
    def unknown(self) -> bool:
        """The database is at a revision this release does not have (a newer release migrated it)."""
        return self.current is not None and self.current not in self.applied

    @property
    def up_to_date(self) -> bool:
        return not self.pending and not self.unknown


def status(url: str) -> MigrationStatus:
    """Which revisions are applied and which are pending, without changing anything."""
    script = ScriptDirectory.from_config(alembic_config(url))
    ordered = [rev.revision for rev in reversed(list(script.walk_revisions()))]
    eng = engine(url)
    try:
        with eng.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
            timescale = None
            if current is not None:
                value = conn.execute(text("SELECT value FROM meta WHERE key = 'timescale'")).scalar()
                timescale = value == "true"
    finally:
        eng.dispose()
    upto = ordered.index(current) + 1 if current in ordered else 0
    # a revision unknown here was made by a newer release: nothing of ours is "pending" on it
    unknown = current is not None and current not in ordered
    return MigrationStatus(
        current=current,
        head=script.get_current_head() or "",
        applied=ordered[:upto],
        pending=[] if unknown else ordered[upto:],
        timescale=timescale,
    )
