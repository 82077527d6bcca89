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


# A new fall or SOS that joins its live alert acknowledged longer ago than this opens it again: the
# care worker who acknowledged it is on the way within that time; later, the alert was left unresolved
# (helped, not closed), and a new emergency must be told to someone, not only counted.
REOPEN_AFTER = timedelta(minutes=30)
EMERGENCY_KINDS = frozenset({"fall", "sos"})


def reopen_if_acknowledged_before(kind: str, now: datetime) -> datetime | None:
    """For a new detection of ``kind`` joining its live alert: the acknowledgement time before which
    that alert opens again, or None when a detection of this kind never reopens one."""
    return now - REOPEN_AFTER if kind in EMERGENCY_KINDS else None


def is_device_kind(kind: str) -> bool:
    return kind in DEVICE_ALERT_KINDS
