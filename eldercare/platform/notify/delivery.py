"""The delivery worker: sends queued webhooks and e-mails, retrying with exponential backoff.

Rows are queued by the engine in ``notifications`` (status ``pending``) in the same transaction as
the alert change. Any replica's worker claims due rows with ``FOR UPDATE SKIP LOCKED`` and leases
them (``next_attempt_at`` moves past the lease), sends outside any transaction, then records the
outcome: ``delivered``, ``failed`` (retried after 5 s, 10 s, 20 s, ... up to an hour) or ``gave_up``
after :data:`MAX_ATTEMPTS` (which raises the operators' ``work_failed`` alert through the engine's
``on_gave_up``). Every attempt also lands in the alert's trail. A worker that dies
mid-send loses nothing: its lease expires and another worker retries the row.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import httpx

from eldercare import i18n
from eldercare.config import Settings
from eldercare.platform.notify import NotifyError, webhook
from eldercare.platform.notify import email as mail
from eldercare.platform.notify.hub import message
from eldercare.platform.repo import alerts as alerts_repo
from eldercare.platform.repo import deliveries as deliveries_repo
from eldercare.platform.repo.connections import Conn, Pool

log = logging.getLogger(__name__)

BACKOFF_S = 5.0
MAX_BACKOFF_S = 3600.0
MAX_ATTEMPTS = 8
LEASE_S = 60.0  # longer than one attempt can take (HTTP and SMTP timeouts are 10-15 s)
TICK_S = 1.0
BATCH = 20


# Called in the transaction that records a delivery given up (the engine raises the operators' alert).
GaveUp = Callable[[Conn, dict[str, Any], str], Awaitable[None]]


def backoff(attempts: int, base_s: float = BACKOFF_S) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones."""
    return float(min(base_s * 2 ** max(attempts - 1, 0), MAX_BACKOFF_S))


class Deliverer:
    """Sends due rows of the channels this replica can serve (e-mail only with an SMTP server or
    an outbox directory)."""

    def __init__(
        self,
        pool: Pool,
        settings: Settings,
        *,
        base_backoff_s: float = BACKOFF_S,
        max_attempts: int = MAX_ATTEMPTS,
        on_gave_up: GaveUp | None = None,
    ) -> None:
        self.pool = pool
        self.on_gave_up = on_gave_up
        self.smtp_url = settings.smtp_url.get_secret_value() if settings.smtp_url else None
        self.outbox = settings.mail_outbox
        self.smtp_from = settings.smtp_from
        self.base_backoff_s = base_backoff_s
        self.max_attempts = max_attempts
        self.channels = ["webhook"] + (["email"] if mail.can_send(settings) else [])
        self._client: httpx.AsyncClient | None = None

    async def deliver_due(self, *, now: datetime | None = None) -> int:
        """One round: claim due rows, send them concurrently, record each outcome.

        ``now`` (default: the database's clock) decides what is due and dates the retries, so a
        test can step through the backoff without sleeping it out.
        """
        async with self.pool.connection() as conn:
            rows = await deliveries_repo.claim_deliveries(
                conn, channels=self.channels, lease_s=LEASE_S, limit=BATCH, now=now
            )
        if rows:
            await asyncio.gather(*(self._one(row, now=now) for row in rows))
        return len(rows)

    async def _one(self, row: dict[str, Any], *, now: datetime | None = None) -> None:
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
            status = await deliveries_repo.record_delivery(
                conn,
                notification_id=row["id"],
                ok=error is None,
                error=error,
                retry_in_s=backoff(row["attempts"], self.base_backoff_s),
                max_attempts=self.max_attempts,
                now=now,
            )
            if status == "gave_up" and self.on_gave_up is not None:
                await self.on_gave_up(conn, row, error or "")
        log.info("%s %s to %s: %s (attempt %s)", row["channel"], row["id"], row["target"], status,
                 row["attempts"])  # fmt: skip

    async def _alert(self, alert_id: int) -> dict[str, Any]:
        async with self.pool.connection() as conn:
            alert = await alerts_repo.push_summary(conn, alert_id=alert_id)
        if alert is None:
            msg = f"alert {alert_id} no longer exists"
            raise NotifyError(msg)
        summary: dict[str, Any] = message(alert, "notified")["alert"]
        summary["severity"] = alert["severity"]
        return summary

    async def _webhook(self, row: dict[str, Any]) -> None:
        async with self.pool.connection() as conn:
            provider = await deliveries_repo.webhook_of(conn, provider_id=row["target"])
            people = await deliveries_repo.notified_members(
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
        if not self.smtp_url and self.outbox is None:
            why = "no SMTP server configured (ELDERCARE_SMTP_URL) and no outbox (ELDERCARE_MAIL_OUTBOX)"
            raise NotifyError(why)
        locale = i18n.DEFAULT_LOCALE
        if row["user_id"] is not None:
            async with self.pool.connection() as conn:
                locale = await deliveries_repo.user_locale(conn, user_id=row["user_id"])
        alert = await self._alert(row["alert_id"])
        msg = mail.compose(
            sender=self.smtp_from, to=row["target"], alert=alert, tier=row["tier"], locale=locale
        )
        if self.smtp_url:
            await mail.send(self.smtp_url, msg)
        else:
            assert self.outbox is not None
            where = await mail.store(self.outbox, msg)
            log.info("e-mail to %s (alert %s) in the outbox: %s", row["target"], row["alert_id"], where)

    async def run(self) -> None:
        """Deliver for as long as the replica runs, :data:`BATCH` sends at a time.

        Each send holds one slot only: a receiver that takes its full timeout delays nobody else,
        because the free slots keep claiming due rows meanwhile.
        """
        sending: set[asyncio.Task[None]] = set()
        try:
            while True:
                free, claimed = BATCH - len(sending), 0
                if free > 0:
                    try:
                        async with self.pool.connection() as conn:
                            rows = await deliveries_repo.claim_deliveries(
                                conn, channels=self.channels, lease_s=LEASE_S, limit=free
                            )
                        for row in rows:
                            task = asyncio.create_task(self._one(row), name=f"delivery-{row['id']}")
                            sending.add(task)
                            task.add_done_callback(sending.discard)
                        claimed = len(rows)
                    except asyncio.CancelledError:
                        raise
                    except Exception:  # database gone for a moment: try again next tick
                        log.exception("delivery round failed; retrying")
                if free <= 0:
                    await asyncio.wait(sending, return_when=asyncio.FIRST_COMPLETED)
                elif claimed == 0:
                    await asyncio.sleep(TICK_S)
        finally:
            for task in sending:
                task.cancel()
            await asyncio.gather(*sending, return_exceptions=True)
            if self._client is not None:
                await self._client.aclose()
