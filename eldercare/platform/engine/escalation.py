"""Who is asked when: escalation tiers and their audiences, as pure functions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Tier:
    tier: int
    name: str
    # 'family', 'assigned_worker', 'station_on_duty', 'institution_on_duty', 'provider:<id>'
    targets: tuple[str, ...]
    ack_timeout_s: int


# Used when a resident has no policy: family and the assigned worker, then the station on duty.
DEFAULT_POLICY: tuple[Tier, ...] = (
    Tier(1, "family and home-care worker", ("family", "assigned_worker"), 300),
    Tier(2, "community station on duty", ("station_on_duty",), 600),
    Tier(3, "institution nurse on duty", ("institution_on_duty",), 900),
)
# Device problems: the care team only, no climb.
DEVICE_POLICY: tuple[Tier, ...] = (Tier(1, "care team", ("assigned_worker", "home_care_on_duty"), 3600),)
# The platform's own failures (``rules.OPERATOR_KINDS``): every active admin, no climb.
OPERATOR_POLICY: tuple[Tier, ...] = (Tier(1, "operators", ("admins",), 3600),)


def tier(policy: tuple[Tier, ...], number: int) -> Tier | None:
    return next((t for t in policy if t.tier == number), None)


def next_deadline(policy: tuple[Tier, ...], current: int, since: datetime) -> datetime | None:
    """When the alert must climb from ``current`` if not acknowledged; None at the last tier."""
    here = tier(policy, current)
    if here is None or tier(policy, current + 1) is None:
        return None
    return since + timedelta(seconds=here.ack_timeout_s)


def is_device_kind(kind: str) -> bool:
    from eldercare.platform.engine.rules import DEVICE_KINDS

    return kind in DEVICE_KINDS
