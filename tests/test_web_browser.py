"""The web consoles in a real headless Chromium against a real uvicorn server (engine running).

A care worker sees a fall arrive live and acknowledges it; the family portal then shows it
handled; another family cannot open that resident's page; every main page is screenshotted in
both languages and checked for labels left in the other language.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import chromium_path
from platform_seed import World, seed_world
from server_support import serving

from eldercare.config import Settings

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT_MS = 15_000

# Visible text of the page without data (names, ids, times: class "data"), the language button
# (named in the other language on purpose) and toasts (API messages).
VISIBLE_LABELS = """() => {
  const c = document.body.cloneNode(true);
  c.querySelectorAll('.data, script, canvas, #lang, #toast, [hidden]').forEach((e) => e.remove());
  return c.textContent.replace(/\\s+/g, ' ').trim();
}"""


@pytest.fixture
def world(db_url: str) -> World:
    with psycopg.connect(db_url) as conn:
        return seed_world(conn)


@pytest.fixture
def server(settings: Settings, world: World) -> Iterator[str]:
    """The whole app, web pages included, under uvicorn on a free port."""
    from eldercare.platform.app import create_app

    with serving(create_app(settings)) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def browser(server: str) -> Iterator[Any]:
    """Chromium, closed before the server stops (open sockets would hold its shutdown)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def new_page(browser: Any, base: str, *, phone: bool = False, no_websocket: bool = False) -> Any:
    """A fresh context (own sessionStorage and localStorage), English browser."""
    size = {"width": 390, "height": 844} if phone else {"width": 1200, "height": 900}
    ctx = browser.new_context(viewport=size, locale="en-US")
    if no_websocket:  # a proxy that drops WebSockets: the console must poll instead
        ctx.add_init_script("delete window.WebSocket;")
    page = ctx.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(base + "/web/")
    return page


def sign_in(page: Any, username: str, password: str) -> None:
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#login-submit")
    page.wait_for_selector("#logout:not([hidden])")


def settle(page: Any) -> None:
    """Wait until the page's last render finished (app.js marks it) and charts are drawn."""
    page.wait_for_selector("body[data-ready='1']", state="attached")
    page.wait_for_timeout(100)  # charts are drawn on the next animation frame


def check_language(page: Any, lang: str) -> str:
    text = str(page.evaluate(VISIBLE_LABELS))
    assert page.evaluate("document.documentElement.lang") == lang
    if lang == "zh-CN":
        left = re.findall(r"[A-Za-z]{2,}", text)
        assert left == [], f"English left on a Chinese page: {left[:10]} in {text[:300]}"
    else:
        left = re.findall(r"[\u4e00-\u9fff]+", text)
        assert left == [], f"Chinese left on an English page: {left[:10]} in {text[:300]}"
    return text


def accessible(page: Any, name: str) -> None:
    """axe-core (the engine browsers' accessibility audits use) finds nothing critical or serious."""
    from axe_playwright_python.sync_playwright import Axe

    found = Axe().run(page).response["violations"]
    bad = [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:5]}"
        for v in found
        if v["impact"] in ("critical", "serious")
    ]
    assert bad == [], f"{name}: {bad}"


def both_languages(page: Any, name: str) -> None:
    """Screenshot and check the page as shown, then in the other language, then switch back."""
    settle(page)
    first = str(page.evaluate("document.documentElement.lang"))
    other = "en" if first == "zh-CN" else "zh-CN"
    SHOTS.mkdir(parents=True, exist_ok=True)
    text_first = check_language(page, first)
    accessible(page, f"{name}-{first}")
    page.screenshot(path=str(SHOTS / f"{name}-{first}.png"), full_page=True)
    page.click("#lang")
    # functions, not expressions: Playwright evaluates expressions with eval, which the CSP forbids
    page.wait_for_function(f"() => document.documentElement.lang === {json.dumps(other)}")
    settle(page)
    text_other = check_language(page, other)
    accessible(page, f"{name}-{other}")
    page.screenshot(path=str(SHOTS / f"{name}-{other}.png"), full_page=True)
    assert text_first != text_other
    page.click("#lang")
    page.wait_for_function(f"() => document.documentElement.lang === {json.dumps(first)}")
    settle(page)


def queue_fall(
    db_url: str, seq: int = 1, *, resident: str = "res-1", gateway: str = "gw-home-1", site: str = "home-1"
) -> None:
    """What ingest does for the edge's fall event: a work row and NOTIFY alert_work."""
    hz = 50
    n = 4 * hz
    x = [int(30 * math.sin(i / 5)) for i in range(n)]
    y = [int(20 * math.cos(i / 7)) for i in range(n)]
    z = [1000 if abs(i - n // 2) > 3 else 3200 - 400 * abs(i - n // 2) for i in range(n)]
    now_ms = int(time.time() * 1000)
    payload = {
        "v": 1, "epoch": "e-web", "seq": seq, "t": now_ms, "sensor": f"wearable-{resident}", "kind": "fall",
        "confidence": 0.93, "resident": resident, "gateway": gateway, "site": site,
        "evidence": {"acc": {"t0": now_ms - 2000, "hz": hz, "unit": "mg", "x": x, "y": y, "z": z}},
    }  # fmt: skip
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO alert_work (kind, gateway_id, site_id, payload) VALUES ('event', %s, %s, %s::jsonb)",
            (gateway, site, json.dumps(payload)),
        )
        conn.execute("NOTIFY alert_work")


def seed_week_of_activity(db_url: str) -> bool:
    """Hourly rollup rows for res-2's home over the last week, where the rollup is a plain table
    (on TimescaleDB it is a continuous aggregate fed by readings: then nothing is seeded)."""
    with psycopg.connect(db_url) as conn:
        kind = conn.execute("SELECT relkind FROM pg_class WHERE relname = 'activity_hourly'").fetchone()
        if kind != ("r",):
            return False
        conn.execute(
            "INSERT INTO activity_hourly (bucket, gateway_id, sensor_id, metric, n, total, max_value)"
            " SELECT h, 'gw-home-2', s, 'motion', (5 + 20 * random())::int, 1, 1"
            " FROM generate_series(date_trunc('hour', now()) - interval '7 days', now(), interval '1 h') h,"
            " unnest(ARRAY['pir-kitchen', 'pir-bedroom']) s"
            " WHERE extract(hour FROM h) BETWEEN 0 AND 14"
        )
    return True


def test_fall_arrives_live_is_acknowledged_and_the_family_sees_it_handled(
    browser: Any, server: str, db_url: str, world: World
) -> None:
    page = new_page(browser, server)
    both_languages(page, "login")
    sign_in(page, "worker1", world.password)
    assert page.evaluate("document.documentElement.lang") == "zh-CN"  # worker1's own language
    page.wait_for_selector("#alert-list")
    page.wait_for_selector("#live:not([hidden])")
    live = page.evaluate("S.live")

    health = page.wait_for_selector("#device-health")  # homes needing attention first
    assert "在线" in health.inner_text()
    queue_fall(db_url)
    item = page.wait_for_selector("#alert-list [data-state=open]")  # no reload
    assert "跌倒" in item.inner_text()
    assert live == "ws", "the alert should be pushed over the WebSocket"
    both_languages(page, "console")
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(SHOTS / "console-phone-zh-CN.png"), full_page=True)
    page.set_viewport_size({"width": 1200, "height": 900})
    page.click("#alert-list [data-ack]")
    page.wait_for_selector("#alert-list [data-state=acknowledged]")
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT state FROM alerts").fetchall() == [("acknowledged",)]

    page.click("#alert-list a[href^='#/alert/']")
    page.wait_for_selector("#evidence-chart canvas")
    page.wait_for_selector("#notifications tr:nth-child(2)")  # who was notified
    both_languages(page, "alert-detail")
    page.select_option("#outcome", "confirmed")
    page.fill("#note", "helped up, no injury")
    page.click("#resolve-form button[type=submit]")
    page.wait_for_selector(".alerts [data-state=resolved]")
    assert "helped up, no injury" in page.inner_text("main")  # the note in the trail
    page.click("a[href='#/resident/res-1']")
    page.wait_for_selector("#sensors")
    assert "pir-kitchen" in page.inner_text("#sensors")
    both_languages(page, "resident-card")

    with psycopg.connect(db_url) as conn:  # the assigned worker's number, from the registry
        conn.execute("UPDATE users SET phone = '+8613800000001' WHERE username = 'worker1'")
    fam = new_page(browser, server, phone=True)
    refused: list[str] = []  # no request her role or her father's consent is sure to refuse
    fam.on("response", lambda r: refused.append(r.url) if r.status in (401, 403) else None)
    sign_in(fam, "family1", world.password)
    handled = fam.wait_for_selector("#alert-history [data-state=resolved]")
    assert "属实" in handled.inner_text()  # outcome "confirmed", in family1's language
    assert fam.query_selector(".banner") is None  # nothing open: no red band
    queue_fall(db_url, seq=2)  # a new fall while the portal is open: it comes to the top, live
    from playwright.sync_api import expect

    banner = fam.locator(".banner[role=alert]")  # a locator: the live portal may draw the band anew
    expect(banner).to_contain_text("疑似跌倒")
    box = banner.bounding_box()
    assert box is not None and box["y"] < 200  # above the fold on a phone
    assert fam.query_selector(".banner a[href='tel:+8613800000001']") is not None  # one tap to call
    fam.goto(server + "/web/#/console")  # a page her role may not open is not even drawn
    fam.wait_for_function("() => location.hash.startsWith('#/family')")
    fam.wait_for_selector("#today")
    assert fam.query_selector("#alert-list") is None
    fam.wait_for_selector("#consent-notice")  # family1's consent covers no raw activity
    assert refused == []
    duty = fam.inner_text("#on-duty")  # how to reach the care team: the assigned worker, on duty now
    assert "责任护理员" in duty and "驿站值班" in duty
    both_languages(fam, "family")

    rolled_up = seed_week_of_activity(db_url)
    other = new_page(browser, server, phone=True)
    sign_in(other, "family2", world.password)
    other.wait_for_selector("#today")
    if rolled_up:  # family2's consent covers activity: the week is plotted
        other.wait_for_selector("#week-chart canvas")
        settle(other)
        other.screenshot(path=str(SHOTS / "family-week-en.png"), full_page=True)
    other.goto(server + "/web/#/family/res-1")
    denied = other.wait_for_selector("#denied")
    assert denied.inner_text() in ("Not found, or you may not see it.", "You may not see this.")
    assert "Wang Fang" not in other.inner_text("main")


def test_admin_and_tester_pages_work_in_both_languages(
    browser: Any, server: str, db_url: str, world: World
) -> None:
    with psycopg.connect(db_url) as conn:  # an item the engine set aside after three failures
        work_id = conn.execute(
            "INSERT INTO alert_work (kind, gateway_id, site_id, payload, attempts, last_error, failed_at)"
            " VALUES ('event', 'gw-home-1', 'home-1', '{\"kind\": \"sos\"}', 3, 'boom', now()) RETURNING id"
        ).fetchone()[0]
    page = new_page(browser, server)
    sign_in(page, "admin", world.password)
    page.goto(server + "/web/#/admin")
    page.wait_for_selector("#gateway-form")
    assert "boom" in page.inner_text(f"[data-failed-work='{work_id}']")
    both_languages(page, "admin")
    page.fill("#gateway-form-id", "gw-web-1")
    page.select_option("#gateway-form-site_id", "home-2")
    page.fill("#gateway-form-sensors", "pir-hall:pir:hall, wearable-res-2b:wearable:@res-2")
    page.click("#gateway-form button[type=submit]")
    creds = page.wait_for_selector("#mqtt-credentials")
    assert re.search(r"password: \S{12,}", creds.inner_text())
    with psycopg.connect(db_url) as conn:
        sensors = conn.execute(
            "SELECT id, kind, room, resident_id FROM sensors WHERE gateway_id = 'gw-web-1' ORDER BY id"
        ).fetchall()
    assert sensors == [("pir-hall", "pir", "hall", None), ("wearable-res-2b", "wearable", None, "res-2")]
    page.select_option("#family-form-resident_id", "res-2")
    page.select_option("#family-form-user_id", str(world.user_id("family1")))
    page.fill("#family-form-relation", "niece")
    page.click("#family-form button[type=submit]")
    # the toast may still say "Saved" from the gateway form: wait for the row itself
    deadline = time.monotonic() + 10
    while True:
        with psycopg.connect(db_url) as conn:
            links = conn.execute(
                "SELECT resident_id, relation FROM family_links WHERE user_id = %s ORDER BY 1",
                (world.user_id("family1"),),
            ).fetchall()
        if len(links) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert links == [("res-1", "daughter"), ("res-2", "niece")]

    # manage what exists, not only create: disable a user, new gateway credentials, a policy's
    # deadline, the audit log
    page.click(f"[data-toggle-user='{world.user_id('family2')}']")
    page.wait_for_selector(f"tr[data-user='{world.user_id('family2')}'].inactive")
    page.click("[data-reissue='gw-home-2']")
    assert re.search(r"password: \S{12,}", page.wait_for_selector("#reissued-credentials").inner_text())
    page.fill(f"#p{world.policy_id}-s1", "120")
    before = page.query_selector("#admin-audit")
    page.click(f"form[data-policy='{world.policy_id}'] button[type=submit]")
    page.wait_for_function("el => !el.isConnected", arg=before)  # saved: the page was drawn anew
    settle(page)
    page.fill("#audit-resident", "res-2")  # the family link made above was audited
    page.click("#admin-audit button[type=submit]")
    # one look at the filtered table: the family link's rows, and none of another resident
    page.wait_for_function(
        "() => { const t = document.getElementById('audit-table')?.innerText || '';"
        " return t.includes('res-2') && !t.includes('res-1'); }"
    )
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT active FROM users WHERE username = 'family2'").fetchone() == (False,)
        assert conn.execute(
            "SELECT ack_timeout_s FROM escalation_tiers WHERE policy_id = %s AND tier = 1",
            (world.policy_id,),
        ).fetchone() == (120,)

    page.click(f"[data-failed-work='{work_id}'] button")  # put back in the queue
    page.wait_for_selector(f"[data-failed-work='{work_id}']", state="detached")
    with psycopg.connect(db_url) as conn:
        left = conn.execute("SELECT failed_at FROM alert_work WHERE id = %s", (work_id,)).fetchall()
    assert left in ([], [(None,)])  # retried: handled since, or waiting for its turn

    page.evaluate("S.token = 'not-a-valid-token'")  # as if it had expired: the refresh token renews it
    page.goto(server + "/web/#/tester")
    page.wait_for_selector("#sim-residents")
    assert page.evaluate("S.token") != "not-a-valid-token"

    tester = new_page(browser, server, no_websocket=True)
    sign_in(tester, "tester", world.password)
    tester.wait_for_selector("#sim-residents [data-trigger='sim-res-1']")
    assert "res-1" not in tester.inner_text("#sim-residents").replace("sim-res-1", "")
    tester.select_option("[data-kind-for='sim-res-1']", "sos")
    tester.click("[data-trigger='sim-res-1']")
    # the page waits for the simulation's ground truth, so the score counts what it fired; with
    # no simulation running it says so and records nothing that would later score as missed
    tester.wait_for_function(
        "() => document.getElementById('toast').textContent.startsWith('No simulation answered')"
    )
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT resident_id, kind FROM sim_incidents").fetchall() == []
    queue_fall(db_url, resident="sim-res-1", gateway="gw-sim-1", site="sim-home-1")
    tester.wait_for_selector("#alert-list [data-state=open]")  # arrives without reload, by polling
    assert tester.evaluate("S.live") == "poll"
    tester.click("#score-refresh")
    tester.wait_for_selector("#score-tables")
    both_languages(tester, "tester")
