"""``eldercare users create``: the first administrator of a new installation, made from the command
line and signing in through the API; bad input is one readable line and creates nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING

import psycopg

if TYPE_CHECKING:
    from platform_api_support import Api

pytest_plugins = ["platform_api_support"]


def users_create(db_url: str, *args: str, password: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELDERCARE_")}
    return subprocess.run(
        [sys.executable, "-m", "eldercare.cli", "users", "create", *args, "--password-stdin"],
        env=env | {"ELDERCARE_DATABASE_URL": db_url},
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_first_administrator_is_created_and_signs_in(api: Api, db_url: str) -> None:
    out = users_create(db_url, "chief", "--display-name", "Chief Admin", password="a-long-secret-1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("created admin chief (id ")
    api.login("chief", "a-long-secret-1")
    me = api.get("chief", "/api/v1/auth/me").json()
    assert (me["username"], me["role"], me["display_name"]) == ("chief", "admin", "Chief Admin")


def test_bad_input_is_one_line_and_creates_nothing(api: Api, db_url: str) -> None:
    def users() -> int:
        with psycopg.connect(db_url) as conn:
            row = conn.execute("SELECT count(*) FROM users").fetchone()
            assert row is not None
            return int(row[0])

    before = users()
    allowed = "must be 3 to 64 letters, digits or . _ @ - (no spaces)"
    cases = {
        ("chief2",): ("short", "password: must have at least 10 characters"),
        # what a username may hold, in words (was pydantic's "String should match pattern '^[A-Za-z0-9...")
        ("no spaces allowed",): ("a-long-secret-1", f"username: {allowed}"),
        ("nurse9", "--role", "care_worker", "--provider", "nope"): ("a-long-secret-1", "no provider 'nope'"),
        ("worker1",): ("a-long-secret-1", "a user named 'worker1' already exists"),  # seeded by the world
    }
    for args, (password, message) in cases.items():
        out = users_create(db_url, *args, password=password)
        assert out.returncode == 1, (args, out.stdout)
        assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1, (args, out.stderr)
    assert users() == before
