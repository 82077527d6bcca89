"""HEAD is GET without the body (RFC 9110, 9.3.2), on every route that answers GET.

FastAPI routes a HEAD request only where a route declares it, so a client checking a resource with
HEAD got 405 from every API route. Answered here as the GET it stands for (its status, headers and
Content-Length), with the body left out; the OpenAPI document keeps listing GET alone.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGet:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, without_body)
