"""Security headers on every HTTP response (a pure ASGI middleware).

The consoles load only their own scripts and styles (no inline ones, nothing from a CDN), so the
Content-Security-Policy can be strict: ``'self'`` for everything, the WebSocket of the same host,
and no framing (``frame-ancestors 'none'``: no clickjacking of the acknowledge button). The
interactive API docs (``/docs``, ``/redoc``) load Swagger UI / ReDoc from their CDN with an inline
script, so they get a policy allowing exactly that. API answers are never cached.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'{ws}; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src 'self' https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com; "
    "worker-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
DOCS_PATHS = ("/docs", "/redoc")
COMMON = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
)
_HOST = re.compile(r"^[A-Za-z0-9.\-\[\]:]{1,255}$")


def policy_for(path: str, host: str | None) -> str:
    """The Content-Security-Policy for a response to ``path`` on ``host``."""
    if path.startswith(DOCS_PATHS):
        return DOCS_CSP
    # 'self' covers ws:/wss: of the same host in current browsers; older ones need it spelt out
    ws = f" ws://{host} wss://{host}" if host and _HOST.match(host) else ""
    return CSP.format(ws=ws)


class SecurityHeaders:
    """Adds :data:`COMMON` headers and a Content-Security-Policy to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        host = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"host"), None)
        csp = policy_for(path, host).encode()
        api = path.startswith("/api/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in COMMON if k not in present]
                headers.append((b"content-security-policy", csp))
                if api and b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
