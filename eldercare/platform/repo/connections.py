"""The connections every repository function takes: autocommit, rows as dicts (``dict_row``).

Built here, once, so the API's pool, the engine's, the push hub's and the CLI's one-off connections
all hand rows out the same way, and no module of SQL needs row helpers of its own.
"""

from __future__ import annotations

from typing import Any, TypeAlias

from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

Conn: TypeAlias = AsyncConnection[DictRow]
Pool: TypeAlias = AsyncConnectionPool[Conn]
Row: TypeAlias = dict[str, Any]


def open_pool(
    conninfo: str, *, min_size: int, max_size: int, name: str | None = None, options: str | None = None
) -> Pool:
    """A pool (not yet open: ``await pool.open()`` or ``async with``) of autocommit dict-row
    connections; ``options`` are server settings such as ``-c lock_timeout=...``."""
    kwargs: dict[str, Any] = {"autocommit": True, "row_factory": dict_row}
    if options:
        kwargs["options"] = options
    return AsyncConnectionPool(
        conninfo,
        connection_class=AsyncConnection[DictRow],
        kwargs=kwargs,
        min_size=min_size,
        max_size=max_size,
        open=False,
        name=name,
    )


async def connect(conninfo: str, *, autocommit: bool = True) -> Conn:
    """One connection like the pool's, for a command or a test outside the API."""
    return await AsyncConnection.connect(conninfo, autocommit=autocommit, row_factory=dict_row)
