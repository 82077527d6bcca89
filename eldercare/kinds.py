"""Every kind the system names, defined once: alerts, incidents, sensors, sites, outcomes.

A new kind is added here first; ``tests/test_kinds.py`` then names every other place that must
agree (the SQL CHECK constraints of a migrated database, the API's schemas, the simulators and the
web client's labels), so nothing is forgotten. The wire protocol's own lists (sensor and event
kinds) stay in :mod:`eldercare.protocol`, which depends on nothing; they are re-exported here.
"""

from __future__ import annotations

from eldercare.protocol import EVENT_KINDS, SENSOR_KINDS

__all__ = [
    "ALERT_KINDS",
    "CAUGHT_BY",
    "DEVICE_ALERT_KINDS",
    "DEVICE_INCIDENT_KINDS",
    "EVENT_KINDS",
    "INCIDENT_KINDS",
    "OPERATOR_ALERT_KINDS",
    "OUTCOMES",
    "RESIDENT_ALERT_KINDS",
    "RESIDENT_INCIDENT_KINDS",
    "SENSOR_KINDS",
    "SITE_KINDS",
]

# Alerts (design.md), in the order the consoles list them; each is about a resident, a device or
# gateway (the care team's, never the family's), or the platform itself (for the operators).
ALERT_KINDS: tuple[str, ...] = (
    "fall",
    "sos",
    "inactivity",
    "night_wandering",
    "bed_exit_no_return",
    "device_offline",
    "low_battery",
    "vitals",
    "pipeline_stalled",
    "clock_skew",
    "work_failed",
    "wearable_not_worn",
)
# A wearable left off is a notice about a device (care team only, per device), never a fall alarm.
DEVICE_ALERT_KINDS: tuple[str, ...] = (
    "device_offline",
    "low_battery",
    "pipeline_stalled",
    "clock_skew",
    "wearable_not_worn",
)
OPERATOR_ALERT_KINDS: tuple[str, ...] = ("work_failed",)
RESIDENT_ALERT_KINDS: tuple[str, ...] = tuple(
    k for k in ALERT_KINDS if k not in DEVICE_ALERT_KINDS + OPERATOR_ALERT_KINDS
)

OUTCOMES: tuple[str, ...] = ("confirmed", "false_alarm", "no_action_needed")
SITE_KINDS: tuple[str, ...] = ("home", "station", "institution")

# Incidents the simulators can make happen (the ground truth testers score against).
RESIDENT_INCIDENT_KINDS: tuple[str, ...] = (
    "fall",
    "collapse",
    "no_wake",
    "night_wandering",
    "bathroom_too_long",
    "sos",
)
DEVICE_INCIDENT_KINDS: tuple[str, ...] = ("device_offline", "low_battery", "gateway_outage")
INCIDENT_KINDS: tuple[str, ...] = RESIDENT_INCIDENT_KINDS + DEVICE_INCIDENT_KINDS

# The alert kinds that count as catching each incident kind when scoring.
CAUGHT_BY: dict[str, tuple[str, ...]] = {
    "fall": ("fall", "inactivity"),
    "collapse": ("fall", "inactivity"),
    "no_wake": ("inactivity",),
    "night_wandering": ("night_wandering", "bed_exit_no_return"),
    "bathroom_too_long": ("inactivity",),
    "sos": ("sos",),
    "device_offline": ("device_offline",),
    "low_battery": ("low_battery",),
    "gateway_outage": ("device_offline",),
}
