"""Who is asked when: escalation tiers and their audiences, as pure functions."""

from __future__ import annotations

from datetime import datetime, timedelta

from eldercare.kinds import DEVICE_ALERT_KINDS
from eldercare.platform.decisions import Tier


def tier(policy: tuple[Tier, ...], number: int) -> Tier | None:
    return next((t for t in policy if t.tier == number), None)


def next_deadline(policy: tuple[Tier, ...], current: int, since: datetime) -> datetime | None:
    """When the alert must climb from ``current`` if not acknowledged; None at the last tier."""
    here = tier(policy, current)
    if here is None or tier(policy, current + 1) is None:
        return None
    return since + timedelta(seconds=here.ack_timeout_s)


def is_device_kind(kind: str) -> bool:
    return kind in DEVICE_ALERT_KINDS
