"""The web consoles (care workers, families, admins, testers): static pages over the JSON API.

``mount(app)`` serves ``/web/`` (one page, hash-routed) and ``/web/static/`` from this package,
and sends ``/`` to ``/web/``. Nothing is loaded from a CDN: a care home's network may be cut off
from the world, so the chart library (uPlot, MIT) is vendored under ``static/vendor``. Calling
``mount`` twice does nothing the second time.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
PREFIX = "/web"


def mount(app: FastAPI) -> FastAPI:
    """Add the web pages to ``app`` (idempotent); returns ``app``."""
    if any(getattr(r, "name", None) == "web-static" for r in app.router.routes):
        return app
    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC), name="web-static")

    @app.get(f"{PREFIX}/", include_in_schema=False)
    async def web_index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    @app.get(PREFIX, include_in_schema=False)
    async def web_bare() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/")

    if not any(getattr(r, "path", None) == "/" for r in app.router.routes):

        @app.get("/", include_in_schema=False)
        async def root() -> RedirectResponse:
            return RedirectResponse(f"{PREFIX}/")

    return app
