"""What becomes an alert: pure decisions from edge events and gateway status, no I/O.

The service hands in the work rows that ingest wrote (``alert_work.payload``) and gets back
:class:`Open` (open a new alert or join the live one with the same dedup key) and :class:`Clear`
(auto-resolve a device problem whose condition has gone) decisions.
"""

from __future__ import annotations

from typing import Any

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
    """One live alert per resident and kind; device problems per device."""
    if kind in DEVICE_KINDS:
        return f"device:{device or site}:{kind}"
    return f"resident:{resident}:{kind}" if resident else f"site:{site}:{kind}"


def _summary(kind: str, en: str, zh: str, **figures: Any) -> dict[str, Any]:
    return {"en": en, "zh-CN": zh, **figures}


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
    if kind == "fall":
        en = f"Possible fall detected by {sensor} (confidence {confidence:.0%}); no answer to the check-in."
        zh = f"{sensor} 检测到疑似跌倒（置信度 {confidence:.0%}），询问无应答。"
        figures: dict[str, Any] = {"confidence": confidence}
        if home is not None:
            en, zh = f"{en} {home.explain('en')}", f"{zh}{home.explain('zh-CN')}"
            figures |= {"home": home.verdict, "watched_s": round(home.watched_s, 1)}
        return [
            Open(
                "fall",
                dedup_key("fall", resident=resident, site=site),
                work["t"],
                summary=_summary("fall", en, zh, **figures),
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
                dedup_key("sos", resident=resident, site=site),
                work["t"],
                summary=_summary("sos", f"SOS pressed on {sensor}.", f"{sensor} 紧急呼叫被按下。"),
                **common,
            )
        ]
    if kind == "vitals":
        ev = work.get("evidence") or {}
        metric, value = ev.get("metric", "vital sign"), ev.get("value")
        return [
            Open(
                "vitals",
                dedup_key("vitals", resident=resident, site=site),
                work["t"],
                summary=_summary(
                    "vitals",
                    f"{metric} out of range: {value}.",
                    f"{metric} 超出范围：{value}。",
                    metric=metric,
                    value=value,
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
                dedup_key("fall", resident=resident, site=site),
                f"the resident answered the check-in on {sensor}: fall cancelled",
            )
        ]
    return []  # bed_exit, clock_error, config_rejected: recorded as events, no alert of their own


def _low_battery(site: str, gateway: str, sensor: str, t_ms: int, battery: float | None) -> Open:
    shown = f"{battery:.0%}" if isinstance(battery, int | float) else "low"
    return Open(
        "low_battery",
        dedup_key("low_battery", device=f"{gateway}/{sensor}"),
        t_ms,
        resident_id=None,
        site_id=site,
        gateway_id=gateway,
        sensor_id=sensor,
        summary=_summary("low_battery", f"Battery of {sensor} at {shown}.", f"{sensor} 电量 {shown}。"),
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
                summary=_summary(
                    "device_offline",
                    f"Gateway {gateway} went offline; the home is not watched until it is back.",
                    f"网关 {gateway} 离线，恢复前该住所无法监护。",
                ),
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
        online, via = (info or {}).get("online"), (info or {}).get("via")
        if online is False and via and (sensors.get(via) or {}).get("online") is False:
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


def _disk(site: str, gateway: str, t_ms: int, outbox: dict[str, Any]) -> list[Decision]:
    """``status.outbox.disk_low``: the gateway's disk is nearly full. Alarms still leave (from
    memory), but readings would soon wait in memory only: someone should look before that."""
    key = dedup_key("device_offline", device=f"{gateway}/disk")
    if outbox.get("disk_low") == 1:
        free = outbox.get("disk_free_bytes")
        shown = f"{free / 1e6:.1f} MB" if isinstance(free, int) else "little"
        summary = _summary(
            "device_offline",
            f"Gateway {gateway}'s disk is nearly full ({shown} free): free space or replace it.",
            f"网关 {gateway} 的磁盘即将写满（剩余 {shown}）：请清理空间或更换设备。",
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
                "wearable_not_worn",
                f"{sensor} has been lying still, not worn, for {shown}: while it is off, falls are not "
                "detected. A gentle reminder to put it back on is enough.",
                f"{sensor} 已静置未佩戴 {shown}：未佩戴期间无法检测跌倒。温和提醒老人重新戴上即可。",
                not_worn_since_ms=since,
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
                summary=_summary(
                    "device_offline",
                    f"Gateway {gateway} lost sensor {sensor}: check its battery and that it is in range.",
                    f"网关 {gateway} 与传感器 {sensor} 失去连接：请检查电池和信号范围。",
                ),
            )
        ]
    return [Clear(key, "the gateway hears the sensor again")] if online is True else []


def decide_heartbeat(
    *, gateway: str, site: str, state: str, last_heartbeat_ms: int | None, now_ms: int, limit_s: float
) -> Decision | None:
    """Watch the watcher: a gateway that says it is online but whose heartbeats stop reaching the
    database means the pipeline (broker, ingest, database) is broken for it."""
    key = dedup_key("pipeline_stalled", device=gateway)
    if state != "online":
        return Clear(key, "gateway not online") if last_heartbeat_ms is not None else None
    if last_heartbeat_ms is not None and now_ms - last_heartbeat_ms <= limit_s * 1000:
        return Clear(key, "heartbeats arriving again")
    silent = "never" if last_heartbeat_ms is None else f"{(now_ms - last_heartbeat_ms) / 60000:.0f} min"
    return Open(
        "pipeline_stalled",
        key,
        now_ms,
        resident_id=None,
        site_id=site,
        gateway_id=gateway,
        sensor_id=None,
        summary=_summary(
            "pipeline_stalled",
            f"Gateway {gateway} is online but no heartbeat reached the database for {silent}.",
            f"网关 {gateway} 在线，但心跳已 {silent} 未到达数据库。",
        ),
    )


def _clock(site: str, gateway: str, t_ms: int, skew_ms: int) -> Decision:
    key = dedup_key("clock_skew", device=gateway)
    if abs(skew_ms) <= CLOCK_SKEW_LIMIT_MS:
        return Clear(key, "gateway clock within limits again")
    way = "ahead" if skew_ms > 0 else "behind"
    off = f"{abs(skew_ms) / 60000:.0f} min"
    way_zh = "快" if skew_ms > 0 else "慢"
    return Open(
        "clock_skew",
        key,
        t_ms,
        resident_id=None,
        site_id=site,
        gateway_id=gateway,
        sensor_id=None,
        summary=_summary(
            "clock_skew",
            f"Gateway {gateway}'s clock is {off} {way}: its readings and events carry wrong times.",
            f"网关 {gateway} 的时钟{way_zh}了 {off}，其数据和事件的时间不正确。",
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
            "work_failed",
            f"Ingest worker {client_id} has been silent for {silent_s:.0f} s: its broker session holds "
            "its share of telemetry and status until it returns (alarms still flow through the other "
            "workers). Restart it, or retire it: eldercare ingest retire.",
            f"接收进程 {client_id} 已 {silent_s:.0f} 秒无响应：其代理会话积压了它那份遥测和状态数据，"
            "直到它恢复（告警仍由其他进程处理）。请重启或退役它：eldercare ingest retire。",
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
            "work_failed",
            f"{what} {ident} (site {site or '-'}) could not be processed and was set aside: {error}",
            f"{what} {ident}（站点 {site or '-'}）无法处理，已搁置：{error}",
            item=ident,
            site=site,
        ),
    )
