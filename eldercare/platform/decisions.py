"""The alert engine's vocabulary: what it decides (open, clear, note), how severe and titled each
kind is, and the escalation tiers. Shared by the engine (which makes decisions), the repositories
(which store them) and notification (which words them), so none of those imports another upward.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eldercare import i18n

SEVERITY = {
    "fall": "critical",
    "sos": "critical",
    "inactivity": "high",
    "night_wandering": "high",
    "bed_exit_no_return": "high",
    "vitals": "high",
    "pipeline_stalled": "high",
    "device_offline": "medium",
    "low_battery": "low",
    "clock_skew": "medium",
    "work_failed": "high",
    "wearable_not_worn": "low",
}


def titles(kind: str) -> dict[str, str]:
    """An alert kind's title in every language (``title.<kind>`` in the message catalogue)."""
    return i18n.texts(f"title.{kind}")


@dataclass(frozen=True)
class Open:
    """Open an alert, or join the live one with the same ``dedup_key``."""

    kind: str
    dedup_key: str
    detected_ms: int
    resident_id: str | None
    site_id: str | None
    gateway_id: str | None
    sensor_id: str | None
    summary: dict[str, Any] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)
    urgency: str | None = None  # a severity other than the kind's (a fall the home doubts: high)
    escalate_now: bool = False  # tell the next tier at once too (a fall the home makes certain)

    @property
    def severity(self) -> str:
        return self.urgency or SEVERITY[self.kind]

    @property
    def title(self) -> str:
        """In English: what the alert's ``title`` column holds (readers get :func:`titles`)."""
        return i18n.t(f"title.{self.kind}", "en")


@dataclass(frozen=True)
class Clear:
    """Resolve the live alert with this key by itself (the condition cleared)."""

    dedup_key: str
    reason: str


@dataclass(frozen=True)
class Note:
    """Add to the trail of the live alert with this key without opening one.

    The note is message ``message`` of the catalogue filled with ``fields``: stored in English
    and as the key, so each reader's page shows it in their own language."""

    dedup_key: str
    message: str
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return i18n.t(self.message, "en", **self.fields)


Decision = Open | Clear | Note


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
