"""Signed webhooks to a provider's own system (dispatch desk, messaging gateway).

Body: JSON with the alert, the tier and the provider's people who were notified. Headers:
``X-Eldercare-Timestamp`` (Unix seconds), ``X-Eldercare-Signature: sha256=<hex>`` where the hex is
HMAC-SHA256 with the provider's ``webhook_secret`` over ``"<timestamp>.<body>"``, and
``X-Eldercare-Delivery`` (the notification id: the same id on every retry, for de-duplication).
A receiver should reject signatures older than a few minutes. Any 2xx answer counts as delivered.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import httpx

from eldercare.platform.notify import NotifyError

TIMEOUT_S = 10.0


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Eldercare-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, max_age_s: float = 300.0) -> bool:
    """What a receiver does (and what the tests check): fresh timestamp, matching signature."""
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > max_age_s:
        return False
    return hmac.compare_digest(sign(secret, int(timestamp), body), signature)


def payload(
    *,
    delivery: int,
    event: str,
    alert: dict[str, Any],
    tier: int,
    provider: str,
    people: list[dict[str, Any]],
) -> bytes:
    return json.dumps(
        {"delivery": delivery, "event": event, "tier": tier, "provider": provider, "alert": alert,
         "people": people},
        ensure_ascii=False, separators=(",", ":"), default=str,
    ).encode()  # fmt: skip


async def send(
    client: httpx.AsyncClient, *, url: str, secret: str | None, body: bytes, delivery: int
) -> None:
    """POST once; raises :class:`NotifyError` unless the receiver answers 2xx."""
    ts = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "eldercare-webhook/1",
        "X-Eldercare-Timestamp": str(ts),
        "X-Eldercare-Delivery": str(delivery),
    }
    if secret:
        headers["X-Eldercare-Signature"] = sign(secret, ts, body)
    try:
        r = await client.post(url, content=body, headers=headers, timeout=TIMEOUT_S)
    except httpx.HTTPError as exc:
        msg = f"POST {url}: {type(exc).__name__}: {exc}"
        raise NotifyError(msg) from exc
    if not 200 <= r.status_code < 300:
        msg = f"POST {url}: HTTP {r.status_code} {r.text[:200]}"
        raise NotifyError(msg)
