"""The web consoles in a real headless Chromium against a real uvicorn server (engine running).

A care worker sees a fall arrive live and acknowledges it; the family portal then shows it
handled; another family cannot open that resident's page; every main page is screenshotted in
both languages and checked for labels left in the other language.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Iterator
from email import message_from_bytes
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import chromium_path
from platform_seed import World, seed_world
from psycopg.types.json import Jsonb
from pydantic import SecretStr
from server_support import Inbox, serving, smtp_inbox

from eldercare.config import Settings

pytestmark = pytest.mark.browser

# Screenshots of every page, both languages, both viewports: in ELDERCARE_SCREENSHOTS if set, else
# under pytest's base temporary directory (set by the session fixture below).
SHOTS = Path(os.environ.get("ELDERCARE_SCREENSHOTS") or "screenshots")
VIEWPORTS = {"desktop": {"width": 1366, "height": 800}, "phone": {"width": 390, "height": 844}}
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
# (named in the other language on purpose) and notices (API messages, a new alert's resident).
VISIBLE_LABELS = """() => {
  const c = document.body.cloneNode(true);
  c.querySelectorAll('.data, script, canvas, #lang, #toast, #alarm, [hidden]').forEach((e) => e.remove());
  return c.textContent.replace(/\\s+/g, ' ').trim();
}"""


@pytest.fixture(scope="session", autouse=True)
def _shots(tmp_path_factory: pytest.TempPathFactory) -> None:
    global SHOTS
    if not os.environ.get("ELDERCARE_SCREENSHOTS"):
        SHOTS = tmp_path_factory.getbasetemp() / "screenshots"


@pytest.fixture
def world(db_url: str) -> World:
    with psycopg.connect(db_url) as conn:
        return seed_world(conn)


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    with smtp_inbox() as box:
        yield box


@pytest.fixture
def server(settings: Settings, world: World, inbox: tuple[Inbox, int]) -> Iterator[str]:
    """The whole app, web pages included, under uvicorn on a free port; e-mail to the inbox."""
    from eldercare.platform.app import create_app

    with_mail = settings.model_copy(update={"smtp_url": SecretStr(f"smtp://127.0.0.1:{inbox[1]}")})
    with serving(create_app(with_mail)) as port:
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


def new_page(
    browser: Any, base: str, *, phone: bool = False, no_websocket: bool = False, notifications: bool = False
) -> Any:
    """A fresh context (own sessionStorage and localStorage), English browser; ``notifications``:
    the user already allowed this site's notifications."""
    size = VIEWPORTS["phone" if phone else "desktop"]
    ctx = browser.new_context(
        viewport=size, locale="en-US", permissions=["notifications"] if notifications else []
    )
    if no_websocket:  # a proxy that drops WebSockets: the console must poll instead
        ctx.add_init_script("delete window.WebSocket;")
    page = ctx.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(base + "/web/")
    return page


def refusals(page: Any) -> list[str]:
    """Every request of the page the API refuses (401, 403) from now on: a page must not make a
    request its user's role (or the resident's consent) is sure to be refused."""
    refused: list[str] = []
    page.on("response", lambda r: refused.append(f"{r.status} {r.url}") if r.status in (401, 403) else None)
    return refused


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


# The innermost elements reaching past the right edge (what makes a phone page scroll sideways).
TOO_WIDE = """() => [...document.querySelectorAll('main *')]
  .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1 && ![...e.children].some(
    (c) => c.getBoundingClientRect().right > window.innerWidth + 1))
  .slice(0, 5).map((e) => `${e.tagName}#${e.id}.${e.className}: ${e.textContent.slice(0, 40)}`)"""


def both_viewports(page: Any, name: str, lang: str) -> None:
    """axe-core on the desktop and on a phone (and no sideways scrolling there), a screenshot of each."""
    first = page.viewport_size
    SHOTS.mkdir(parents=True, exist_ok=True)
    for view, size in VIEWPORTS.items():
        page.set_viewport_size(size)
        page.wait_for_timeout(150)  # the layout settles; charts keep their size
        accessible(page, f"{name}-{lang}-{view}")
        if view == "phone":
            wide = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
            assert wide <= 1, (
                f"{name}-{lang} scrolls sideways on a phone by {wide} px: {page.evaluate(TOO_WIDE)}"
            )
        page.screenshot(path=str(SHOTS / f"{name}-{lang}-{view}.png"), full_page=True)
    page.set_viewport_size(first)


def both_languages(page: Any, name: str) -> None:
    """Check, audit and screenshot the page as shown, then in the other language (both viewports
    each), then switch back."""
    settle(page)
    first = str(page.evaluate("document.documentElement.lang"))
    other = "en" if first == "zh-CN" else "zh-CN"
    text_first = check_language(page, first)
    both_viewports(page, name, first)
    page.click("#lang")
    # functions, not expressions: Playwright evaluates expressions with eval, which the CSP forbids
    page.wait_for_function(f"() => document.documentElement.lang === {json.dumps(other)}")
    settle(page)
    text_other = check_language(page, other)
    both_viewports(page, name, other)
    assert text_first != text_other
    page.click("#lang")
    page.wait_for_function(f"() => document.documentElement.lang === {json.dumps(first)}")
    settle(page)


# The alert notifications the page's service worker shows (what the phone displays outside the page).
SYSTEM_NOTIFICATIONS = """async () => {
  const regs = await navigator.serviceWorker.getRegistrations();
  for (const r of regs) if ((await r.getNotifications()).some((n) => n.tag.startsWith('alert-'))) return true;
  return false;
}"""


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
    browser: Any, server: str, db_url: str, world: World, inbox: tuple[Inbox, int]
) -> None:
    with psycopg.connect(db_url) as conn:  # what the registry and the devices say of res-1's home
        conn.execute(
            "UPDATE residents SET phone = '+8621555000', emergency_contacts = %s WHERE id = 'res-1'",
            (Jsonb([{"name": "Wang Jun", "relation": "son", "phone": "+8613900000009"}]),),
        )
        conn.execute(
            "INSERT INTO gateway_status (ts, gateway_id, site_id, state, sensors)"
            " VALUES (now(), 'gw-home-1', 'home-1', 'online', %s)",
            (Jsonb({"wearable-res-1": {"battery": 0.07, "online": True}}),),
        )
        conn.execute("INSERT INTO gateway_clocks (gateway_id, skew_ms) VALUES ('gw-home-1', 480000)")
    page = new_page(browser, server)
    refused = refusals(page)
    both_languages(page, "login")
    sign_in(page, "worker1", world.password)
    assert page.evaluate("document.documentElement.lang") == "zh-CN"  # worker1's own language
    page.wait_for_selector("#alert-list")
    page.wait_for_selector("#live:not([hidden])")
    live = page.evaluate("S.live")

    # device health per home, the homes needing attention first: the flat wearable, the wrong clock
    first = page.wait_for_selector("#device-health tr[data-site]")
    assert first.get_attribute("data-site") == "home-1"
    assert page.query_selector("#device-health [data-problem=low_battery]") is not None
    assert page.query_selector("#device-health [data-problem=clock_skew]") is not None
    assert "7%" in page.inner_text("[data-battery='gw-home-1']")
    assert "+8" in page.inner_text("[data-skew='gw-home-1']")
    queue_fall(db_url)
    item = page.wait_for_selector("#alert-list [data-state=open]")  # no reload
    assert "跌倒" in item.inner_text()
    assert live == "ws", "the alert should be pushed over the WebSocket"
    # the resident's phone and emergency contact on the alert, one tap each
    page.wait_for_selector("#alert-list [data-contacts] a[href='tel:+8613900000009']")
    assert page.query_selector("#alert-list [data-contacts] a[href='tel:+8621555000']") is not None
    both_languages(page, "console")
    # acknowledged with a note, in one action
    page.fill("#alert-list [data-ack-note]", "on my way, 10 min")
    page.click("#alert-list [data-ack]")
    page.wait_for_selector("#alert-list [data-state=acknowledged]")
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT state FROM alerts").fetchall() == [("acknowledged",)]
        assert conn.execute("SELECT note FROM alert_trail WHERE action = 'note'").fetchall() == [
            ("on my way, 10 min",)
        ]
    # tier 1 named the family: the daughter got an e-mail, without any page open
    deadline = time.monotonic() + 20
    while not inbox[0].to("family1@example.org") and time.monotonic() < deadline:
        time.sleep(0.2)
    mail = message_from_bytes(inbox[0].to("family1@example.org")[0])
    assert "Wang Fang" in str(make_header(decode_header(mail["Subject"])))

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
    assert refused == []  # the care worker's pages ask for nothing her role is refused

    with psycopg.connect(db_url) as conn:  # the assigned worker's number, from the registry
        conn.execute("UPDATE users SET phone = '+8613800000001' WHERE username = 'worker1'")
    fam = new_page(browser, server, phone=True, notifications=True)
    refused = refusals(fam)  # no request her role or her father's consent is sure to refuse
    sign_in(fam, "family1", world.password)
    handled = fam.wait_for_selector("#alert-history [data-state=resolved]")
    assert "Sunrise Home Care" in fam.inner_text("main")  # the provider by name, not "hc-1"
    assert fam.query_selector("a[href='tel:021-1000']") is not None
    assert "属实" in handled.inner_text()  # outcome "confirmed", in family1's language
    assert fam.query_selector(".banner") is None  # nothing open: no red band
    queue_fall(db_url, seq=2)  # a new fall while the portal is open: it comes to the top, live
    from playwright.sync_api import expect

    banner = fam.locator(".banner")  # a locator: the live portal may draw the band anew
    expect(banner).to_contain_text("疑似跌倒", timeout=WAIT_MS)
    # above the fold on a phone; read in the page in one go, since a live push may draw the band
    # anew between finding it and measuring it (a detached band has no box)
    fam.wait_for_function(
        "() => { const b = document.querySelector('.banner');"
        " const r = b && b.getBoundingClientRect(); return !!r && r.height > 0 && r.top < 200; }",
        timeout=WAIT_MS,
    )
    assert fam.query_selector(".banner a[href='tel:+8613800000001']") is not None  # one tap to call
    # the same alert shown by the system (service worker): it stays when the tab is in the background
    fam.wait_for_function(SYSTEM_NOTIFICATIONS)
    assert fam.get_attribute("#push-state", "data-state") == "granted"
    assert "family1@example.org" in fam.inner_text("#push-email")  # where the e-mails go
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
    with psycopg.connect(db_url) as conn:
        conn.execute("UPDATE providers SET webhook_secret = 'kept-secret-0123456789' WHERE id = 'hc-1'")
    page = new_page(browser, server)
    refused = refusals(page)
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

    # providers: edited in place, the webhook secret (never shown) kept; lists searched
    page.click("[data-edit='hc-1']")
    page.fill("#pv-hc-1-phone", "+862100000042")
    page.click("form[data-edit-provider='hc-1'] button[type=submit]")
    page.wait_for_function(
        "() => (document.querySelector(\"tr[data-provider='hc-1']\") || {})"
        ".textContent?.includes('+862100000042')"
    )
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT phone, webhook_secret FROM providers WHERE id = 'hc-1'").fetchone() == (
            "+862100000042", "kept-secret-0123456789",
        )  # fmt: skip
    settle(page)
    page.fill("#gateway-search", "home-2")
    assert page.is_visible("#gateways-table tr[data-gateway='gw-home-2']")
    assert not page.is_visible("#gateways-table tr[data-gateway='gw-home-1']")
    page.click(f"[data-failed-work='{work_id}'] button")  # put back in the queue
    page.wait_for_selector(f"[data-failed-work='{work_id}']", state="detached")
    with psycopg.connect(db_url) as conn:
        left = conn.execute("SELECT failed_at FROM alert_work WHERE id = %s", (work_id,)).fetchall()
    assert left in ([], [(None,)])  # retried: handled since, or waiting for its turn

    assert refused == []  # the admin's pages ask for nothing the API refuses
    page.evaluate("S.token = 'not-a-valid-token'")  # as if it had expired: the refresh token renews it
    page.goto(server + "/web/#/tester")
    page.wait_for_selector("#sim-residents")
    assert page.evaluate("S.token") != "not-a-valid-token"

    tester = new_page(browser, server, no_websocket=True)
    refused = refusals(tester)
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
    # each score table is captioned and its scroll box a region of that name, not two "Score"s
    boxes = tester.evaluate(
        """() => [...document.querySelectorAll('#score-tables [role=region]')]
          .map((b) => [b.getAttribute('aria-label'), b.querySelector('caption').textContent])"""
    )
    assert len(boxes) == 2 and len({name for name, _ in boxes}) == 2, boxes
    assert all(name == caption for name, caption in boxes), boxes
    both_languages(tester, "tester")
    tester.goto(server + "/web/#/console")  # the testers' view of the console: simulated homes only
    tester.wait_for_selector("#device-health [data-site='sim-home-1']")
    assert tester.query_selector("#device-health [data-site='home-1']") is None
    assert refused == []
