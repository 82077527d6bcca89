"""The delivery worker: sends queued webhooks and e-mails, retrying with exponential backoff.

Rows are queued by the engine in ``notifications`` (status ``pending``) in the same transaction as
the alert change. Any replica's worker claims due rows with ``FOR UPDATE SKIP LOCKED`` and leases
them (``next_attempt_at`` moves past the lease), sends outside any transaction, then records the
outcome: ``delivered``, ``failed`` (retried after 5 s, 10 s, 20 s, ... up to an hour) or ``gave_up``
after :data:`MAX_ATTEMPTS`. Every attempt also lands in the alert's trail. A worker that dies
mid-send loses nothing: its lease expires and another worker retries the row.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
from psycopg_pool import AsyncConnectionPool

from eldercare.config import Settings
from eldercare.platform.notify import NotifyError, webhook
from eldercare.platform.notify import email as mail
from eldercare.platform.notify.hub import message
from eldercare.platform.repo import alerts as repo

log = logging.getLogger(__name__)

BACKOFF_S = 5.0
MAX_BACKOFF_S = 3600.0
MAX_ATTEMPTS = 8
LEASE_S = 60.0  # longer than one attempt can take (HTTP and SMTP timeouts are 10-15 s)
TICK_S = 1.0
BATCH = 20


def backoff(attempts: int, base_s: float = BACKOFF_S) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones."""
    return float(min(base_s * 2 ** max(attempts - 1, 0), MAX_BACKOFF_S))


class Deliverer:
    """Sends due rows of the channels this replica can serve (e-mail only with an SMTP server)."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        settings: Settings,
        *,
        base_backoff_s: float = BACKOFF_S,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        self.pool = pool
        self.smtp_url = settings.smtp_url.get_secret_value() if settings.smtp_url else None
        self.smtp_from = settings.smtp_from
        self.base_backoff_s = base_backoff_s
        self.max_attempts = max_attempts
        self.channels = ["webhook"] + (["email"] if self.smtp_url else [])
        self._client: httpx.AsyncClient | None = None

    async def deliver_due(self) -> int:
        """One round: claim due rows, send them concurrently, record each outcome."""
        async with self.pool.connection() as conn:
            rows = await repo.claim_deliveries(conn, channels=self.channels, lease_s=LEASE_S, limit=BATCH)
        if rows:
            await asyncio.gather(*(self._one(row) for row in rows))
        return len(rows)

    async def _one(self, row: dict[str, Any]) -> None:
        error: str | None = None
        try:
            if row["channel"] == "webhook":
                await self._webhook(row)
            else:
                await self._email(row)
        except NotifyError as exc:
            error = str(exc)
        except Exception as exc:  # a bug in one delivery must not lose the row: it is retried
            log.exception("delivery %s failed unexpectedly", row["id"])
            error = f"{type(exc).__name__}: {exc}"
        async with self.pool.connection() as conn, conn.transaction():
            status = await repo.record_delivery(
                conn,
                notification_id=row["id"],
                ok=error is None,
                error=error,
                retry_in_s=backoff(row["attempts"], self.base_backoff_s),
                max_attempts=self.max_attempts,
            )
        log.info("%s %s to %s: %s (attempt %s)", row["channel"], row["id"], row["target"], status,
                 row["attempts"])  # fmt: skip

    async def _alert(self, alert_id: int) -> dict[str, Any]:
        async with self.pool.connection() as conn:
            alert = await repo.push_summary(conn, alert_id=alert_id)
        if alert is None:
            msg = f"alert {alert_id} no longer exists"
            raise NotifyError(msg)
        summary: dict[str, Any] = message(alert, "notified")["alert"]
        summary["severity"] = alert["severity"]
        return summary

    async def _webhook(self, row: dict[str, Any]) -> None:
        async with self.pool.connection() as conn:
            provider = await repo.webhook_of(conn, provider_id=row["target"])
            people = await repo.notified_members(
                conn, alert_id=row["alert_id"], tier=row["tier"], provider_id=row["target"]
            )
        if provider is None or not provider["webhook_url"]:
            msg = f"provider {row['target']} has no webhook_url any more"
            raise NotifyError(msg)
        members = [
            {"username": p["username"], "name": p["display_name"], "phone": p["phone"]} for p in people
        ]
        body = webhook.payload(
            delivery=row["id"], event="notified", alert=await self._alert(row["alert_id"]),
            tier=row["tier"], provider=row["target"], people=members,
        )  # fmt: skip
        if self._client is None:
            self._client = httpx.AsyncClient()
        await webhook.send(
            self._client, url=provider["webhook_url"], secret=provider["webhook_secret"], body=body,
            delivery=row["id"],
        )  # fmt: skip

    async def _email(self, row: dict[str, Any]) -> None:
        if not self.smtp_url:
            why = "no SMTP server configured (ELDERCARE_SMTP_URL)"
            raise NotifyError(why)
        locale = "zh-CN"
        if row["user_id"] is not None:
            async with self.pool.connection() as conn:
                locale = await repo.user_locale(conn, user_id=row["user_id"])
        alert = await self._alert(row["alert_id"])
        msg = mail.compose(
            sender=self.smtp_from, to=row["target"], alert=alert, tier=row["tier"], locale=locale
        )
        await mail.send(self.smtp_url, msg)

    async def run(self) -> None:
        """Deliver for as long as the replica runs."""
        try:
            while True:
                try:
                    while await self.deliver_due() == BATCH:
                        pass
                except asyncio.CancelledError:
                    raise
                except Exception:  # database gone for a moment: try again next tick
                    log.exception("delivery round failed; retrying")
                await asyncio.sleep(TICK_S)
        finally:
            if self._client is not None:
                await self._client.aclose()
