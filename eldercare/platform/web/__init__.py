"""The web consoles (care workers, families, admins, testers): static pages over the JSON API.

``mount(app)`` serves ``/web/`` (one page, hash-routed) and ``/web/static/`` from this package,
``/web/i18n.js`` (every label, built from the message catalogue :mod:`eldercare.i18n`, so the
pages and the API speak from one set of files), and sends ``/`` to ``/web/``. Nothing is loaded
from a CDN: a care home's network may be cut off from the world, so the chart library (uPlot,
MIT) is vendored under ``static/vendor``. Calling ``mount`` twice does nothing the second time.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from eldercare import i18n

STATIC = Path(__file__).parent / "static"
PREFIX = "/web"


@cache
def catalogue_js() -> str:
    """The script the pages load before ``app.js``: ``LOCALES`` and ``I18N`` (locale -> key ->
    text) from the catalogue files; the same bytes as long as the files are unchanged."""
    data = {loc: dict(i18n.catalogue(loc)) for loc in i18n.LOCALES}
    return (
        "/* Built by the server from eldercare/i18n/*.json (the one message catalogue): edit those. */\n"
        '"use strict";\n'
        f"const LOCALES = {json.dumps(list(i18n.LOCALES))};\n"
        f"const I18N = {json.dumps(data, ensure_ascii=False, indent=0, sort_keys=True)};\n"
    )


def mount(app: FastAPI) -> FastAPI:
    """Add the web pages to ``app`` (idempotent); returns ``app``."""
    if any(getattr(r, "name", None) == "web-static" for r in app.router.routes):
        return app
    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC), name="web-static")

    @app.get(f"{PREFIX}/", include_in_schema=False)
    async def web_index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get(f"{PREFIX}/i18n.js", include_in_schema=False)
    async def web_catalogue(request: Request) -> Response:
        body = catalogue_js().encode()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="text/javascript; charset=utf-8", headers=headers)

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
