"""Sign-in throttling that a stranger cannot turn into a lock-out (issue 19, item 4), and the
audit of sign-ins (item 6). Time passing is simulated by ageing the stored attempts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from platform_seed import PASSWORD

from eldercare.config import Settings
from eldercare.platform.security import backoff

if TYPE_CHECKING:
    from platform_api_support import Api

pytest_plugins = ["platform_api_support"]
TOKEN = "/api/v1/auth/token"


@pytest.fixture
def proxied(settings: Settings, world: Any) -> Iterator[Api]:
    """The API behind a trusted proxy on 127.0.0.1: X-Forwarded-For names the caller."""
    from platform_api_support import Api, running

    from eldercare.platform.app import create_app

    app = create_app(settings.model_copy(update={"trusted_proxies": "127.0.0.1"}), start_engine=False)
    with running(app) as client:
        yield Api(client)


def _sign_in(api: Api, user: str, password: str, ip: str | None = None) -> Any:
    headers = {"X-Forwarded-For": ip} if ip else {}
    return api.client.post(TOKEN, data={"username": user, "password": password}, headers=headers)


def _age(db_url: str, seconds: int) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE login_attempts SET at = at - make_interval(secs => %s)", [seconds])


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff(n).total_seconds() for n in (0, 4, 5, 6, 7)] == [0, 0, 30, 60, 120]
    assert backoff(50).total_seconds() == 15 * 60


def test_a_stranger_cannot_lock_the_owner_out(proxied: Api, db_url: str) -> None:
    for _ in range(5):
        assert _sign_in(proxied, "worker2", "guess", "203.0.113.7").status_code == 401
    r = _sign_in(proxied, "worker2", PASSWORD, "203.0.113.7")
    assert r.status_code == 429 and 25 <= int(r.headers["Retry-After"]) <= 31
    # the owner, from another address, signs in at once with the right password
    assert _sign_in(proxied, "worker2", PASSWORD, "198.51.100.2").status_code == 200
    # the stranger's wait doubles with each further failure
    _age(db_url, 31)
    assert _sign_in(proxied, "worker2", "guess", "203.0.113.7").status_code == 401
    r = _sign_in(proxied, "worker2", "guess", "203.0.113.7")
    assert r.status_code == 429 and 55 <= int(r.headers["Retry-After"]) <= 61
    with psycopg.connect(db_url) as conn:
        actions = [
            a
            for (a,) in conn.execute(
                "SELECT action FROM audit_log WHERE username = 'worker2'"
                " AND action LIKE 'sign_in%%' ORDER BY id"
            )
        ]
    assert actions.count("sign_in:failed") == 6 and actions.count("sign_in:refused") == 2
    assert actions.count("sign_in") == 1


def test_success_clears_the_pair_and_the_address_limit_spans_usernames(proxied: Api, db_url: str) -> None:
    for _ in range(4):
        assert _sign_in(proxied, "worker1", "guess", "192.0.2.1").status_code == 401
    assert _sign_in(proxied, "worker1", PASSWORD, "192.0.2.1").status_code == 200
    assert _sign_in(proxied, "worker1", "guess", "192.0.2.1").status_code == 401  # counted afresh
    assert _sign_in(proxied, "worker1", PASSWORD, "192.0.2.1").status_code == 200
    # one address trying many names is stopped as an address, for every name
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO login_attempts (username, client_ip, ok)"
            " SELECT 'name-' || i, '192.0.2.99', false FROM generate_series(1, 30) i"
        )
    r = _sign_in(proxied, "family1", PASSWORD, "192.0.2.99")
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 800
    assert _sign_in(proxied, "family1", PASSWORD, "192.0.2.100").status_code == 200


def test_forwarded_for_is_ignored_from_an_untrusted_peer(api: Api, db_url: str) -> None:
    """Without ELDERCARE_TRUSTED_PROXIES every attempt counts against the real peer address."""
    for i in range(5):
        assert _sign_in(api, "worker2", "guess", f"10.0.0.{i}").status_code == 401
    assert _sign_in(api, "worker2", PASSWORD, "10.9.9.9").status_code == 429
    with psycopg.connect(db_url) as conn:
        ips = {ip for (ip,) in conn.execute("SELECT DISTINCT client_ip FROM login_attempts")}
    assert ips == {"127.0.0.1"}


def test_current_password_guesses_are_limited(proxied: Api, db_url: str) -> None:
    headers = {**proxied.as_("worker2"), "X-Forwarded-For": "203.0.113.50"}
    body = {"current_password": "guess", "new_password": "a-new-password-1"}
    for _ in range(5):
        r = proxied.client.put("/api/v1/auth/me/password", json=body, headers=headers)
        assert r.status_code == 403
    r = proxied.client.put(
        "/api/v1/auth/me/password", json={**body, "current_password": PASSWORD}, headers=headers
    )
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    with psycopg.connect(db_url) as conn:
        n = conn.execute("SELECT count(*) FROM audit_log WHERE action = 'password:wrong_current'").fetchone()
    assert n == (5,)
    _age(db_url, 31)
    r = proxied.client.put(
        "/api/v1/auth/me/password", json={**body, "current_password": PASSWORD}, headers=headers
    )
    assert r.status_code == 204


def test_every_password_hash_waits_for_the_bounded_pool(api: Api, settings: Settings, world: Any) -> None:
    """Not only sign-in: a password change, an account created or given a new password by an
    admin and a gateway's new credentials all hash on the bounded pool, so with it full each is
    refused at once (429 with Retry-After) instead of hashing on the event loop or an unbounded
    thread pool (issue 27, item 5)."""
    from eldercare.platform.security import hash_pool

    for who in ("admin", "worker2"):
        api.as_(who)  # signed in before the pool is full
    worker = next(u for u in api.get("admin", "/api/v1/users").json() if u["username"] == "worker2")
    pool = hash_pool(settings)
    saved = pool.in_flight
    pool.in_flight = pool.limit  # as if a sign-in storm held every worker and queue place
    try:
        answers = {
            "own password": api.put(
                "worker2", "/api/v1/auth/me/password",
                json={"current_password": PASSWORD, "new_password": "a-new-password-1"},
            ),
            "new account": api.post(
                "admin", "/api/v1/users",
                json={"username": "someone", "display_name": "Someone", "password": "a-new-password-1",
                      "role": "admin"},
            ),
            "account's password": api.patch(
                "admin", f"/api/v1/users/{worker['id']}", json={"password": "a-new-password-1"}
            ),
            "gateway credentials": api.post("admin", "/api/v1/gateways/gw-home-1/credentials"),
        }  # fmt: skip
    finally:
        pool.in_flight = saved
    for what, r in answers.items():
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1, (what, r.status_code, r.text)
    # and with room in the pool the same change goes through
    assert (
        api.patch("admin", f"/api/v1/users/{worker['id']}", json={"password": "a-new-password-1"}).status_code
        == 200
    )
