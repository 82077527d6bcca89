"""Fixtures for the platform API tests (a pytest plugin: ``pytest_plugins = ["platform_api_support"]``).

``world`` seeds :mod:`platform_seed` into the test's database (``db_url`` from conftest); ``api``
runs the app (lifespan entered, no engine) against ``settings`` and signs in by username.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import psycopg
import pytest
from anyio.from_thread import start_blocking_portal
from platform_seed import PASSWORD, World, seed_world

from eldercare.config import Settings


@pytest.fixture
def world(db_url: str) -> World:
    with psycopg.connect(db_url) as conn:
        return seed_world(conn)


class Client:
    """A synchronous face on ``httpx.AsyncClient(transport=ASGITransport(app))``.

    The app runs in a blocking portal's event loop with its lifespan entered (pool open), as it
    would under uvicorn; starlette's TestClient is avoided because it warns under httpx.
    """

    def __init__(self, app: Any, portal: Any) -> None:
        self.app = app
        self.portal = portal
        self._client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.portal.call(lambda: self._client.request(method, path, **kw))  # type: ignore[no-any-return]

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("PUT", path, **kw)

    def patch(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("PATCH", path, **kw)

    def delete(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("DELETE", path, **kw)

    def close(self) -> None:
        self.portal.call(self._client.aclose)


@contextmanager
def running(app: Any) -> Iterator[Client]:
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(app.router.lifespan_context(app)),
    ):
        client = Client(app, portal)
        try:
            yield client
        finally:
            client.close()


class Api:
    """A client plus sign-in helpers; ``as_(username)`` returns auth headers."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._tokens: dict[str, str] = {}

    def login(self, username: str, password: str = PASSWORD) -> dict[str, Any]:
        r = self.client.post("/api/v1/auth/token", data={"username": username, "password": password})
        assert r.status_code == 200, r.text
        self._tokens[username] = r.json()["access_token"]
        return r.json()  # type: ignore[no-any-return]

    def as_(self, username: str) -> dict[str, str]:
        if username not in self._tokens:
            self._tokens[username] = self.login(username)["access_token"]
        return {"Authorization": f"Bearer {self._tokens[username]}"}

    def get(self, who: str, path: str, **kw: Any) -> Any:
        return self.client.get(path, headers={**self.as_(who), **kw.pop("headers", {})}, **kw)

    def post(self, who: str, path: str, **kw: Any) -> Any:
        return self.client.post(path, headers={**self.as_(who), **kw.pop("headers", {})}, **kw)

    def put(self, who: str, path: str, **kw: Any) -> Any:
        return self.client.put(path, headers={**self.as_(who), **kw.pop("headers", {})}, **kw)

    def patch(self, who: str, path: str, **kw: Any) -> Any:
        return self.client.patch(path, headers={**self.as_(who), **kw.pop("headers", {})}, **kw)

    def delete(self, who: str, path: str, **kw: Any) -> Any:
        return self.client.delete(path, headers={**self.as_(who), **kw.pop("headers", {})}, **kw)


@pytest.fixture
def api(settings: Settings, world: World) -> Iterator[Api]:
    from eldercare.platform.app import create_app

    app = create_app(settings, start_engine=False)
    with running(app) as client:
        yield Api(client)
