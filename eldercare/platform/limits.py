"""Request limits checked before any route runs: body size, JSON nesting depth, NUL characters.

A pure ASGI middleware, so a 50 MB upload is refused after reading at most the limit, a JSON body
nested deep enough to overflow a parser (or, once stored, every later read) never reaches one, and
a NUL character, which PostgreSQL text cannot hold, is refused in the URL, a form or a JSON string
instead of failing deep in the database. Refusals are JSON in the API's error shape (413 / 422).
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eldercare.i18n import negotiate
from eldercare.platform.errors import message, problem, validation_body

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def json_depth(body: bytes, limit: int) -> int:
    """The nesting depth of a JSON text, scanning at most until ``limit`` is passed.

    Brackets inside strings do not count. Linear in the body; cheap when the body has fewer
    brackets than ``limit`` (then it cannot be deeper and the scan is skipped).
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return 0
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def has_unstorable(value: Any) -> bool:
    """Whether a parsed JSON value holds, in any string or key, a character PostgreSQL cannot
    store: NUL, or half of a UTF-16 surrogate pair (not encodable as UTF-8)."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            if _UNSTORABLE.search(v):
                return True
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return False


def clip_depth(value: Any, limit: int) -> Any:
    """``value`` with whatever lies deeper than ``limit`` replaced by None.

    For data stored before the depth limit existed: one such record must not break a list read
    by everyone (the JSON serializer refuses nesting past ~250 levels).
    """
    if limit <= 0:
        return None
    if isinstance(value, dict):
        return {k: clip_depth(v, limit - 1) for k, v in value.items()}
    if isinstance(value, list):
        return [clip_depth(v, limit - 1) for v in value]
    return value


class RequestLimits:
    """Refuse oversized bodies (413), JSON deeper than ``max_depth`` and NUL characters (422)."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, max_json_depth: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_json_depth = max_json_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        locale = negotiate(headers.get("accept-language"))
        if "\x00" in scope.get("path", "") or b"\x00" in unquote_to_bytes(scope.get("query_string", b"")):
            await self._refuse_nul(scope, receive, send, locale, "url")
            return
        if scope["type"] != "http" or scope.get("method") not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._too_large(send, locale)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay(b"", receive, first=message), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._too_large(send, locale)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        problem = self._check_body(body, headers.get("content-type", ""))
        if problem == "depth":
            await _answer(send, 422, _validation(locale, "body", "json_too_deep", depth=self.max_json_depth))
            return
        if problem == "nul":
            await _answer(send, 422, _validation(locale, "body", "unstorable_text"))
            return
        await self.app(scope, _replay(body, receive), send)

    def _check_body(self, body: bytes, content_type: str) -> str | None:
        ctype = content_type.split(";")[0].strip().lower()
        if ctype == "application/x-www-form-urlencoded":
            return "nul" if b"\x00" in unquote_to_bytes(body.replace(b"+", b" ")) else None
        if ctype.startswith("multipart/"):
            return "nul" if b"\x00" in body else None
        if not body:
            return None
        if json_depth(body, self.max_json_depth) > self.max_json_depth:
            return "depth"
        lowered = body.lower()
        if b"\\u0000" in body or b"\\ud" in lowered:  # in valid JSON these arrive only escaped
            try:
                if has_unstorable(json.loads(body)):
                    return "nul"
            except ValueError:
                return None  # malformed: the route answers that (after authentication)
        return None

    async def _refuse_nul(self, scope: Scope, receive: Receive, send: Send, locale: str, where: str) -> None:
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008, "reason": "NUL in the URL"})
            return
        await _answer(send, 422, _validation(locale, where, "nul_in_url"))

    async def _too_large(self, send: Send, locale: str) -> None:
        await _answer(send, 413, {"detail": message("request.too_large", locale, limit=self.max_body_bytes)})


def _validation(locale: str, field: str, kind: str, **ctx: Any) -> dict[str, Any]:
    return validation_body([problem(field, kind, locale, ctx)], locale)


async def _answer(send: Send, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload, ensure_ascii=False).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _replay(body: bytes, receive: Receive, first: Message | None = None) -> Receive:
    """A ``receive`` that hands the app the body already read, then the real channel."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return first or {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
