"""deploy/db-backup.sh as docs/operations.md ("Backup and restore") tells an operator to run it."""

from __future__ import annotations

import re
import resource
import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest
from fix_db import cloned_database

SCRIPT = Path(__file__).resolve().parents[1] / "deploy" / "db-backup.sh"


@pytest.fixture
def pg_tools(db_url: str) -> None:
    """pg_dump on PATH of the server's major version (the script needs that; the embedded server may
    be of another one)."""
    exe = shutil.which("pg_dump")
    if exe is None:
        pytest.skip("no pg_dump on PATH")
    tool = re.search(r"(\d+)\.", subprocess.run([exe, "--version"], capture_output=True, text=True).stdout)
    with psycopg.connect(db_url) as conn:
        server = int(str(conn.execute("SHOW server_version_num").fetchone()[0])) // 10000  # type: ignore[index]
    if tool is None or int(tool.group(1)) != server:
        pytest.skip(f"pg_dump {tool and tool.group(1)} cannot dump a PostgreSQL {server} server")


def backup(db_url: str, file: Path, fsize: int | None = None) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        if fsize is not None:  # as a full disk would: pg_dump's writes fail half-way
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run(
        ["sh", str(SCRIPT), "backup", db_url, str(file)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        preexec_fn=limit,
    )


@pytest.mark.usefixtures("pg_tools")
def test_a_backup_is_private_and_restores(db_url: str, pg_url: str, tmp_path: Path) -> None:
    dump = tmp_path / "eldercare.dump"
    out = backup(db_url, dump)
    assert out.returncode == 0, out.stderr
    # residents' data and every password hash: it was written 0644, readable by anyone on the host
    assert dump.stat().st_mode & 0o777 == 0o600
    with cloned_database(pg_url, "template0") as empty:
        restored = subprocess.run(
            ["sh", str(SCRIPT), "restore", str(dump), empty],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert restored.returncode == 0, restored.stderr
        with psycopg.connect(empty) as a, psycopg.connect(db_url) as b:
            q = "SELECT version_num FROM alembic_version"
            assert a.execute(q).fetchone() == b.execute(q).fetchone()


@pytest.mark.usefixtures("pg_tools")
def test_a_backup_that_fails_half_way_is_no_backup(db_url: str, tmp_path: Path) -> None:
    """pg_dump's exit status went into a pipe and was lost: a dump cut off by a full disk printed
    'backup: 65536 bytes in ...' and exited 0, a broken nightly backup nobody would hear of."""
    dump = tmp_path / "eldercare.dump"
    out = backup(db_url, dump, fsize=64 * 1024)  # a migrated database dumps to well over 64 KiB
    assert out.returncode == 1, out
    assert "backup: pg_dump failed (exit" in out.stderr and "no backup written" in out.stderr, out.stderr
    assert "bytes in" not in out.stdout, out.stdout
    assert not dump.exists()


@pytest.mark.usefixtures("pg_tools")
def test_a_backup_stopped_half_way_leaves_no_file_and_the_previous_backup_whole(
    db_url: str, tmp_path: Path
) -> None:
    """A nightly backup to one name, stopped (Ctrl-C, a timer's SIGTERM): pg_dump had already
    truncated the previous backup, and what it left was half a dump under the backup's name."""
    import os
    import signal
    import time

    dump = tmp_path / "eldercare.dump"
    assert backup(db_url, dump).returncode == 0
    previous = dump.read_bytes()
    with psycopg.connect(db_url) as holder, psycopg.connect(db_url, autocommit=True) as watcher:
        holder.execute("LOCK TABLE alerts IN ACCESS EXCLUSIVE MODE")  # pg_dump waits for it, mid-way
        proc = subprocess.Popen(
            ["sh", str(SCRIPT), "backup", db_url, str(dump)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # a group of its own: the terminal's Ctrl-C reaches every process in it
        )
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                row = watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock'"
                ).fetchone()
                if row and row[0]:
                    break
                time.sleep(0.1)
            else:
                pytest.fail("pg_dump never waited for the lock")
            os.killpg(proc.pid, signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        holder.rollback()
    assert proc.returncode == 1, (out, err)
    assert "backup: stopped: no backup written" in err, err
    assert dump.read_bytes() == previous  # the previous backup, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eldercare.dump"]  # no half file beside it
