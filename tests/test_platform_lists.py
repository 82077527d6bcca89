"""The lists consoles and the portal poll (issue 27, item 3): read by an index on a year of
history, paged by keyset, and audited once per answer rather than once per poll."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from psycopg import sql

from eldercare.platform.read_audit import Listings
from eldercare.platform.repo.alerts import list_visible_query

if TYPE_CHECKING:
    from platform_api_support import Api
    from platform_seed import World

pytest_plugins = ["platform_api_support"]

# A year of alerts for 250 homes (2 per home per week, about 26k), as a city's first year leaves
# them; a few hundred still open; one in ten simulated; one in five about a site, not a resident.
YEAR = """
INSERT INTO sites (id, kind, name) SELECT 'y-home-' || h, 'home', 'home ' || h FROM generate_series(1, 250) h;
INSERT INTO residents (id, name, home_site_id, home_care_provider_id)
SELECT 'y-res-' || h, 'resident ' || h, 'y-home-' || h, CASE WHEN h <= 50 THEN 'hc-1' ELSE 'hc-2' END
FROM generate_series(1, 250) h;
INSERT INTO alerts (kind, severity, state, resident_id, site_id, dedup_key, title, detected_at, opened_at,
                    resolved_at, outcome, simulated)
SELECT CASE WHEN i % 5 = 0 THEN 'device_offline' ELSE 'inactivity' END, 'high', 'resolved',
       CASE WHEN i % 5 = 0 THEN NULL ELSE 'y-res-' || (1 + i % 250) END, 'y-home-' || (1 + i % 250),
       'y-' || i, 'Inactivity', t, t, t + interval '5 minutes', 'false_alarm', i % 10 = 3
FROM generate_series(1, 26000) i CROSS JOIN LATERAL (SELECT now() - make_interval(mins => i * 20) AS t) x;
UPDATE alerts SET state = 'open', resolved_at = NULL, outcome = NULL WHERE id % 100 = 0;
INSERT INTO family_links (user_id, resident_id, relation)
SELECT id, 'y-res-7', 'son' FROM users WHERE username = 'family1';
INSERT INTO audit_log (at, user_id, username, action, resident_id)
SELECT now() - make_interval(mins => i), 1 + i % 8, 'u', 'read:alerts', 'y-res-' || (1 + i % 250)
FROM generate_series(1, 200000) i;
"""


@pytest.fixture
def year(db_url: str, world: World) -> World:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(YEAR)
        conn.execute("VACUUM ANALYZE")
    return world


def _plan(conn: psycopg.Connection[Any], query: sql.Composable, params: dict[str, Any]) -> str:
    return "\n".join(r[0] for r in conn.execute(sql.SQL("EXPLAIN ") + query, params).fetchall())


def test_every_polled_list_is_read_by_an_index_on_a_year_of_history(db_url: str, year: World) -> None:
    """``GET /alerts`` as each role (first page, a page deep in the year by its cursor, the open
    ones, one resident's) and the audit log's pages: no sequential scan of alerts or the audit log,
    and no sort of more than one resident's alerts (a family member's pages are merged from one
    index range per resident they follow)."""
    with psycopg.connect(db_url) as conn:
        deep = conn.execute(
            "SELECT opened_at, id FROM alerts ORDER BY opened_at DESC, id DESC OFFSET 20000 LIMIT 1"
        ).fetchone()
        assert deep is not None
        roles = {"admin": None, "tester": None, "worker1": "hc-1", "family1": None}
        for who, provider in roles.items():
            role = {"worker1": "care_worker", "family1": "family"}.get(who, who)
            for extra in ({}, {"before": (deep[0], deep[1])}, {"state": "open"}, {"resident": "y-res-7"}):
                args: dict[str, Any] = {
                    "user_id": year.user_id(who), "role": role, "provider_id": provider, "state": None,
                    "kind": None, "site": None, "resident": None, "tier": None, "limit": 100, "before": None,
                }  # fmt: skip
                plan = _plan(conn, *list_visible_query(**(args | extra)))
                assert "Seq Scan on alerts" not in plan, (who, extra, plan)
                assert "Index" in plan and "on alerts" in plan, (who, extra, plan)
                # at most a sort of a resident's year or a page per followed resident, never of
                # the whole table (26k rows)
                sorted_rows = [int(m) for m in re.findall(r"Sort  \(cost=\S+ rows=(\d+)", plan)]
                assert all(n <= 1000 for n in sorted_rows), (who, extra, plan)
        for where in ("TRUE", "resident_id = 'y-res-7'", "user_id = 3"):
            plan = _plan(
                conn,
                sql.SQL(
                    "SELECT * FROM audit_log WHERE " + where + " AND id < 150000 ORDER BY id DESC LIMIT 100"
                ),
                {},
            )
            assert "Seq Scan" not in plan and "Sort" not in plan, (where, plan)


def test_alert_pages_by_cursor_cover_every_alert_once_newest_first(
    db_url: str, api: Api, world: World
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:  # ties on opened_at: the id breaks them
        conn.execute(
            "INSERT INTO alerts (kind, severity, resident_id, site_id, dedup_key, title, detected_at,"
            " opened_at) SELECT 'fall', 'critical', 'res-1', 'home-1', 'p-' || i, 'Fall', now(),"
            " timestamptz '2026-01-01' + make_interval(mins => i / 3) FROM generate_series(1, 11) i"
        )
        expected = [r[0] for r in conn.execute("SELECT id FROM alerts ORDER BY opened_at DESC, id DESC")]
    got: list[int] = []
    before = ""
    while True:
        r = api.get("admin", "/api/v1/alerts", params={"limit": 4, **({"before": before} if before else {})})
        assert r.status_code == 200, r.text
        page = r.json()
        got += [a["id"] for a in page]
        if len(page) < 4:
            break
        before = page[-1]["cursor"]
    assert got == expected
    for bad in ("x", "1.2.3", "1e5.3", f"1.{2**63}", f"{10**18}.1"):
        r = api.get("admin", "/api/v1/alerts", params={"before": bad})
        assert r.status_code == 422 and r.json()["errors"][0]["field"].endswith("before"), (bad, r.text)


def _listings(db_url: str, username: str) -> list[list[int]]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT detail -> 'alerts' FROM audit_log WHERE action = 'list:alerts' AND username = %s"
            " ORDER BY id",
            [username],
        ).fetchall()
    return [r[0] for r in rows]


def test_a_polled_alert_list_is_audited_once_per_answer(db_url: str, api: Api, world: World) -> None:
    for _ in range(5):  # a console polling: one fact, one row
        assert api.get("worker1", "/api/v1/alerts").status_code == 200
    assert _listings(db_url, "worker1") == [[]]
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO alerts (kind, severity, resident_id, site_id, dedup_key, title, detected_at)"
            " VALUES ('fall', 'critical', 'res-1', 'home-1', 'a-1', 'Fall', now()) RETURNING id"
        ).fetchone()
    assert row is not None
    for _ in range(3):  # the answer changed: written once more
        assert api.get("worker1", "/api/v1/alerts").status_code == 200
    assert api.get("worker1", "/api/v1/alerts?state=open").status_code == 200  # another listing
    assert _listings(db_url, "worker1") == [[], [row[0]], [row[0]]]
    assert api.get("family1", "/api/v1/alerts").status_code == 200  # another person: their own row
    assert _listings(db_url, "family1") == [[row[0]]]


def test_the_same_answer_is_written_again_after_a_while_and_memory_stays_bounded() -> None:
    now = [0.0]
    seen = Listings(repeat_s=600, max_keys=3, clock=lambda: now[0])
    assert seen.first_time(1, "GET /alerts?", [1, 2])
    assert not seen.first_time(1, "GET /alerts?", [1, 2])
    now[0] = 599.0
    assert not seen.first_time(1, "GET /alerts?", [1, 2])
    now[0] = 601.0
    assert seen.first_time(1, "GET /alerts?", [1, 2])  # still looking, ten minutes on: on record
    for user in (2, 3, 4):
        assert seen.first_time(user, "GET /alerts?", [1, 2])
    assert seen.first_time(1, "GET /alerts?", [1, 2])  # forgotten (the oldest of four): written


def test_an_acknowledged_or_resolved_alert_is_answered_with_its_cursor(api: Api, db_url: str) -> None:
    """The answers to ack and resolve carried ``cursor: ""``, which ``GET /alerts?before=`` refuses."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        for key in ("a", "b"):
            conn.execute(
                "INSERT INTO alerts (kind, severity, resident_id, site_id, dedup_key, title, detected_at)"
                " VALUES ('sos', 'critical', 'res-1', 'home-1', %s, 'SOS', now())",
                [key],
            )
    listed = {a["id"]: a["cursor"] for a in api.get("worker1", "/api/v1/alerts").json()}
    first, second = sorted(listed)
    acked = api.post("worker1", f"/api/v1/alerts/{second}/ack").json()
    resolved = api.post("worker1", f"/api/v1/alerts/{second}/resolve", json={"outcome": "confirmed"}).json()
    assert acked["cursor"] == resolved["cursor"] == listed[second]
    page = api.get("worker1", "/api/v1/alerts", params={"before": acked["cursor"]})
    assert [a["id"] for a in page.json()] == [first]
