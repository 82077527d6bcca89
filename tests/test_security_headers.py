"""Security headers on every response, a CSP the consoles satisfy, and webhook targets refused in
internal ranges (issue 19, item 9)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from eldercare.config import Settings
from eldercare.platform.web import catalogue_js

if TYPE_CHECKING:
    from platform_api_support import Api

pytest_plugins = ["platform_api_support"]
STATIC = Path(__file__).parents[1] / "eldercare" / "platform" / "web" / "static"


def _hardened(r: Any) -> str:
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["x-frame-options"] == "DENY"
    csp = r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
    return str(csp)


def test_every_kind_of_answer_carries_the_headers(api: Api) -> None:
    page = api.client.get("/web/")
    csp = _hardened(page)
    assert "script-src 'self';" in csp and "style-src 'self';" in csp and "unsafe-inline" not in csp
    assert "ws://testserver" in csp  # the console's own WebSocket
    for r in (
        api.client.get("/api/v1/residents"),  # 401
        api.get("family1", "/api/v1/sites"),  # 403
        api.get("admin", "/api/v1/residents"),  # 200
        api.client.post(
            "/api/v1/auth/token", data={"username": "a\x00", "password": "x"}
        ),  # 422 (middleware)
        api.get("admin", "/api/v1/alerts/1"),  # 404
        api.client.get("/web/static/app.js"),
    ):
        _hardened(r)
    assert api.get("admin", "/api/v1/residents").headers["cache-control"] == "no-store"
    assert "cdn.jsdelivr.net" in api.client.get("/docs").headers["content-security-policy"]


def test_a_trailing_slash_never_redirects_to_a_host_or_scheme_the_request_named(api: Api) -> None:
    """GET /api/v1/residents/ answered 307 to http://<any Host the client sent>/api/v1/residents:
    behind the TLS proxy a redirect to plain http, and a Host header steering clients elsewhere."""
    for path in ("/api/v1/residents/", "/api/v1/alerts/?state=open", "/api/v1/residents/res-1/"):
        r = api.get("admin", path, headers={"Host": "evil.example"})
        assert r.status_code == 404 and "location" not in r.headers, (path, r.headers)
        _hardened(r)
    page = api.client.get("/web")  # the consoles' own redirect stays, to a path on this server
    assert (page.status_code, page.headers["location"]) == (307, "/web/")


def test_the_consoles_need_nothing_the_policy_forbids() -> None:
    html = (STATIC / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline script"
    assert "<style" not in html and not re.search(r"\sstyle=", html), "inline style"
    assert not re.search(r"\son[a-z]+=", html), "inline event handler"
    assert not re.search(r"(src|href)=\"(https?:)?//", html), "a resource from another origin"
    js = (STATIC / "app.js").read_text() + catalogue_js()
    assert not re.search(r"\beval\(|new Function\(|innerHTML|setAttribute\(\s*\"style\"|\bstyle:\s", js)
    assert not re.search(r"https?://(?!www\.w3\.org)", (STATIC / "app.js").read_text())


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:5432/",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:8080/",
        "http://[::ffff:127.0.0.1]/",
        "http://localhost:8080/hook",
        "http://db.internal/hook",
        "http://0.0.0.0/",
        "http://user:pw@93.184.216.34/",
    ],
)
def test_webhook_to_an_internal_address_is_refused(api: Api, url: str) -> None:
    body = {"id": "hc-w", "name": "W", "kind": "home_care", "webhook_url": url}
    r = api.post("admin", "/api/v1/providers", json=body, headers={"Accept-Language": "en"})
    assert r.status_code == 422, r.text
    assert "webhook_url" in r.json()["detail"]
    assert api.get("admin", "/api/v1/providers/hc-w").status_code == 404


def test_webhook_to_a_public_address_is_accepted(api: Api) -> None:
    body = {"id": "hc-w", "name": "W", "kind": "home_care", "webhook_url": "https://93.184.216.34/hook"}
    assert api.post("admin", "/api/v1/providers", json=body).status_code == 201
    r = api.put("admin", "/api/v1/providers/hc-w", json={**body, "webhook_url": "http://127.0.0.1:9/x"})
    assert r.status_code == 422


@pytest.fixture
def permissive(settings: Settings, world: Any) -> Iterator[Api]:
    from platform_api_support import Api, running

    from eldercare.platform.app import create_app

    app = create_app(settings.model_copy(update={"webhook_allow_private": True}), start_engine=False)
    with running(app) as client:
        yield Api(client)


def test_a_setting_allows_internal_webhooks(permissive: Api) -> None:
    body = {"id": "hc-w", "name": "W", "kind": "home_care", "webhook_url": "http://127.0.0.1:8099/hook"}
    assert permissive.post("admin", "/api/v1/providers", json=body).status_code == 201
