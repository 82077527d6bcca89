"""What becomes an alert: pure decisions from edge events and gateway status, no I/O.

The service hands in the work rows that ingest wrote (``alert_work.payload``) and gets back
:class:`Open` (open a new alert or join the live one with the same dedup key) and :class:`Clear`
(auto-resolve a device problem whose condition has gone) decisions.
"""

from __future__ import annotations

from typing import Any

from eldercare import i18n
from eldercare.kinds import DEVICE_ALERT_KINDS, OPERATOR_ALERT_KINDS
from eldercare.platform.decisions import Clear, Decision, Note, Open
from eldercare.platform.engine.fall_context import FallJudgement

LOW_BATTERY = 0.15  # open below this charge ...
BATTERY_OK = 0.25  # ... and resolve only above this one, so a hovering battery does not flap

# Device problems go to the care team only; the family is not woken for a flat battery.
DEVICE_KINDS = frozenset(DEVICE_ALERT_KINDS)
# The platform's own failures go to the operators (admins), whoever the data was about.
OPERATOR_KINDS = frozenset(OPERATOR_ALERT_KINDS)
CLOCK_SKEW_LIMIT_MS = 5 * 60_000  # a gateway clock further off than this raises clock_skew
# A wearable the gateway says is not worn (lying still as a table) for this long becomes a notice to
# the care team; the platform's setting ``not_worn_notice_min`` overrides it.
NOT_WORN_NOTICE_S = 3600.0


def dedup_key(kind: str, *, resident: str | None = None, site: str = "", device: str = "") -> str:
    """One live alert per resident and kind; device problems per device. A person's alert whose
    resident is not known (a station's unassigned buttons) is one per device that raised it: two
    people pressing two buttons are two alerts, not one more detection on the first (which may be
    acknowledged already, so nobody would be told of the second)."""
    if kind in DEVICE_KINDS:
        return f"device:{device or site}:{kind}"
    if resident:
        return f"resident:{resident}:{kind}"
    return f"site:{site}/{device}:{kind}" if device else f"site:{site}:{kind}"


def _summary(key: str, text: dict[str, Any], **figures: Any) -> dict[str, Any]:
    """What an alert says (message ``key`` in every language, filled from ``text``) and the
    figures behind it."""
    return {**i18n.texts(key, **text), **figures}


def decide_event(
    work: dict[str, Any], resident: str | None, *, home: FallJudgement | None = None
) -> list[Decision]:
    """An edge event (payload of an ``alert_work`` row); ``resident`` resolved from the registry;
    ``home``: for a fall, what the home's other sensors said after the impact
    (:func:`eldercare.platform.engine.fall_context.judge_fall`)."""
    kind = work["kind"]
    site, gateway, sensor = work["site"], work["gateway"], work["sensor"]
    confidence = float(work.get("confidence", 1.0))
    common = {"resident_id": resident, "site_id": site, "gateway_id": gateway, "sensor_id": sensor}
    device = f"{gateway}/{sensor}"
    if kind == "fall":
        summary = _summary(
            "summary.fall", {"sensor": sensor, "confidence": f"{confidence:.0%}"}, confidence=confidence
        )
        if home is not None:  # what the home's other sensors said, after the wearable's own words
            said = i18n.localized(home.explain)
            summary |= {
                loc: i18n.t("summary.fall_judged", loc, fall=summary[loc], home=said[loc])
                for loc in i18n.LOCALES
            }
            summary |= {"home": home.verdict, "watched_s": round(home.watched_s, 1)}
        return [
            Open(
                "fall",
                dedup_key("fall", resident=resident, site=site, device=device),
                work["t"],
                summary=summary,
                evidence=work.get("evidence") or {},
                urgency=home.severity if home is not None else None,
                escalate_now=home is not None and home.escalate_now,
                **common,
            )
        ]
    if kind == "sos":
        return [
            Open(
                "sos",
                dedup_key("sos", resident=resident, site=site, device=device),
                work["t"],
                summary=_summary("summary.sos", {"sensor": sensor}),
                **common,
            )
        ]
    if kind == "vitals":
        ev = work.get("evidence") or {}
        metric, value = ev.get("metric", "vital sign"), ev.get("value")
        return [
            Open(
                "vitals",
                dedup_key("vitals", resident=resident, site=site, device=device),
                work["t"],
                summary=_summary(
                    "summary.vitals", {"metric": metric, "value": value}, metric=metric, value=value
                ),
                evidence=ev,
                **common,
            )
        ]
    if kind == "low_battery":
        return [_low_battery(site, gateway, sensor, work["t"], (work.get("evidence") or {}).get("battery"))]
    if kind == "fall_cancelled":
        return [
            Note(
                dedup_key("fall", resident=resident, site=site, device=device),
                "note.fall_cancelled",
                {"sensor": sensor},
            )
        ]
    return []  # bed_exit, clock_error, config_rejected: recorded as events, no alert of their own


def _low_battery(site: str, gateway: str, sensor: str, t_ms: int, battery: float | None) -> Open:
    return Open(
        "low_battery",
        dedup_key("low_battery", device=f"{gateway}/{sensor}"),
        t_ms,
        resident_id=None,
        site_id=site,
        gateway_id=gateway,
        sensor_id=sensor,
        summary=_summary("summary.low_battery", {"sensor": sensor, "battery": f"{battery:.0%}"})
        if isinstance(battery, int | float)
        else _summary("summary.low_battery_unknown", {"sensor": sensor}),
    )


def decide_status(work: dict[str, Any], *, not_worn_after_s: float = NOT_WORN_NOTICE_S) -> list[Decision]:
    """A gateway status (retained presence, clean offline or Last Will).

    Times are ingest's arrival time (``ts``), the one clock every status is ordered by: a Last Will's
    own ``t`` is when the agent connected, and a gateway's clock may be off. ``skew_ms`` (gateway
    clock minus arrival, measured by the service on live statuses) raises or clears ``clock_skew``.
    """
    site, gateway = work["site"], work["gateway"]
    t = int(work.get("ts") or work["t"])
    offline_key = dedup_key("device_offline", device=gateway)
    out: list[Decision] = []
    if work["state"] == "offline":
        out.append(
            Open(
                "device_offline",
                offline_key,
                t,
                resident_id=None,
                site_id=site,
                gateway_id=gateway,
                sensor_id=None,
                summary=_summary("summary.gateway_offline", {"gateway": gateway}),
            )
        )
        return out
    out.append(Clear(offline_key, "gateway back online"))
    out.append(Clear(dedup_key("pipeline_stalled", device=gateway), "gateway back online"))
    if work.get("skew_ms") is not None:
        out.append(_clock(site, gateway, t, int(work["skew_ms"])))
    out += _disk(site, gateway, t, work.get("outbox") or {})
    sensors = work.get("sensors") or {}
    for sensor, info in sensors.items():
        online = (info or {}).get("online")
        if online is False and _lost_with_bridge(sensors, sensor):
            online = None  # lost with its bridge (zigbee2mqtt): one alert for the bridge, none per sensor
        out += _sensor_link(site, gateway, sensor, t, online)
        out += _wear(site, gateway, sensor, t, int(work["t"]), info or {}, not_worn_after_s)
        battery = (info or {}).get("battery")
        if battery is None:
            continue
        if battery < LOW_BATTERY:
            out.append(_low_battery(site, gateway, sensor, t, battery))
        elif battery >= BATTERY_OK:
            out.append(
                Clear(dedup_key("low_battery", device=f"{gateway}/{sensor}"), "battery replaced or charged")
            )
    return out


def _lost_with_bridge(sensors: dict[str, Any], sensor: str) -> bool:
    """Whether an offline sensor is reached through an offline bridge that has an alert of its own:
    following ``via`` from bridge to bridge ends at an offline one not itself behind another. A
    ``via`` naming the sensor itself, or bridges naming each other in a ring, have no such bridge:
    each of those sensors alerts for itself (else none of them would)."""
    seen = {sensor}
    via = (sensors.get(sensor) or {}).get("via")
    while via and via not in seen:
        info = sensors.get(via) or {}
        if info.get("online") is not False:
            return False  # the bridge is up (or not listed): the sensor itself is lost
        seen.add(via)
        nxt = info.get("via")
        if not nxt or (sensors.get(nxt) or {}).get("online") is not False:
            return True  # ``via`` is the bridge whose own alert covers this sensor
        via = nxt
    return False


def _disk(site: str, gateway: str, t_ms: int, outbox: dict[str, Any]) -> list[Decision]:
    """``status.outbox.disk_low``: the gateway's disk is nearly full. Alarms still leave (from
    memory), but readings would soon wait in memory only: someone should look before that."""
    key = dedup_key("device_offline", device=f"{gateway}/disk")
    if outbox.get("disk_low") == 1:
        free = outbox.get("disk_free_bytes")
        summary = (
            _summary("summary.disk_low", {"gateway": gateway, "free": f"{free / 1e6:.1f} MB"})
            if isinstance(free, int)
            else _summary("summary.disk_low_unknown", {"gateway": gateway})
        )
        return [Open("device_offline", key, t_ms, None, site, gateway, None, summary=summary)]
    return [Clear(key, "the gateway's disk has space again")] if outbox.get("disk_low") == 0 else []


def _wear(
    site: str, gateway: str, sensor: str, t_ms: int, gw_t_ms: int, info: dict[str, Any], after_s: float
) -> list[Decision]:
    """``status.sensors[wearable].wear``: a wearable left off for ``after_s`` (by the gateway's own
    clock, which also dated ``not_worn_since``) is a gentle notice to the care team, never a fall;
    it resolves itself when the device is worn again."""
    key = dedup_key("wearable_not_worn", device=f"{gateway}/{sensor}")
    wear, since = info.get("wear"), info.get("not_worn_since")
    if wear == "worn":
        return [Clear(key, "the wearable is worn again")]
    if wear != "not_worn" or not isinstance(since, int) or (gw_t_ms - since) / 1000 < after_s:
        return []
    hours = (gw_t_ms - since) / 3_600_000
    shown = f"{hours:.1f} h" if hours >= 1 else f"{hours * 60:.0f} min"
    return [
        Open(
            "wearable_not_worn",
            key,
            t_ms,
            resident_id=None,
            site_id=site,
            gateway_id=gateway,
            sensor_id=sensor,
            summary=_summary(
                "summary.wearable_not_worn", {"sensor": sensor, "shown": shown}, not_worn_since_ms=since
            ),
        )
    ]


def _sensor_link(site: str, gateway: str, sensor: str, t_ms: int, online: Any) -> list[Decision]:
    """A sensor the gateway says it lost (a Zigbee device gone quiet): the only sign of a dead door
    contact or SOS button, which report nothing until used. Its own key, so that a sensor the
    gateway still hears never clears a silence the inactivity detector found."""
    key = dedup_key("device_offline", device=f"{gateway}/{sensor}/link")
    if online is False:
        return [
            Open(
                "device_offline",
                key,
                t_ms,
                resident_id=None,
                site_id=site,
                gateway_id=gateway,
                sensor_id=sensor,
                summary=_summary("summary.sensor_lost", {"gateway": gateway, "sensor": sensor}),
            )
        ]
    return [Clear(key, "the gateway hears the sensor again")] if online is True else []


def decide_heartbeat(
    *,
    gateway: str,
    site: str,
    state: str,
    last_heartbeat_ms: int | None,
    now_ms: int,
    limit_s: float,
    disabled: bool = False,
) -> Decision | None:
    """Watch the watcher: a gateway that says it is online but whose heartbeats stop reaching the
    database means the pipeline (broker, ingest, database) is broken for it. Not for a disabled
    gateway: ingest refuses its messages on purpose, its Will too, so it stays "online"."""
    key = dedup_key("pipeline_stalled", device=gateway)
    if disabled:
        return Clear(key, "gateway disabled: its messages are refused")
    if state != "online":
        return Clear(key, "gateway not online") if last_heartbeat_ms is not None else None
    if last_heartbeat_ms is not None and now_ms - last_heartbeat_ms <= limit_s * 1000:
        return Clear(key, "heartbeats arriving again")
    return Open(
        "pipeline_stalled",
        key,
        now_ms,
        resident_id=None,
        site_id=site,
        gateway_id=gateway,
        sensor_id=None,
        summary=_summary("summary.pipeline_never", {"gateway": gateway})
        if last_heartbeat_ms is None
        else _summary(
            "summary.pipeline_stalled",
            {"gateway": gateway, "silent": f"{(now_ms - last_heartbeat_ms) / 60000:.0f} min"},
        ),
    )


def _clock(site: str, gateway: str, t_ms: int, skew_ms: int) -> Decision:
    key = dedup_key("clock_skew", device=gateway)
    if abs(skew_ms) <= CLOCK_SKEW_LIMIT_MS:
        return Clear(key, "gateway clock within limits again")
    off = f"{abs(skew_ms) / 60000:.0f} min"
    return Open(
        "clock_skew",
        key,
        t_ms,
        resident_id=None,
        site_id=site,
        gateway_id=gateway,
        sensor_id=None,
        summary=_summary(
            "summary.clock_ahead" if skew_ms > 0 else "summary.clock_behind",
            {"gateway": gateway, "off": off},
            skew_ms=skew_ms,
        ),
    )


INGEST_WORKER_KEY = "operator:ingest-worker:"  # + client id: one live alert per silent worker


def decide_ingest_worker(*, client_id: str, silent_s: float, limit_s: float, t_ms: int) -> Open | Clear:
    """The operators' alert for an ingest worker silent past ``limit_s``: its persistent session
    still takes its share of the shared subscription, so telemetry and status wait there for it
    (events do not: every worker receives them). Cleared when it records itself alive again."""
    key = INGEST_WORKER_KEY + client_id
    if silent_s <= limit_s:
        return Clear(key, "the ingest worker is alive again")
    return Open(
        "work_failed",
        key,
        t_ms,
        resident_id=None,
        site_id=None,
        gateway_id=None,
        sensor_id=None,
        summary=_summary(
            "summary.ingest_worker_silent",
            {"client_id": client_id, "seconds": f"{silent_s:.0f}"},
            client_id=client_id,
            silent_s=round(silent_s, 1),
        ),
    )


def work_failed(*, what: str, ident: int, error: str, site: str | None, t_ms: int) -> Open:
    """The operators' alert for an item the platform set aside after its last attempt failed.

    One live alert for all such items (each one more detection), so a flood of bad input pages the
    operators once; the items themselves are listed by the admin API."""
    return Open(
        "work_failed",
        f"operator:{what}:failed",
        t_ms,
        resident_id=None,
        site_id=None,
        gateway_id=None,
        sensor_id=None,
        summary=_summary(
            "summary.work_failed",
            {"what": what, "item": ident, "site": site or "-", "error": error},
            item=ident,
            site=site,
        ),
    )
