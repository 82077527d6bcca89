"""Tokens do not outlive their session (issue 19, item 8): logout and a password change revoke
access tokens at once; WebSockets authenticate without the token in the URL and close when it
expires; seeded accounts use production hashing and a private manifest."""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import psycopg
import pytest
from platform_seed import PASSWORD, World, seed_world
from server_support import serving
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from eldercare.config import Settings
from eldercare.platform.security import create_access_token, decode_access_token

if TYPE_CHECKING:
    from platform_api_support import Api

pytest_plugins = ["platform_api_support"]


def test_logout_revokes_the_access_token(api: Api) -> None:
    headers = api.as_("worker1")
    assert api.client.get("/api/v1/auth/me", headers=headers).status_code == 200
    assert api.client.post("/api/v1/auth/logout", headers=headers).status_code == 204
    r = api.client.get("/api/v1/auth/me", headers=headers)
    assert r.status_code == 401 and r.json()["detail"]


def test_password_change_revokes_every_access_token(api: Api) -> None:
    first = {"Authorization": f"Bearer {api.login('worker2')['access_token']}"}
    second = {"Authorization": f"Bearer {api.login('worker2')['access_token']}"}
    body = {"current_password": PASSWORD, "new_password": "a-new-password-1"}
    assert api.client.put("/api/v1/auth/me/password", json=body, headers=first).status_code == 204
    for headers in (first, second):
        assert api.client.get("/api/v1/auth/me", headers=headers).status_code == 401
    assert api.login("worker2", "a-new-password-1")["access_token"]


def test_admin_password_reset_revokes_access_tokens(api: Api, world: World) -> None:
    headers = api.as_("family1")
    uid = world.user_id("family1")
    assert (
        api.patch("admin", f"/api/v1/users/{uid}", json={"password": "reset-by-admin-1"}).status_code == 200
    )
    assert api.client.get("/api/v1/auth/me", headers=headers).status_code == 401


@pytest.fixture
def ws_world(db_url: str) -> World:
    with psycopg.connect(db_url) as conn:
        return seed_world(conn)


@pytest.fixture
def app(settings: Settings, ws_world: World) -> Any:
    from eldercare.platform.app import create_app

    return create_app(settings)


@pytest.fixture
def server(app: Any) -> Iterator[str]:
    with serving(app) as port:
        yield f"127.0.0.1:{port}"


def _token(base: str, username: str) -> str:
    r = httpx.post(f"http://{base}/api/v1/auth/token", data={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def _closed_with(ws: Any, timeout: float = 10) -> int:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=timeout)
    assert closed.value.rcvd is not None
    return int(closed.value.rcvd.code)


def test_websocket_takes_the_token_as_a_subprotocol_or_first_message(server: str) -> None:
    token = _token(server, "worker1")
    with connect(f"ws://{server}/api/v1/ws", subprotocols=["eldercare.v1", f"bearer.{token}"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "eldercare.v1"
        hello = json.loads(ws.recv(timeout=10))
        assert hello == {"type": "hello", "user": "worker1", "role": "care_worker"}
    with connect(f"ws://{server}/api/v1/ws") as ws:
        ws.send(json.dumps({"type": "auth", "token": token}))
        assert json.loads(ws.recv(timeout=10))["user"] == "worker1"
        ws.send("ping")
        assert json.loads(ws.recv(timeout=10)) == {"type": "pong"}
    with connect(f"ws://{server}/api/v1/ws") as ws:
        ws.send(json.dumps({"type": "auth", "token": "forged"}))
        assert _closed_with(ws) == 4401


def test_websocket_survives_messages_that_are_not_tokens(server: str) -> None:
    """Deep nesting, a megabyte of text or a binary frame, before or after sign-in: a refusal or a
    pong, never a crashed handler (``[[[[...`` once raised RecursionError in the server)."""
    token = _token(server, "worker1")
    for junk in ("[" * 100_000, "x" * 1_000_000, b"\x00\x01"):
        with connect(f"ws://{server}/api/v1/ws", max_size=None) as ws:
            ws.send(junk)
            assert _closed_with(ws) == 4401
        with connect(f"ws://{server}/api/v1/ws", subprotocols=["eldercare.v1", f"bearer.{token}"]) as ws:  # type: ignore[list-item]
            assert json.loads(ws.recv(timeout=10))["type"] == "hello"
            ws.send(junk)
            assert json.loads(ws.recv(timeout=10)) == {"type": "pong"}
            ws.send("ping")  # still served
            assert json.loads(ws.recv(timeout=10)) == {"type": "pong"}


def test_websocket_closes_when_its_token_expires_unless_renewed(
    server: str, app: Any, settings: Settings
) -> None:
    """The app's clock is moved instead of waiting for a token to run out. Every token here stays
    valid in real time for minutes, so only the socket's own expiry check (on the app's clock) can
    close it, however slow the machine."""
    from eldercare.platform.state import app_state

    ahead = [0.0]  # seconds the app's clock runs ahead of the wall clock
    app_state(app).clock = lambda: time.time() + ahead[0]
    life = timedelta(minutes=settings.access_token_minutes)
    with psycopg.connect(str(settings.database_url.get_secret_value())) as conn:  # type: ignore[union-attr]
        uid, ver = conn.execute("SELECT id, token_version FROM users WHERE username = 'worker1'").fetchone()  # type: ignore[misc]

    def expiring_in(left: timedelta) -> tuple[str, int]:
        """A token (issued in the past, so valid now) that expires ``left`` from now, and its expiry."""
        issued = datetime.now(UTC) - life + left
        token = create_access_token(settings, user_id=uid, role="care_worker", version=ver, now=issued)
        return token, int(decode_access_token(settings, token)["exp"])

    # Left alone, the socket is closed by the server when its token expires: a second after it opens.
    short, expires = expiring_in(timedelta(minutes=2))
    ahead[0] = expires - time.time() - 1.0
    with connect(f"ws://{server}/api/v1/ws", subprotocols=["eldercare.v1", f"bearer.{short}"]) as ws:  # type: ignore[list-item]
        assert json.loads(ws.recv(timeout=10))["type"] == "hello"
        assert _closed_with(ws) == 4401  # the event proving the server acted: it closed the socket
    # Renewed before it expires, the socket outlives the first token, and closes at the new one's expiry.
    ahead[0] = 0.0
    fresh = _token(server, "worker1")
    fresh_expires = int(decode_access_token(settings, fresh)["exp"])
    short, expires = expiring_in(timedelta(minutes=2))
    with connect(f"ws://{server}/api/v1/ws", subprotocols=["eldercare.v1", f"bearer.{short}"]) as ws:  # type: ignore[list-item]
        assert json.loads(ws.recv(timeout=10))["type"] == "hello"
        ws.send(json.dumps({"type": "auth", "token": fresh}))
        renewed = json.loads(ws.recv(timeout=10))
        assert renewed["type"] == "auth_ok" and renewed["expires_at"] == fresh_expires
        assert fresh_expires > expires + 60
        ahead[0] = expires + 1 - time.time()  # the app's clock past the first token's expiry
        # the server checks the time after answering: the second pong proves a check past expiry
        for _ in range(2):
            ws.send("ping")
            assert json.loads(ws.recv(timeout=10)) == {"type": "pong"}
        ahead[0] = fresh_expires + 1 - time.time()  # and past the renewed one's: the next check closes it
        ws.send("ping")
        assert _closed_with(ws) == 4401


def test_websocket_refuses_a_revoked_token(server: str) -> None:
    token = _token(server, "worker1")
    r = httpx.post(f"http://{server}/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 204
    with connect(f"ws://{server}/api/v1/ws", subprotocols=["eldercare.v1", f"bearer.{token}"]) as ws:  # type: ignore[list-item]
        assert _closed_with(ws) == 4401


def test_seeded_people_use_production_hashing_and_the_manifest_is_private(
    db_url: str, tmp_path: Path
) -> None:
    from argon2 import PasswordHasher
    from argon2.exceptions import InvalidHashError
    from click.testing import CliRunner

    from eldercare.cli import cli

    manifest = tmp_path / "m.json"
    manifest.write_text("{}")
    manifest.chmod(0o644)  # an older, world-readable manifest is tightened when rewritten
    res = CliRunner().invoke(
        cli,
        ["simulate", "seed", "--homes", "2", "--stations", "1", "--seed", "3", "-o", str(manifest)],
        env={"ELDERCARE_DATABASE_URL": db_url},
    )
    assert res.exit_code == 0, res.output
    assert stat.S_IMODE(manifest.stat().st_mode) == 0o600
    production = PasswordHasher()
    with psycopg.connect(db_url) as conn:
        hashes = [h for (h,) in conn.execute("SELECT password_hash FROM users")]
    assert hashes
    for h in hashes:
        try:
            assert not production.check_needs_rehash(h), h[:40]  # same parameters as real accounts
        except InvalidHashError:  # pragma: no cover - a hash argon2 cannot read fails the test
            pytest.fail(f"not an argon2 hash: {h[:20]}")


def test_an_open_websocket_closes_when_its_token_is_revoked(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from eldercare.platform.routes import ws as ws_route

    monkeypatch.setattr(ws_route, "RECHECK_S", 0.3)  # the server runs in this process
    token = _token(server, "worker1")
    with connect(f"ws://{server}/api/v1/ws", subprotocols=["eldercare.v1", f"bearer.{token}"]) as ws:  # type: ignore[list-item]
        assert json.loads(ws.recv(timeout=10))["type"] == "hello"
        r = httpx.post(f"http://{server}/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 204
        assert _closed_with(ws) == 4401  # the event proving the server noticed
