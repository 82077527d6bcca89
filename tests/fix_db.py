"""PostgreSQL fixtures (a pytest plugin loaded by tests/conftest.py).

Which servers the run uses is ``ELDERCARE_TEST_SERVERS`` (see :func:`servers_mode`): ``real``
(required: an unreachable one fails the run, it is never skipped), ``embedded`` (started by the run,
the real ones are not even probed) or ``auto`` (the real ones when they answer, else embedded);
unset, it is ``real`` with ``CI=true`` and ``auto`` otherwise. The real PostgreSQL is
``ELDERCARE_TEST_DATABASE_URL`` if set, else the server at ``ELDERCARE_TEST_PG_PROBE`` (default
127.0.0.1:5432, user postgres, trust). The embedded one (one per test run, shared by the xdist
workers) listens on a Unix socket only: every helper here takes such URLs as well as TCP ones.

Each test gets its own database, cloned from a template migrated once per session and worker.
Names carry their creation time, so databases left behind by a killed run are dropped by a later
one; several runs (other developers, other checkouts) may share one server safely.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import secrets
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from urllib.parse import quote, urlencode

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from eldercare.config import Settings
from eldercare.embedded import EmbeddedPostgres

log = logging.getLogger(__name__)

DEFAULT_PG_PROBE = "127.0.0.1:5432"
STALE_AFTER_S = 2 * 3600  # older test databases belong to runs that died; drop them
OUR_DATABASES = re.compile(r"^(?:t|tpl)_(\d{10})_[0-9a-f]+(?:_\w+)?$")


SERVERS_ENV = "ELDERCARE_TEST_SERVERS"
SERVER_MODES = ("real", "embedded", "auto")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def servers_mode() -> str:
    """``ELDERCARE_TEST_SERVERS``: real, embedded or auto; unset: real in CI, else auto.

    .ci/run sets it for each of its two runs (real servers, then a network namespace where nothing
    listens); ``CI=true`` alone still means real, so a CI without .ci/run cannot fall back silently.
    """
    mode = os.environ.get(SERVERS_ENV, "").strip().lower()
    if not mode:
        return "real" if in_ci() else "auto"
    if mode not in SERVER_MODES:
        msg = f"{SERVERS_ENV} must be one of {', '.join(SERVER_MODES)}, not {mode!r}"
        raise ValueError(msg)
    return mode


def real_required_by() -> str:
    """Which setting demands the real servers, for error messages."""
    return f"{SERVERS_ENV}=real" if os.environ.get(SERVERS_ENV, "").strip() else "CI=true"


def worker_id() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def unique_tag() -> str:
    """16 hex digits (64 random bits) for names on servers shared by many runs: 500 of them collide
    once in ~10^14 runs (24 bits collided once in ~130)."""
    return secrets.token_hex(8)


def url_params(url: str) -> dict[str, str]:
    """A PostgreSQL URL's connection parameters, parsed as libpq does (a TCP host or, as with the
    embedded server, ``?host=/socket/dir``)."""
    return {k: str(v) for k, v in conninfo_to_dict(url).items() if v is not None}


def url_of(params: Mapping[str, str]) -> str:
    """A ``postgresql://`` URL (what ``Settings.database_url`` accepts) from connection parameters;
    a Unix-socket host (a directory) or several hosts go in the query, as libpq reads them there."""
    p = dict(params)
    user, password = p.pop("user", ""), p.pop("password", None)
    host, port, dbname = p.pop("host", ""), p.pop("port", ""), p.pop("dbname", "")
    auth = quote(user, safe="")
    if password is not None:
        auth += ":" + quote(password, safe="")
    netloc = f"{auth}@" if auth else ""
    if host.startswith("/") or "," in host:
        p = {"host": host, **({"port": port} if port else {}), **p}
    else:
        netloc += f"[{host}]" if ":" in host else host
        netloc += f":{port}" if port else ""
    query = f"?{urlencode(p, safe='/', quote_via=quote)}" if p else ""
    return f"postgresql://{netloc}/{quote(dbname, safe='')}{query}"


def with_database(url: str, name: str) -> str:
    """The same server URL with another database (TCP, or the embedded server's Unix socket)."""
    return url_of({**url_params(url), "dbname": name})


def server_address(url: str) -> str:
    """Where the server of ``url`` is, for messages: ``host:port`` or the socket directory."""
    p = url_params(url)
    host = p.get("host", "") or "(libpq default socket)"
    return host if host.startswith("/") else f"{host}:{p.get('port', '5432')}"


def real_pg_url() -> str:
    explicit = os.environ.get("ELDERCARE_TEST_DATABASE_URL")
    if explicit:
        return explicit
    hostport = os.environ.get("ELDERCARE_TEST_PG_PROBE", DEFAULT_PG_PROBE)
    return f"postgresql://postgres@{hostport}/postgres"


def pg_unreachable(url: str) -> str | None:
    """None if a query goes through, else why not."""
    try:
        with psycopg.connect(url, connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None


def _drop(conn: psycopg.Connection, name: str) -> None:
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _drop_now(pg_url: str, name: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        _drop(conn, name)


def _drop_stale(conn: psycopg.Connection) -> None:
    names = [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname ~ '^tpl?_[0-9]'")]
    for name in names:
        m = OUR_DATABASES.match(name)
        if m and time.time() - int(m.group(1)) > STALE_AFTER_S:
            _drop(conn, name)


def _migrate() -> Callable[[str], None]:
    try:
        from eldercare.db.migrate import upgrade
    except ImportError as exc:
        pytest.fail(f"eldercare.db.migrate is not importable, so no test database can be built: {exc}")
    return upgrade


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """Server-level URL (database ``postgres``) of the real or embedded PostgreSQL."""
    mode = servers_mode()
    explicit = os.environ.get("ELDERCARE_TEST_DATABASE_URL")
    if mode == "embedded" and explicit:
        pytest.fail(f"ELDERCARE_TEST_DATABASE_URL is set but {SERVERS_ENV}=embedded", pytrace=False)
    if mode != "embedded":
        url = real_pg_url()
        why = pg_unreachable(url)
        if why is None:
            yield url
            return
        where = server_address(url)
        if mode == "real":
            msg = f"{real_required_by()} needs PostgreSQL at {where}, which is unreachable: {why}"
            pytest.fail(msg, pytrace=False)
        if explicit:
            pytest.fail(f"ELDERCARE_TEST_DATABASE_URL {where} is unreachable: {why}", pytrace=False)
    # one embedded server per run: xdist workers share it through the run id
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID", uuid.uuid4().hex)[:12]
    server = EmbeddedPostgres(os.path.join(tempfile.gettempdir(), f"eldercare-test-pg-{run}"), ephemeral=True)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def timescale_available(pg_url: str) -> bool:
    """The server can give TimescaleDB: installed AND preloaded (the migrations' own test)."""
    from eldercare.db.migrate import probe_timescale

    with psycopg.connect(pg_url, autocommit=True) as conn:
        return probe_timescale(conn).use


@pytest.fixture(scope="session")
def template_db(pg_url: str) -> Iterator[str]:
    """A database migrated to head once per session and worker: the template of every ``db_url``."""
    upgrade = _migrate()
    name = f"tpl_{int(time.time())}_{unique_tag()}_{worker_id()}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        _drop_stale(conn)
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        upgrade(with_database(pg_url, name))
        with psycopg.connect(pg_url, autocommit=True) as conn:
            # CREATE DATABASE ... TEMPLATE refuses while anyone (a TimescaleDB worker) is connected
            conn.execute(
                sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(name))
            )
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        yield name
    finally:
        _drop_now(pg_url, name)


class Dropper:
    """Drops finished test databases on a thread of its own.

    DROP DATABASE waits for a checkpoint, which takes seconds on a busy server; no test needs to
    wait for that. Whatever is queued is dropped together, up to :attr:`BATCH` at once, each on its
    own connection, so the drops can share checkpoints (on a busy server one drop alone took 2.4 s,
    two at once 2.6 s): dropped one by one, the backlog of a loaded run grew to a minute or more,
    all waited for in the last test's teardown, inside its pytest-timeout. ``close()`` waits
    until every database handed over is gone.
    """

    BATCH = 6  # connections at once: the server allows 100 in all, and the tests need most

    def __init__(self, pg_url: str) -> None:
        self.pg_url = pg_url
        self._names: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="test-db-dropper", daemon=True)
        self._thread.start()

    def drop(self, name: str) -> None:
        self._names.put(name)

    def close(self) -> None:
        self._names.put(None)
        self._thread.join()

    def _run(self) -> None:
        done = False
        while not done:
            batch: list[str] = []
            name = self._names.get()
            while name is not None:
                batch.append(name)
                if len(batch) == self.BATCH:
                    break
                try:
                    name = self._names.get_nowait()
                except queue.Empty:
                    break
            done = name is None
            drops = [threading.Thread(target=self._drop_one, args=(n,), daemon=True) for n in batch]
            for t in drops:
                t.start()
            for t in drops:
                t.join()

    def _drop_one(self, name: str) -> None:
        try:
            with psycopg.connect(self.pg_url, autocommit=True) as conn:
                _drop(conn, name)
        except psycopg.Error as exc:  # a later run drops it as stale
            log.warning("could not drop test database %s: %s", name, exc)


@contextlib.contextmanager
def cloned_database(pg_url: str, template: str, drop: Callable[[str], None] | None = None) -> Iterator[str]:
    """A new database copied from ``template``, dropped on exit (by ``drop``, else at once) even if
    connections to it remain."""
    name = f"t_{int(time.time())}_{unique_tag()}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template))
        )
    try:
        yield with_database(pg_url, name)
    finally:
        if drop is not None:
            drop(name)
        else:
            _drop_now(pg_url, name)


@pytest.fixture(scope="session")
def _dropper(pg_url: str) -> Iterator[Dropper]:
    dropper = Dropper(pg_url)
    yield dropper
    dropper.close()


@pytest.fixture
def db_url(pg_url: str, template_db: str, _dropper: Dropper) -> Iterator[str]:
    """URL of a fresh, migrated database of this test alone, dropped afterwards."""
    with cloned_database(pg_url, template_db, _dropper.drop) as url:
        yield url


@pytest.fixture
def db_conn(db_url: str) -> Iterator[psycopg.Connection]:
    """An open connection to this test's database (autocommit off: commit what others must see)."""
    conn = psycopg.connect(db_url)
    try:
        yield conn
    finally:
        conn.close()  # rolls back what the test left uncommitted


@pytest.fixture
def settings(db_url: str, mqtt_url: str, mqtt_is_v5: bool, topic_root: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=db_url,  # type: ignore[arg-type]
        mqtt_url=mqtt_url,  # type: ignore[arg-type]
        mqtt_protocol="5" if mqtt_is_v5 else "3.1.1",
        mqtt_topic_root=topic_root,
        data_dir=tmp_path,
        environment="test",
    )
