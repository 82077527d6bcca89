"""Device health per home: which homes need someone to look at their devices, and why.

Pure rules over what the repositories return (the gateway's state, its clock skew, the sensors'
batteries and links from its latest status); the thresholds are the engine's, so the console
flags what the engine raises alerts for.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from eldercare.platform.engine.rules import CLOCK_SKEW_LIMIT_MS, LOW_BATTERY

Problem = Literal["offline", "never_seen", "clock_skew", "low_battery", "sensor_offline"]
# the order a home's problems are listed in: the gravest first
PROBLEMS: tuple[Problem, ...] = ("offline", "never_seen", "low_battery", "sensor_offline", "clock_skew")
GATEWAY_FIELDS = ("id", "state", "state_at", "version", "clock_skew_ms", "clock_checked_at")


def _ms_time(ms: Any) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, tz=UTC) if isinstance(ms, int | float) else None


def sensors_of(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The registered sensors with what the gateway last said of each (battery, link, last seen)."""
    said = row.get("sensor_status") or {}
    out = []
    for s in row.get("sensors") or []:
        info = said.get(s["id"]) or {}
        battery = info.get("battery")
        out.append(
            s
            | {
                "battery": float(battery) if isinstance(battery, int | float) else None,
                "online": info.get("online"),
                "last_seen": _ms_time(info.get("last_seen")),
            }
        )
    return out


def gateway_problems(row: dict[str, Any], sensors: list[dict[str, Any]]) -> list[Problem]:
    """What is wrong with one gateway and its sensors, gravest first."""
    found: set[Problem] = set()
    if row["state"] == "offline":
        found.add("offline")
    elif row["state"] != "online":
        found.add("never_seen")
    skew = row.get("clock_skew_ms")
    if (skew is not None and abs(skew) > CLOCK_SKEW_LIMIT_MS) or row.get("clock_ok") is False:
        found.add("clock_skew")
    if any(s["battery"] is not None and s["battery"] < LOW_BATTERY for s in sensors):
        found.add("low_battery")
    if any(s["online"] is False for s in sensors):
        found.add("sensor_offline")
    return [p for p in PROBLEMS if p in found]


def homes(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per site with its gateways; homes with problems first (gravest, then most)."""
    by_site: dict[str, dict[str, Any]] = {}
    for row in rows:
        home = by_site.setdefault(
            row["site_id"],
            {
                "site_id": row["site_id"],
                "site_name": row["site_name"],
                "site_kind": row["site_kind"],
                "residents": row.get("residents") or [],
                "gateways": [],
            },
        )
        sensors = sensors_of(row)
        problems = gateway_problems(row, sensors)
        home["gateways"].append(
            {k: row.get(k) for k in GATEWAY_FIELDS} | {"sensors": sensors, "problems": problems}
        )
    for home in by_site.values():
        seen = {p for g in home["gateways"] for p in g["problems"]}
        home["problems"] = [p for p in PROBLEMS if p in seen]

    def rank(home: dict[str, Any]) -> tuple[int, int, str]:
        worst = min((PROBLEMS.index(p) for p in home["problems"]), default=len(PROBLEMS))
        return (worst, -len(home["problems"]), home["site_id"])

    return sorted(by_site.values(), key=rank)
