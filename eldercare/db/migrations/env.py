"""Alembic environment: runs the versioned migrations on one connection under an advisory lock.

The lock makes ``eldercare db migrate`` safe to start from several replicas at once.
"""

from __future__ import annotations

import psycopg
from alembic import context
from sqlalchemy import create_engine, pool, text

MIGRATION_LOCK = 7_305_117_001  # arbitrary, fixed: pg_advisory_lock key for migrations

# The libpq URL or key=value string is handed to psycopg as is; SQLAlchemy only wraps the connection.
url = context.config.attributes["database_url"]
engine = create_engine("postgresql+psycopg://", poolclass=pool.NullPool, creator=lambda: psycopg.connect(url))

with engine.connect() as connection:
    connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK})
    connection.commit()
    try:
        context.configure(connection=connection, target_metadata=None, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK})
        connection.commit()
engine.dispose()
