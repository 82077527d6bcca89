"""The consoles when things go wrong or run long, in a real headless Chromium against a real server:
the network gone (the browser's own offline mode), a session that has ended, a simulated home's
clock hours ahead of the wall, and names too long for a phone's width."""

# ruff: noqa: F811 (the browser tests' fixtures, imported to be used here)
from __future__ import annotations

import json
import time
from typing import Any

import psycopg
import pytest
from platform_seed import World
from psycopg.types.json import Jsonb
from test_web_a11y import LARGE_TEXT, SIDEWAYS, ready
from test_web_browser import (  # noqa: F401
    _shots,
    browser,
    inbox,
    new_page,
    queue_fall,
    server,
    settle,
    sign_in,
    world,
)

pytestmark = pytest.mark.browser

# What the live regions say from now on (#toast and the header's #live), as test_web_a11y watches.
WATCH = """() => { window.said = { toast: [], live: [] };
  for (const id of ['toast', 'live']) { const el = document.getElementById(id);
    new MutationObserver(() => { if (el.textContent) window.said[id].push(el.textContent); })
      .observe(el, { childList: true, characterData: true, subtree: true }); } }"""


def words(page: Any, key: str, **fields: Any) -> str:
    """The catalogue's words for ``key`` in the page's language (app.js's own ``t``)."""
    return str(page.evaluate("([k, f]) => t(k, f)", [key, fields]))


def test_no_network_and_an_ended_session_are_said_in_the_readers_words(
    browser: Any, server: str, db_url: str, world: World
) -> None:
    page = new_page(browser, server, no_websocket=True)  # polls: the list is refreshed every 4 s
    sign_in(page, "worker1", world.password)  # reads Chinese
    queue_fall(db_url)
    page.wait_for_selector("#alert-list [data-state=open]")
    ready(page)
    assert page.inner_text("#live") == words(page, "live.poll") == "定时刷新"
    page.evaluate(WATCH)

    page.context.set_offline(True)
    # the header no longer claims the list is being refreshed, and says so (a polite live region)
    page.wait_for_function("() => document.getElementById('live').classList.contains('down')", timeout=10_000)
    assert page.get_attribute("#live", "role") == "status"
    assert page.inner_text("#live") == "未更新：连接中断"
    # an acknowledgement that cannot be sent says why in Chinese, not the browser's "Failed to fetch"
    page.click("#alert-list [data-ack]")
    page.wait_for_function("() => window.said.toast.length > 0")
    assert page.evaluate("() => window.said.toast") == [words(page, "err.network")]
    assert "Failed" not in words(page, "err.network")
    # a page that cannot load is not "not found, or you may not see it": that is about access
    aid = page.get_attribute("#alert-list [data-alert]", "data-alert")
    page.evaluate(f"() => {{ location.hash = '#/alert/{aid}'; }}")
    page.wait_for_selector("#denied")
    assert page.inner_text("#denied") == words(page, "err.network")
    page.evaluate("() => { location.hash = '#/resident/res-1'; }")
    page.wait_for_function(
        "() => document.body.dataset.page === 'resident' && !!document.getElementById('denied')"
    )
    assert page.inner_text("#denied") == words(page, "err.network")

    # back online: refreshed again, said once
    page.context.set_offline(False)
    page.wait_for_function(
        "() => !document.getElementById('live').classList.contains('down')", timeout=10_000
    )
    assert page.inner_text("#live") == "定时刷新"
    assert page.evaluate("() => window.said.live") == ["未更新：连接中断", "定时刷新"]  # not on every poll

    # the session ended (both tokens no longer valid): back at sign-in, told why, in her language
    page.evaluate("() => { sessionStorage.setItem('refresh', 'spent'); S.token = 'expired'; }")
    page.evaluate("() => { location.hash = '#/console'; }")
    page.wait_for_selector("#login-submit")
    page.wait_for_function("() => document.getElementById('login-error').textContent !== ''")
    assert page.inner_text("#login-error") == "登录已过期，请重新登录。"
    assert page.get_attribute("#username", "aria-describedby") == "login-error"


def queue_event(db_url: str, payload: dict[str, Any]) -> None:
    """Queue an event for the engine the way ingest queues it."""
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO alert_work (kind, gateway_id, site_id, payload) VALUES ('event', %s, %s, %s::jsonb)",
            (payload["gateway"], payload["site"], json.dumps(payload)),
        )
        conn.execute("NOTIFY alert_work")


def queue_simulated_fall(db_url: str, ahead_s: float) -> None:
    """A fall from the simulated home, dated by its own clock ``ahead_s`` ahead of the wall (a
    simulator at 60x is hours ahead), queued the way ingest queues it."""
    at_ms = int((time.time() + ahead_s) * 1000)
    z = [1000 if abs(i - 100) > 3 else 3200 - 400 * abs(i - 100) for i in range(200)]
    payload = {
        "v": 1, "epoch": "e-sim", "seq": 1, "t": at_ms, "sensor": "wearable-sim-res-1", "kind": "fall",
        "confidence": 0.95, "resident": "sim-res-1", "gateway": "gw-sim-1", "site": "sim-home-1",
        "evidence": {"acc": {"t0": at_ms - 2000, "hz": 50, "unit": "mg",
                             "x": [0] * 200, "y": [0] * 200, "z": z}},
    }  # fmt: skip
    queue_event(db_url, payload)


def test_a_simulated_homes_time_is_marked_and_real_time_comes_first(
    browser: Any, server: str, db_url: str, world: World
) -> None:
    page = new_page(browser, server)
    sign_in(page, "admin", world.password)  # reads English
    queue_fall(db_url)  # a real home's fall, now
    # opened apart (one engine transaction would open both at one now(): no newest to check)
    page.wait_for_function("() => document.querySelectorAll('#alert-list [data-state=open]').length === 1")
    queue_simulated_fall(db_url, ahead_s=4 * 3600)  # the simulated home's, 4 h ahead by its clock
    page.wait_for_function("() => document.querySelectorAll('#alert-list [data-state=open]').length === 2")
    ready(page)
    alerts = page.evaluate(
        "() => [...S.alerts.values()].map((a) => [a.resident_id, a.simulated, a.opened_at])"
    )
    sim = next(a for a in alerts if a[1])
    real = next(a for a in alerts if not a[1])
    shown = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('#alert-list [data-alert]')].map((li) => {
          const a = S.alerts.get(Number(li.dataset.alert));
          const meta = li.querySelector('.meta');
          return [a.simulated ? 'sim' : 'real', { waited: li.querySelector('[data-waited]').textContent,
            first: [...meta.querySelectorAll(':scope > .data')].map((d) => d.textContent),
            marked: meta.querySelector('.sim-time') && meta.querySelector('.sim-time').textContent,
            opened: fmtTime(a.opened_at),
            home: a.summary && a.summary.sim_event_ms
              ? fmtTime(new Date(a.summary.sim_event_ms).toISOString()) : null }];
        }))"""
    )
    # the real home's alert: its time, not marked
    assert shown["real"]["marked"] is None
    # the simulated home's: the wall-clock time it was raised, then its own clock's, marked as such
    assert shown["sim"]["opened"] in shown["sim"]["first"], shown
    assert shown["sim"]["home"] not in shown["sim"]["first"], shown  # 4 h ahead: never shown as real time
    assert shown["sim"]["marked"] == f" (simulated time {shown['sim']['home']})"
    assert shown["sim"]["waited"] == "waiting 0 min"
    # newest by the wall clock first: the simulated home's clock does not put its alert on top
    order = page.evaluate(
        "() => [...document.querySelectorAll('#alert-list [data-alert]')].map((li) => li.dataset.alert)"
    )
    newest = page.evaluate(
        "() => [...S.alerts.values()].sort((a, b) => new Date(b.opened_at) - new Date(a.opened_at))[0].id"
    )
    assert order[0] == str(newest)
    assert sim[2] and real[2]  # both carry the wall-clock time they were opened

    # the alert's page: detected at the wall-clock time, the home's own marked
    sim_id = page.evaluate("() => [...S.alerts.values()].find((a) => a.simulated).id")
    page.evaluate(f"() => {{ location.hash = '#/alert/{sim_id}'; }}")
    page.wait_for_function(
        "() => document.body.dataset.page === 'alert' && document.body.dataset.ready === '1'"
    )
    row = page.inner_text("tr:has(th[data-i18n='alert.detected']) td")
    assert row.startswith(shown["sim"]["opened"] + " (simulated time " + shown["sim"]["home"] + ")"), row


def test_very_long_names_wrap_on_a_small_screen(browser: Any, server: str, db_url: str, world: World) -> None:
    """A name or id with no space to break at (a long Latin name, a generated id) wraps at 320 px
    with 200 % text: in headings, on alerts, on the family portal and in the notices."""
    long_name = "王" * 8 + "·" + "Featherstonehaugh" * 6
    with psycopg.connect(db_url) as conn:
        conn.execute("UPDATE residents SET name = %s WHERE id = 'res-1'", (long_name,))
        conn.execute(
            "UPDATE escalation_policies SET name = %s WHERE id = %s", ("policy-" + "x" * 80, world.policy_id)
        )
    queue_fall(db_url)
    for user, routes in (
        ("admin", ["#/console", "#/resident/res-1", "#/admin"]),
        ("family1", ["#/family/res-1"]),
    ):
        page = new_page(browser, server)
        sign_in(page, user, world.password)
        page.wait_for_selector("#main [data-alert]")
        aid = page.get_attribute("#main [data-alert]", "data-alert")
        for route in [*routes, f"#/alert/{aid}"]:
            page.set_viewport_size({"width": 1366, "height": 800})
            page.evaluate(f"() => {{ location.hash = '{route}'; }}")
            page.wait_for_function(f"() => location.hash === '{route}'")
            settle(page)
            page.set_viewport_size({"width": 320, "height": 640})
            page.evaluate(LARGE_TEXT)
            page.wait_for_timeout(150)
            assert page.evaluate(SIDEWAYS) <= 1, (user, route, page.evaluate(SIDEWAYS))
            page.evaluate("() => { document.documentElement.style.fontSize = ''; }")
        # the notices naming the resident stay inside the screen (on the family portal her red
        # band says it instead)
        page.evaluate(
            """() => { const a = [...S.alerts.values()][0];
            announce({ ...a, id: 99998, kind: 'device_offline', severity: 'medium' });
            announce({ ...a, id: 99999, kind: 'sos', severity: 'critical' }); }"""
        )
        page.evaluate(LARGE_TEXT)
        page.wait_for_timeout(100)
        for region in ("#toast", "#alarm"):
            box = page.evaluate(f"() => document.querySelector('{region}').getBoundingClientRect().toJSON()")
            assert box["left"] >= 0 and box["right"] <= 320 + 1, (user, region, box)
        page.context.close()


def test_many_alerts_at_once_are_said_together_and_each_control_names_its_alert(
    browser: Any, server: str, db_url: str, world: World
) -> None:
    page = new_page(browser, server)
    sign_in(page, "admin", world.password)  # reads English
    queue_fall(db_url)
    queue_fall(db_url, resident="res-2", gateway="gw-home-2", site="home-2")
    page.wait_for_function("() => document.querySelectorAll('#alert-list [data-state=open]').length === 2")
    ready(page)

    # each alert's note, Acknowledge and Details are told apart by the alert they belong to
    described = page.evaluate(
        """() => [...document.querySelectorAll('#alert-list [data-alert]')].map((li) =>
          [...li.querySelectorAll('input, button, a')].map((c) => {
            const ids = (c.getAttribute('aria-describedby') || '').split(' ').filter(Boolean);
            return ids.map((id) => document.getElementById(id).textContent).join(' '); }))"""
    )
    assert sorted(sorted(set(controls)) for controls in described) == [
        ["Fall · Li Wei"],
        ["Fall · Wang Fang"],
    ]
    assert all(len(controls) == 3 for controls in described), described  # note, Acknowledge, Details

    # ten alerts at once (a poll's batch): the first said at once, the other nine together, once
    page.wait_for_timeout(2000)  # (the two falls above have been said)
    page.evaluate("""() => { window.said = { alarm: [], toast: [] };
      for (const id of ['alarm', 'toast']) { const el = document.getElementById(id);
        new MutationObserver(() => { if (el.textContent) window.said[id].push(el.textContent); })
          .observe(el, { childList: true, characterData: true, subtree: true }); } }""")
    page.evaluate(
        """() => { const a = [...S.alerts.values()][0];
        for (let i = 1; i <= 10; i++) announce({ ...a, id: 90000 + i, kind: i % 2 ? 'fall' : 'sos' }); }"""
    )
    page.wait_for_timeout(2500)  # the batch is said 1.5 s after the first
    said = page.evaluate("() => window.said")
    who = page.evaluate("() => who([...S.alerts.values()][0])")
    assert said["toast"] == []
    assert said["alarm"][0] == f"Fall · {who}"
    assert said["alarm"][1].startswith(f"9 more new alerts: SOS button · {who}; Fall · {who}; "), said
    assert len(said["alarm"]) == 2, said
    assert said["alarm"][1].endswith(f"; SOS button · {who}; and 6 more"), (
        said
    )  # three named, the rest counted


def test_empty_states_say_so(browser: Any, server: str, db_url: str, world: World) -> None:
    """A family account linked to nobody yet, a resident with no care worker assigned: a sentence,
    not a heading over nothing."""
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO users (username, display_name, password_hash, role, locale)"
            " SELECT 'family3', 'Zhou Lan', password_hash, 'family', 'zh-CN'"
            " FROM users WHERE username = 'family1'"
        )
        conn.execute("DELETE FROM care_assignments WHERE resident_id = 'res-2'")
    page = new_page(browser, server)
    sign_in(page, "family3", world.password)
    page.wait_for_selector("#no-relative")
    ready(page)
    assert page.inner_text("main h1") == "我的亲人"
    assert page.inner_text("#no-relative") == words(page, "family.none")
    assert "关联" in page.inner_text("#no-relative")
    page.context.close()

    page = new_page(browser, server)
    sign_in(page, "admin", world.password)
    page.evaluate("() => { location.hash = '#/resident/res-2'; }")
    page.wait_for_selector("#no-team")
    assert page.inner_text("#no-team") == "No care worker is assigned yet."
    # set-up with no failed work to retry: nothing where that card would be, not the word "null"
    page.evaluate("() => { location.hash = '#/admin'; }")
    page.wait_for_selector("#admin-users")
    settle(page)
    assert page.query_selector("#admin-failed-work") is None
    texts = page.evaluate(
        """() => { const w = document.createTreeWalker(document.getElementById('main'), NodeFilter.SHOW_TEXT);
        const out = []; for (let n = w.nextNode(); n; n = w.nextNode()) out.push(n.textContent.trim());
        return out; }"""
    )
    assert "null" not in texts and "undefined" not in texts


def queue_sos(db_url: str) -> None:
    """An SOS press in res-1's home, queued the way ingest queues it."""
    payload = {
        "v": 1, "epoch": "e-sos", "seq": 1, "t": int(time.time() * 1000), "sensor": "sos-1", "kind": "sos",
        "resident": "res-1", "gateway": "gw-home-1", "site": "home-1",
    }  # fmt: skip
    queue_event(db_url, payload)


def test_a_red_band_already_said_is_not_said_again_when_another_comes(
    browser: Any, server: str, db_url: str, world: World
) -> None:
    """The family portal draws every red band anew when one changes: only the new one is role=alert
    (said at once); the band she has heard stays, named by its words, without being said again."""
    queue_fall(db_url)
    page = new_page(browser, server)
    sign_in(page, "family1", world.password)
    page.wait_for_selector("section.banner")
    ready(page)
    fall = page.get_attribute("section.banner", "data-alert")
    assert page.get_attribute(f"#alert-banner-{fall}", "role") == "alert"
    queue_sos(db_url)
    page.wait_for_function("() => document.querySelectorAll('section.banner').length === 2")
    ready(page)
    bands = page.evaluate(
        "() => [...document.querySelectorAll('section.banner')].map((b) => b.dataset.alert)"
    )
    sos = next(b for b in bands if b != fall)
    assert page.get_attribute(f"#alert-banner-{sos}", "role") == "alert"  # new: said
    assert page.get_attribute(f"#alert-banner-{fall}", "role") is None  # heard already: not again
    labelled = page.get_attribute(f"#alert-banner-{fall}", "aria-labelledby")
    assert page.inner_text(f"#{labelled}") == page.inner_text(f"#alert-banner-{fall} .big")


def test_a_keyboard_skips_a_long_alert_list_to_the_homes_and_devices(
    browser: Any, server: str, db_url: str, world: World
) -> None:
    """Each alert has three controls: past the filters, the first Tab offers a way past them all
    (found by the outside browser check, round 3: 100 alerts were ~300 Tab stops before "Homes and
    devices")."""
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO gateway_status (ts, gateway_id, site_id, state, sensors)"
            " VALUES (now(), 'gw-home-1', 'home-1', 'online', '{}')"
        )
    queue_fall(db_url)
    page = new_page(browser, server)
    sign_in(page, "worker1", world.password)  # reads Chinese
    page.wait_for_selector("#alert-list [data-state=open]")
    page.wait_for_selector("#device-health")
    ready(page)
    assert (
        page.evaluate("document.getElementById('skip-alerts').getBoundingClientRect().right") < 0
    )  # out of sight
    page.focus("#f-kind")  # the last filter
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "skip-alerts"
    assert (
        page.inner_text("#skip-alerts")
        == words(page, "console.skip_alerts")
        == "跳过告警列表，转到住户和设备"
    )
    assert page.evaluate("document.getElementById('skip-alerts').getBoundingClientRect().left") >= 0  # shown
    route = page.evaluate("location.hash")
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.closest('#device-health') !== null")
    assert page.evaluate("document.activeElement.tagName") == "H2"
    assert page.evaluate("location.hash") == route  # still the console: the route did not change


def test_a_simulated_homes_activity_chart_says_whose_clock_it_is(
    browser: Any, server: str, db_url: str, world: World
) -> None:
    """An inactivity alert's chart shows the hours before it by the home's readings, which for a
    simulated home carry its own clock, hours ahead of the wall: said under the chart (found by the
    outside browser check, round 3); a real home's chart has no such line."""
    home_ms = int((time.time() + 4 * 3600) * 1000)
    with psycopg.connect(db_url) as conn:
        for rid, site, sim, summary in (
            ("sim-res-1", "sim-home-1", True, {"sim_detected_ms": home_ms}),
            ("res-1", "home-1", False, {}),
        ):
            conn.execute(
                "INSERT INTO alerts (kind, severity, state, resident_id, site_id, dedup_key, title, summary,"
                " evidence, detected_at, opened_at, last_detected_at, detections, tier, simulated)"
                " VALUES ('inactivity', 'high', 'open', %s, %s, %s, 'inactivity', %s, '{}', now(), now(),"
                " now(), 1, 1, %s)",
                (rid, site, f"resident:{rid}:inactivity", Jsonb(summary), sim),
            )
        ids = dict(conn.execute("SELECT resident_id, id FROM alerts WHERE kind = 'inactivity'").fetchall())
        if conn.execute("SELECT relkind FROM pg_class WHERE relname = 'activity_hourly'").fetchone() != (
            "r",
        ):
            pytest.skip("the hourly rollup is a continuous aggregate here (fed by readings only)")
        for gateway, at in (("gw-sim-1", "to_timestamp(%s / 1000.0)"), ("gw-home-1", "now()")):
            conn.execute(
                "INSERT INTO activity_hourly (bucket, gateway_id, sensor_id, metric, n, total, max_value)"
                f" SELECT date_trunc('hour', {at}) - interval '2 hours', %s, 'pir-kitchen', 'motion',"
                " 5, 5, 1",
                (home_ms, gateway) if gateway == "gw-sim-1" else (gateway,),
            )
    page = new_page(browser, server)
    sign_in(page, "admin", world.password)  # reads English
    for rid, said in (("sim-res-1", "The chart's times are the simulated home's clock."), ("res-1", None)):
        page.evaluate(f"() => {{ location.hash = '#/alert/{ids[rid]}'; }}")
        page.wait_for_function(
            f"() => document.body.dataset.page === 'alert' && document.body.dataset.ready === '1'"
            f" && location.hash === '#/alert/{ids[rid]}'"
        )
        page.wait_for_selector("#evidence-chart")
        line = page.query_selector("#chart-clock")
        assert (line.inner_text() if line else None) == said, rid
