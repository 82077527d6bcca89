"""Sign-in, tokens, refresh rotation, rate limit, locale, password change (real PostgreSQL)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import jwt
import psycopg
from platform_seed import PASSWORD, World

if TYPE_CHECKING:
    from platform_api_support import Api

pytest_plugins = ["platform_api_support"]


def test_login_me_and_locale(api: Api, world: World) -> None:
    tokens = api.login("worker1")
    assert tokens["token_type"] == "bearer" and tokens["expires_in"] == 15 * 60
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert claims["sub"] == str(world.user_id("worker1")) and claims["type"] == "access"
    me = api.get("worker1", "/api/v1/auth/me").json()
    assert me["username"] == "worker1" and me["role"] == "care_worker" and me["provider_id"] == "hc-1"
    r = api.put("worker1", "/api/v1/auth/me/locale", json={"locale": "en"})
    assert r.status_code == 200 and r.json()["locale"] == "en"
    r = api.put("worker1", "/api/v1/auth/me/locale", json={"locale": "fr"})
    assert r.status_code == 422 and "locale" in r.json()["detail"]


def test_errors_speak_the_callers_language(api: Api) -> None:
    r = api.client.get("/api/v1/auth/me")
    assert r.status_code == 401 and "Authorization" in r.json()["detail"]
    r = api.client.get("/api/v1/auth/me", headers={"Accept-Language": "en"})
    assert r.json()["detail"].startswith("Sign in first")
    r = api.client.get("/api/v1/auth/me", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert "请先登录" in r.json()["detail"]
    # signed in: the account's locale (family1 is zh-CN) decides
    r = api.get("family1", "/api/v1/sites")
    assert r.status_code == 403 and "无权" in r.json()["detail"]


def test_bad_and_forged_tokens_are_refused(api: Api) -> None:
    r = api.client.post("/api/v1/auth/token", data={"username": "worker1", "password": "wrong"})
    assert r.status_code == 401
    r = api.client.post("/api/v1/auth/token", data={"username": "nobody", "password": "wrong"})
    assert r.status_code == 401
    forged = jwt.encode(
        {"sub": "1", "type": "access", "exp": 9999999999},
        "not-the-key-but-long-enough-for-hmac-sha256",
        algorithm="HS256",
    )
    r = api.client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401


def test_refresh_rotates_and_reuse_revokes_everything(api: Api) -> None:
    first = api.login("family1")
    r = api.client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 200
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    # the old one is spent; presenting it again revokes the new one too (token theft)
    r = api.client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 401
    r = api.client.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert r.status_code == 401


def test_login_rate_limit_is_stored_in_the_database(api: Api, db_url: str) -> None:
    for _ in range(5):
        r = api.client.post("/api/v1/auth/token", data={"username": "worker2", "password": "nope"})
        assert r.status_code == 401
    # even the right password is refused now, with a hint when to retry
    r = api.client.post("/api/v1/auth/token", data={"username": "worker2", "password": PASSWORD})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    with psycopg.connect(db_url) as conn:
        n = conn.execute(
            "SELECT count(*) FROM login_attempts WHERE username = 'worker2' AND NOT ok"
        ).fetchone()
        assert n == (5,)  # the refused attempt was not even checked
        conn.execute("UPDATE login_attempts SET at = at - interval '1 hour'")  # another replica, later
    assert (
        api.client.post("/api/v1/auth/token", data={"username": "worker2", "password": PASSWORD}).status_code
        == 200
    )


def test_password_change_and_disabled_account(api: Api, world: World) -> None:
    r = api.put(
        "worker2", "/api/v1/auth/me/password", json={"current_password": "x", "new_password": "a" * 12}
    )
    assert r.status_code == 403
    r = api.put(
        "worker2", "/api/v1/auth/me/password", json={"current_password": PASSWORD, "new_password": "b" * 12}
    )
    assert r.status_code == 204
    api.login("worker2", "b" * 12)
    r = api.delete("admin", f"/api/v1/users/{world.user_id('worker2')}")
    assert r.status_code == 204
    r = api.get("worker2", "/api/v1/auth/me")  # the old access token no longer works
    assert r.status_code == 401


def test_serve_command_is_registered() -> None:
    from click.testing import CliRunner

    from eldercare.cli import cli

    result = CliRunner().invoke(cli, ["serve", "--help"])
    assert result.exit_code == 0 and "--no-engine" in result.output and "--port" in result.output
    # a port no socket can have is one readable line, not a server "running on :99999"
    bad = CliRunner().invoke(cli, ["serve", "--port", "99999"])
    assert bad.exit_code == 2 and "'--port': 99999 is not in the range 0<=x<=65535" in bad.output, bad.output


def test_message_catalog_is_complete_in_both_languages() -> None:
    from eldercare.i18n import negotiate
    from eldercare.platform.errors import message

    assert (
        message("role.denied", "zh-CN", role="family", action="manage the registry")
        == "您的角色（家属）无权管理登记信息。"
    )
    assert negotiate("fr-FR,en;q=0.5") == "en" and negotiate(None) == "zh-CN"
