"""The gateway's status message (wire protocol v1 ``status``, retained): what the agent says of itself.

Built from plain values the agent hands over, so what a status carries reads in one place: each
sensor's battery and last reading, the clock's health, the outbox's counters (and what waits in
memory while the disk refuses writes), and which remote config revision is applied or was refused.
"""

from __future__ import annotations

from typing import Any

import msgspec

from eldercare import __version__, protocol


def sensors(sensor_status: dict[str, dict[str, Any]]) -> dict[str, protocol.SensorStatus]:
    """What the agent learnt of each sensor (names the protocol cannot carry are left out)."""
    return {
        sid: protocol.SensorStatus(
            battery=st.get("battery"),
            last_seen=st.get("last_seen"),
            online=st.get("online", True),
            via=st.get("via"),
            wear=st.get("wear"),
            not_worn_since=st.get("not_worn_since"),
        )
        for sid, st in sensor_status.items()
        if protocol.is_identifier(sid)
    }


def outbox_counters(
    stats: dict[str, int],
    *,
    unstored_events: int,
    unstored_readings: int,
    dropped_readings: int,
    disk_low: bool,
    disk_free: int | None,
    platform_acks: bool,
    resends: int,
) -> dict[str, int]:
    """``status.outbox``: the outbox's own counters, the disk and what waits in memory."""
    out = dict(stats)
    out["unstored_events"] = unstored_events
    out["unstored_readings"] = unstored_readings
    out["dropped_readings"] = dropped_readings
    out["disk_low"] = int(disk_low)
    if disk_free is not None:
        out["disk_free_bytes"] = disk_free
    out["platform_acks"] = int(platform_acks)
    out["resends"] = resends
    return out


def encode(
    state: str,
    *,
    t_ms: int,
    sensors: dict[str, protocol.SensorStatus],
    clock_ok: bool,
    outbox: dict[str, int],
    config_revision: int | None,
    config_error: str | None,
) -> bytes:
    msg = protocol.Status(
        v=1,
        t=t_ms,
        state=state,  # type: ignore[arg-type]
        sensors=sensors,
        version=__version__,
        clock_ok=clock_ok,
        outbox=outbox,
        config_revision=config_revision,
        config_error=config_error,
    )
    return msgspec.json.encode(msg)
