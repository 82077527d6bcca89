"""Versioned schema migrations (Alembic, raw SQL), applied by ``eldercare db migrate``.

Migrations live in ``eldercare/db/migrations/versions``; each is a numbered revision. Upgrading is
idempotent and safe to start from several replicas at once (the environment holds an advisory lock).
"""

from __future__ import annotations

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


def upgrade(url: str, *, timescale: str = "auto", revision: str = "head") -> None:
    """Apply every pending migration (a no-op when the database is current).

    On plain PostgreSQL it also creates the time partitions around today, so a freshly migrated
    database accepts writes at once; ``eldercare db maintain`` keeps creating them ahead.
    """
    from eldercare.db import maintain

    command.upgrade(alembic_config(url, timescale=timescale), revision)
    with psycopg.connect(url, autocommit=True) as conn:
        if not maintain.is_timescale(conn):
            now = datetime.now(UTC)
            maintain.ensure_partitions(conn, now - timedelta(days=1), now + timedelta(days=7))


@dataclass(frozen=True)
class MigrationStatus:
    current: str | None
    head: str
    applied: list[str]
    pending: list[str]
    timescale: bool | None

    @property
    def up_to_date(self) -> bool:
        return not self.pending


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
    return MigrationStatus(
        current=current,
        head=script.get_current_head() or "",
        applied=ordered[:upto],
        pending=ordered[upto:],
        timescale=timescale,
    )
