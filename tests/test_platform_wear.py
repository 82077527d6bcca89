"""A wearable left off (``wear: not_worn`` in the gateway's status) becomes, after the setting's
while, a gentle low-severity notice to the care team (never the family, never a fall), resolved by
itself when the device is worn again. Real database, the engine's own work path."""

from __future__ import annotations

import psycopg
import pytest
from platform_seed import World, seed_world
from test_platform_engine import NOW_MS, queue, rows, with_pool

from eldercare.platform.engine import rules, service

MIN = 60_000


@pytest.fixture
def world(db_url: str) -> World:
    with psycopg.connect(db_url) as conn:
        return seed_world(conn, ack_timeouts=(1, 1, 1))


def status(t_ms: int, wear: str, since: int | None = None) -> dict[str, object]:
    sensor = {"battery": 0.9, "wear": wear, "not_worn_since": since}
    return {"t": t_ms, "ts": t_ms, "state": "online", "sensors": {"wearable-res-1": sensor}}


def process(db_url: str, after_s: float) -> int:
    return int(with_pool(db_url, lambda pool: service.process_work(pool, not_worn_after_s=after_s)))


def test_not_worn_for_a_while_is_a_gentle_notice_then_resolves_when_worn(db_url: str, world: World) -> None:
    put_down = NOW_MS - 50 * MIN
    queue(db_url, "status", "gw-home-1", "home-1", status(NOW_MS, "not_worn", put_down))
    assert process(db_url, after_s=3600) == 1
    assert rows(db_url, "SELECT count(*) FROM alerts") == [(0,)]  # 50 min: not yet a while

    queue(db_url, "status", "gw-home-1", "home-1", status(NOW_MS + 15 * MIN, "not_worn", put_down))
    assert process(db_url, after_s=3600) == 1
    got = rows(db_url, "SELECT kind, severity, state, sensor_id, resident_id, summary FROM alerts")
    assert [r[:5] for r in got] == [("wearable_not_worn", "low", "open", "wearable-res-1", None)]
    summary = got[0][5]
    assert "1.1 h" in summary["en"] and "1.1 h" in summary["zh-CN"] and "未佩戴" in summary["zh-CN"]
    notified = rows(
        db_url, "SELECT DISTINCT u.role FROM notifications n JOIN users u ON u.id = n.user_id ORDER BY 1"
    )
    assert ("family",) not in notified and notified  # the care team only
    assert rows(db_url, "SELECT count(*) FROM alerts WHERE kind = 'fall'") == [(0,)]

    queue(db_url, "status", "gw-home-1", "home-1", status(NOW_MS + 20 * MIN, "not_worn", put_down))
    process(db_url, after_s=3600)  # still off: the same notice, no second one
    assert rows(db_url, "SELECT count(*), max(detections) FROM alerts") == [(1, 2)]

    queue(db_url, "status", "gw-home-1", "home-1", status(NOW_MS + 30 * MIN, "worn"))
    process(db_url, after_s=3600)
    assert rows(db_url, "SELECT state, outcome FROM alerts") == [("resolved", "no_action_needed")]


def test_the_setting_decides_how_long_is_a_while() -> None:
    work = {"site": "h", "gateway": "g"} | status(NOW_MS, "not_worn", NOW_MS - 10 * MIN)
    opened = [d for d in rules.decide_status(work, not_worn_after_s=300) if isinstance(d, rules.Open)]
    assert [d.kind for d in opened] == ["wearable_not_worn"]
    assert not [d for d in rules.decide_status(work, not_worn_after_s=900) if isinstance(d, rules.Open)]
    unknown = {"site": "h", "gateway": "g", "t": NOW_MS, "state": "online", "sensors": {"w": {}}}
    assert not [d for d in rules.decide_status(unknown) if "wearable_not_worn" in d.dedup_key]
