"""What axe-core does not catch, checked in a real headless Chromium: the keyboard (focus after
sign-in, route changes, acknowledging and editing; a visible focus ring; Escape), what a screen
reader is told (page titles, the current page in the menu, the language of the language button,
errors tied to their fields, charts named), colour contrast in every severity and state, target
sizes, and times in the reader's language."""

# ruff: noqa: F811 (the browser tests' fixtures, imported to be used here)
from __future__ import annotations

import json
import re
from typing import Any

import psycopg
import pytest
from platform_seed import World
from test_web_browser import (  # noqa: F401
    _shots,
    browser,
    inbox,
    new_page,
    queue_fall,
    seed_week_of_activity,
    server,
    settle,
    sign_in,
    world,
)

pytestmark = pytest.mark.browser

# WCAG contrast of every piece of text in `sel` against what is behind it, opacity included.
LOW_CONTRAST = """(sel) => {
  const rgb = (c) => c.match(/[\\d.]+/g).map(Number);
  const lin = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  const lum = (c) => 0.2126 * lin(c[0]) + 0.7152 * lin(c[1]) + 0.0722 * lin(c[2]);
  const ratio = (a, b) => {
    const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
  const back = (el) => { for (let e = el; e; e = e.parentElement) {
    const c = rgb(getComputedStyle(e).backgroundColor);
    if (c.length < 4 || c[3] > 0) return c.slice(0, 3); } return [255, 255, 255]; };
  const page = back(document.body);
  const bad = [];
  for (const el of document.querySelectorAll(sel)) {
    if (![...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
    let o = 1; for (let e = el; e; e = e.parentElement) o *= Number(getComputedStyle(e).opacity);
    const mix = (c) => c.map((v, i) => o * v + (1 - o) * page[i]);
    const r = ratio(mix(rgb(getComputedStyle(el).color)), mix(back(el)));
    const what = `${el.className || el.tagName} "${el.textContent.trim().slice(0, 20)}"`;
    if (r < 4.5) bad.push(`${what} ${r.toFixed(2)}`);
  }
  return bad;
}"""

# Controls smaller than 24x24 CSS px (WCAG 2.5.8), links inside a line of text excepted.
SMALL_TARGETS = """() => [...document.querySelectorAll(
    'header a, header button, main a[href], main button, main select')]
  .filter((e) => { const r = e.getBoundingClientRect(); if (!r.width) return false;
    const inText = getComputedStyle(e).display === 'inline'
      && e.closest('p, td, li, .contacts, .meta, .on-duty');
    return !inText && (r.width < 24 || r.height < 24); })
  .map((e) => `${e.tagName}.${e.className} "${e.textContent.trim().slice(0, 15)}"`)"""

# The focused control's ring: its width and its contrast with what is around it.
FOCUS_RING = """() => {
  const el = document.activeElement; const s = getComputedStyle(el);
  const rgb = (c) => c.match(/[\\d.]+/g).map(Number);
  const lin = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  const lum = (c) => 0.2126 * lin(c[0]) + 0.7152 * lin(c[1]) + 0.0722 * lin(c[2]);
  let around = [255, 255, 255];
  for (let e = el.parentElement; e; e = e.parentElement) { const c = rgb(getComputedStyle(e).backgroundColor);
    if (c.length < 4 || c[3] > 0) { around = c.slice(0, 3); break; } }
  const [x, y] = [lum(rgb(s.outlineColor)), lum(around)].sort((p, q) => q - p);
  return { visible: el.matches(':focus-visible'), style: s.outlineStyle, width: parseFloat(s.outlineWidth),
    contrast: (x + 0.05) / (y + 0.05) };
}"""


# What the live regions say from now on: each text written into #alarm (role=alert, said at once)
# and #toast (role=status, said after what is being read).
WATCH_NOTICES = """() => { window.said = { alarm: [], toast: [] };
  for (const id of ['alarm', 'toast']) { const el = document.getElementById(id);
    new MutationObserver(() => { if (el.textContent) window.said[id].push(el.textContent); })
      .observe(el, { childList: true, characterData: true, subtree: true }); } }"""

# The audit log's "What" column: each row's stored action code and the words shown for it.
AUDIT_ACTIONS = """() => [...document.querySelectorAll('#audit-table td[data-action]')]
  .map((td) => [td.dataset.action, td.textContent])"""

LARGE_TEXT = "() => { document.documentElement.style.fontSize = '32px'; }"  # the browser's text size at 200%
SIDEWAYS = "() => document.documentElement.scrollWidth - window.innerWidth"


def large_text_on_a_small_screen(page: Any) -> None:
    """The reader's text size is followed (the page's text doubles with it) and, 320 px wide, the
    page still does not scroll sideways: wide tables scroll in their own box."""
    page.set_viewport_size({"width": 320, "height": 640})
    page.evaluate(LARGE_TEXT)
    page.wait_for_timeout(150)
    assert page.evaluate("() => parseFloat(getComputedStyle(document.body).fontSize)") == 30
    assert page.evaluate(SIDEWAYS) <= 1


def ready(page: Any) -> None:
    settle(page)
    page.wait_for_timeout(200)


def said(page: Any, field: str) -> str:
    """What a screen reader says of a field besides its label (aria-describedby)."""
    ids = (page.get_attribute(field, "aria-describedby") or "").split()
    return " ".join(page.inner_text(f"#{i}") for i in ids)


def assert_focus_ring(page: Any, selector: str) -> None:
    page.focus(selector)
    ring = page.evaluate(FOCUS_RING)
    assert ring["style"] == "solid" and ring["width"] >= 2, (selector, ring)
    assert ring["contrast"] >= 3, (selector, ring)


def test_a_care_worker_by_keyboard_and_screen_reader(
    browser: Any, server: str, db_url: str, world: World
) -> None:
    page = new_page(browser, server)  # an English browser
    ready(page)
    assert page.title() == "Sign in · Eldercare"
    assert page.get_attribute("#lang", "lang") == "zh-CN"  # "中文" is read with a Chinese voice
    # the toast is a live region already rendered while idle: an element shown from display:none
    # together with its text is not announced
    for region in ("toast", "alarm"):
        assert page.evaluate(f"() => getComputedStyle(document.getElementById('{region}')).display") != "none"
    assert page.get_attribute("#alarm", "role") == "alert"

    # a wrong password: announced, and tied to the fields it concerns
    page.fill("#username", "worker1")
    page.fill("#password", "not-the-password")
    page.press("#password", "Enter")
    page.wait_for_function("() => document.getElementById('login-error').textContent !== ''")
    assert page.get_attribute("#login-error", "role") == "alert"
    for field in ("#username", "#password"):
        assert page.get_attribute(field, "aria-invalid") == "true"
        assert page.get_attribute(field, "aria-describedby") == "login-error"
    assert page.evaluate("() => document.activeElement.id") == "password"

    # signed in: the page's heading has the keyboard, the title and the menu say where she is
    page.fill("#password", world.password)
    page.press("#password", "Enter")
    page.wait_for_selector("#logout:not([hidden])")
    ready(page)
    assert page.title() == "告警 · 颐养守护"  # worker1 reads Chinese
    assert page.evaluate("() => document.activeElement.tagName") == "H1"
    assert page.get_attribute("nav a[aria-current=page]", "href") == "#/console"
    assert page.get_attribute("#lang", "lang") == "en"

    # sound turned on by keyboard: its button goes, the keyboard stays on the page
    page.focus("#sound-on")
    page.keyboard.press("Enter")
    page.wait_for_selector("#sound-on", state="detached")
    assert page.evaluate("() => document.activeElement.tagName") == "H1"

    # a new critical alert (a fall) is said at once (role=alert), once, and the keyboard stays put
    page.evaluate(WATCH_NOTICES)
    queue_fall(db_url)
    item = page.wait_for_selector("#alert-list [data-state=open]")
    assert page.evaluate("() => window.said") == {"alarm": ["跌倒 · Wang Fang"], "toast": []}
    assert page.evaluate("() => document.activeElement.tagName") == "H1"

    # acknowledged with the keyboard: the keyboard stays on that alert, the notice is polite
    aid = item.get_attribute("data-alert")
    page.focus(f"[data-ack='{aid}']")
    page.keyboard.press("Enter")
    page.wait_for_selector(f"#alert-list [data-alert='{aid}'][data-state=acknowledged]")
    assert page.evaluate(f"() => !!document.activeElement.closest('[data-alert=\"{aid}\"]')")
    # a routine alert (a device offline) is polite too: it waits for what is being read
    page.evaluate(
        """() => announce({ ...S.alerts.values().next().value, id: 99999, kind: 'device_offline',
        severity: 'medium' })"""
    )
    # (an alert that follows another within 1.5 s is said a moment later, with any others: once)
    page.wait_for_function("() => window.said.toast.length === 2")
    assert page.evaluate("() => window.said") == {
        "alarm": ["跌倒 · Wang Fang"],
        "toast": ["已确认", "设备离线 · Wang Fang"],
    }

    # a focus ring of 3:1 on the dark header and on the page
    assert_focus_ring(page, "#lang")
    assert_focus_ring(page, f"[data-alert='{aid}'] a.btn")

    # every severity and state legible (4.5:1), none by colour alone (its word is on the badge)
    page.evaluate(
        """() => { const a = S.alerts.values().next().value; let id = 90000;
        for (const severity of ['critical', 'high', 'medium', 'low', 'info'])
          for (const state of ['open', 'acknowledged', 'resolved'])
            S.alerts.set(++id, { ...a, id, severity, state,
              outcome: state === 'resolved' ? 'false_alarm' : null }); }"""
    )
    page.select_option("#f-state", "")
    page.wait_for_selector("[data-alert='90015']")
    assert page.evaluate(LOW_CONTRAST, "main .alert, main .alert *") == []
    assert page.inner_text("[data-alert='90004'] .badge.sev-high") == "高"

    for width in (1366, 320):  # WCAG 1.4.10: 320 px wide without sideways scrolling
        page.set_viewport_size({"width": width, "height": 800})
        page.wait_for_timeout(150)
        assert page.evaluate(SMALL_TARGETS) == [], width
        assert page.evaluate(SIDEWAYS) <= 1, width
    page.set_viewport_size({"width": 1366, "height": 800})

    # a route change by keyboard: the new page's heading has the keyboard, the title follows
    page.focus(f"[data-alert='{aid}'] a.btn")
    page.keyboard.press("Enter")
    page.wait_for_selector("#evidence-chart canvas")
    ready(page)
    assert page.title() == "跌倒 · Wang Fang · 颐养守护"
    assert page.evaluate("() => document.activeElement.tagName") == "H1"
    chart = page.wait_for_selector("#evidence-chart")
    assert chart.get_attribute("role") == "img"
    assert "峰值" in (chart.get_attribute("aria-label") or "")

    # a note being typed survives the page being redrawn by a live change of the alert
    page.fill("#note", "called her son")
    renders = page.evaluate("() => S.gen")
    page.evaluate(f"() => onAlertsChanged({aid})")  # what a push for this alert does
    page.wait_for_function(f"() => S.gen > {renders} && document.body.dataset.ready === '1'")
    assert page.input_value("#note") == "called her son"
    assert page.evaluate("() => document.activeElement.id") == "note"

    page.goto(server + "/web/#/resident/res-1")
    page.wait_for_selector("#lim-rooms tr[data-room=bathroom]")
    ready(page)
    assert page.evaluate(SMALL_TARGETS) == []  # the limits' Save buttons included

    # a device's alert says what happened in her words (the engine wrote it in every language), under
    # a heading that fits it (it was "activity in the 24 hours before", over the device's raw JSON)
    said = {"en": "Gateway gw-home-1 is offline.", "zh-CN": "网关 gw-home-1 离线。"}
    with psycopg.connect(db_url) as conn:
        (offline,) = conn.execute(
            "INSERT INTO alerts (kind, severity, site_id, gateway_id, dedup_key, title, summary, detected_at)"
            " VALUES ('device_offline', 'medium', 'home-1', 'gw-home-1', 'web-offline', 'x', %s, now())"
            " RETURNING id",
            (json.dumps(said),),
        ).fetchone()
    page.goto(server + f"/web/#/alert/{offline}")
    page.wait_for_selector("#alert-said")
    assert page.inner_text("#alert-said") == said["zh-CN"]
    assert page.inner_text("#alert-said >> xpath=preceding-sibling::h2") == "发生了什么"


def test_an_admin_edits_by_keyboard_and_reads_errors_by_field(
    browser: Any, server: str, db_url: str, world: World
) -> None:
    page = new_page(browser, server)
    sign_in(page, "admin", world.password)
    page.goto(server + "/web/#/admin")
    page.wait_for_selector("[data-edit='hc-1']")
    ready(page)
    assert page.title() == "Set-up · Eldercare"

    # Edit opens one form (never a second copy), moves into it; Escape closes it and goes back
    edit = "[data-edit='hc-1']"
    form = "form[data-edit-provider='hc-1']"
    page.focus(edit)
    page.keyboard.press("Enter")
    assert page.get_attribute(edit, "aria-expanded") == "true"
    assert page.evaluate(f'() => !!document.activeElement.closest("{form}")')
    page.keyboard.press("Escape")
    assert page.query_selector(form) is None
    assert page.get_attribute(edit, "aria-expanded") == "false"
    assert page.evaluate("() => document.activeElement.dataset.edit") == "hc-1"
    page.click(edit)
    page.click(edit)
    assert page.query_selector(form) is None
    page.click(edit)
    assert len(page.query_selector_all(form)) == 1
    # saved: the page is redrawn, the keyboard is back on this row's Edit, not at the top
    page.click(f"{form} button[type=submit]")
    page.wait_for_function("() => document.activeElement && document.activeElement.dataset.edit === 'hc-1'")
    # the audit log says what was done in words, not in its codes ("update:provider")
    page.wait_for_selector("#audit-table td[data-action='update:provider']")
    done = dict(page.evaluate(AUDIT_ACTIONS))
    assert done["update:provider"] == "changed a provider" and done["sign_in"] == "signed in"
    assert [(a, w) for a, w in done.items() if w == a or re.search(r"[a-z]:[a-z]|[\u4e00-\u9fff]", w)] == []

    # the API's complaint about one field: on that field, which gets the keyboard
    page.fill("#site-form-id", "no spaces!")
    page.fill("#site-form-name", "Somewhere")
    page.press("#site-form-name", "Enter")
    page.wait_for_selector("#site-form .field-err")
    assert page.get_attribute("#site-form-id", "aria-invalid") == "true"
    described = page.get_attribute("#site-form-id", "aria-describedby")
    assert described and page.inner_text(f"#{described}").startswith("may hold only letters, digits")
    assert "^" not in page.inner_text("#site-form")  # what is allowed in words, not the pattern
    assert page.evaluate("() => document.activeElement.id") == "site-form-id"
    assert page.query_selector("#site-form [role=alert]") is not None
    assert page.get_attribute("#site-form-name", "aria-invalid") is None

    # a date field says the day chosen, under it and tied to it, in the page's language: browsers draw
    # the field in their own ("12/07/2026, 07:00 PM" on a Chinese page in an English browser)
    page.fill("#shift-form-starts_at", "2026-12-07T19:00")
    chosen = said(page, "#shift-form-starts_at")
    assert "Monday, December 7, 2026" in chosen and "19:00" in chosen and "PM" not in chosen
    assert said(page, "#audit-since") == "Choose the day and the time (your local time)."

    # new MQTT credentials labelled in the reader's language, not "username:" on a Chinese page
    page.click("#lang")
    page.wait_for_function("() => document.documentElement.lang === 'zh-CN'")
    ready(page)
    assert page.title() == "系统设置 · 颐养守护"
    assert "/ 5 分钟" in page.inner_text("#policies-list")  # a tier's deadline in words, not "300s"
    page.wait_for_selector("#audit-table td[data-action='update:provider']")
    done = dict(page.evaluate(AUDIT_ACTIONS))
    assert done["update:provider"] == "修改服务机构" and done["list:sites"] == "查看地点列表"
    assert [(a, w) for a, w in done.items() if re.search(r"[A-Za-z]", w)] == []
    page.fill("#site-form-id", "no spaces!")
    page.fill("#site-form-name", "Somewhere")
    page.press("#site-form-name", "Enter")
    page.wait_for_selector("#site-form .field-err")
    assert page.inner_text("#site-form-id-err").startswith("只能包含字母、数字和 . _ : -")
    assert "^" not in page.inner_text("#site-form")
    page.fill("#shift-form-starts_at", "2026-12-07T19:00")
    assert said(page, "#shift-form-starts_at") == "已选：2026年12月7日星期一 19:00（本地时间）"
    assert said(page, "#audit-since") == "请选择日期和时间（本地时间）。"
    page.click("[data-reissue='gw-home-1']")
    creds = page.wait_for_selector("#reissued-credentials")
    labels = page.evaluate(
        """() => { const c = document.getElementById('reissued-credentials').cloneNode(true);
        c.querySelectorAll('.data').forEach((e) => e.remove()); return c.textContent; }"""
    )
    assert re.findall(r"[A-Za-z]{2,}", labels) == [] and "密码" in labels, labels
    assert creds.inner_text()
    large_text_on_a_small_screen(page)


# What the browser says of a field it will not submit (its validation bubble).
BUBBLE = "(sel) => document.querySelector(sel).validationMessage"


def refused(page: Any, form: str) -> str:
    """Submit ``form`` as it is filled and return what it says of the API's refusal (role=alert)."""
    page.click(f"{form} button[type=submit]")
    return str(page.wait_for_selector(f"{form} [role=alert]").inner_text())


def test_the_set_up_page_says_what_is_wrong_in_the_readers_language(
    browser: Any, server: str, db_url: str, world: World
) -> None:
    with psycopg.connect(db_url) as conn:  # set aside by the engine: a device's event, a gateway's status
        conn.execute(
            "INSERT INTO alert_work (kind, gateway_id, site_id, payload, attempts, last_error, failed_at)"
            " VALUES ('event', 'gw-home-1', 'home-1', '{\"kind\": \"fall\"}', 3, 'boom', now()),"
            " ('status', 'gw-home-1', 'home-1', '{\"state\": \"offline\"}', 3, 'boom', now())"
        )
    page = new_page(browser, server)  # an English browser
    sign_in(page, "admin", world.password)
    page.goto(server + "/web/#/admin")
    page.wait_for_selector("#admin-failed-work")
    ready(page)
    work = "() => [...document.querySelectorAll('td[data-work-kind]')].map((td) => td.textContent).sort()"
    # what was set aside in words, not the engine's codes ("event: fall")
    assert page.evaluate(work) == ["Device event: Fall", "Gateway status: offline"]
    page.fill("#site-form-id", "no spaces!")
    page.fill("#site-form-name", "Somewhere")
    # the API's complaint names the field by its label ("Id: ...", not "id: ...")
    assert refused(page, "#site-form").startswith("Invalid request: Id: may hold only letters")

    page.click("#lang")
    page.wait_for_function("() => document.documentElement.lang === 'zh-CN'")
    ready(page)
    assert page.evaluate(work) == ["网关状态：离线", "设备事件：跌倒"]
    # whom each tier asks in words ("家属", not the code "family"); the policy's name is data
    asks = page.evaluate(
        """() => { const c = document.querySelector('#policies-list [data-tier="1"]').cloneNode(true);
        c.querySelectorAll('.data').forEach((e) => e.remove()); return c.textContent; }"""
    )
    assert asks == ": 家属、责任护理员 / 5 分钟"
    # the browser's own complaints in the page's language, in every form, gone once the field is
    # edited (Chromium said "Please fill out this field." on this Chinese page)
    page.click("#site-form button[type=submit]")
    assert page.evaluate(BUBBLE, "#site-form-id") == "请填写此字段。"
    page.fill("#site-form-id", "no spaces!")
    assert page.evaluate(BUBBLE, "#site-form-id") == ""
    user = world.user_id("worker1")
    page.click(f"[data-user-edit='{user}']")
    page.fill(f"#u{user}-email", "not-an-address")
    page.click(f"form[data-edit-user='{user}'] button[type=submit]")
    assert page.evaluate(BUBBLE, f"#u{user}-email") == "请输入电子邮件地址，例如 name@example.org。"
    page.fill(f"#p{world.policy_id}-s1", "0")
    page.click(f"form[data-policy='{world.policy_id}'] button[type=submit]")
    assert page.evaluate(BUBBLE, f"#p{world.policy_id}-s1") == "请输入不小于 1 的值。"
    page.fill(f"#p{world.policy_id}-s1", "2.5")
    page.click(f"form[data-policy='{world.policy_id}'] button[type=submit]")
    assert page.evaluate(BUBBLE, f"#p{world.policy_id}-s1") == "请输入整数。"

    # the API's complaints name each field by its label on the form, in the page's language
    page.fill("#site-form-name", "某处")
    assert refused(page, "#site-form").startswith("请求无效：编号：只能包含字母、数字和 . _ : -")
    page.fill("#policy-form-name", "夜间")
    page.fill("#policy-form-targets1", "mayor")
    said = refused(page, "#policy-form")
    assert said.startswith("请求无效：第一级通知对象：未知的通知对象 'mayor'；可用 family、"), said
    assert page.get_attribute("#policy-form-targets1", "aria-invalid") == "true"
    page.fill("#policy-form-targets1", "")  # the first tier left out: the second is the API's tiers.0
    page.fill("#policy-form-targets2", "mayor")
    assert refused(page, "#policy-form").startswith("请求无效：第二级通知对象：未知的通知对象 'mayor'")
    assert page.get_attribute("#policy-form-targets2", "aria-invalid") == "true"
    assert page.get_attribute("#policy-form-targets1", "aria-invalid") is None


def test_a_familys_activity_chart_is_named_and_dated_in_her_language(
    browser: Any, server: str, db_url: str, world: World
) -> None:
    if not seed_week_of_activity(db_url):
        pytest.skip("the hourly rollup is a continuous aggregate here")
    queue_fall(db_url, resident="res-2", gateway="gw-home-2", site="home-2")
    page = new_page(browser, server, no_websocket=True)  # the page polls every 4 s
    sign_in(page, "family2", world.password)  # reads English
    page.wait_for_selector("section.banner")
    page.wait_for_selector("#week-chart canvas")
    ready(page)
    # her father's open alert comes first: the page starts on its red band, its call buttons next
    assert page.evaluate("() => document.activeElement.classList.contains('banner')")
    # a poll that finds nothing new leaves the page as it is (no redraw, no banner announced again)
    renders = page.evaluate("() => S.gen")  # app.js counts the renders it begins
    with page.expect_response(lambda r: "/api/v1/alerts?limit=100" in r.url):
        pass
    page.wait_for_timeout(300)  # a redraw would begin as soon as the poll's answer is read
    assert page.evaluate("() => S.gen") == renders
    # her father's alert is said by its red band (role=alert), not once more by a notice; another
    # relative's critical alert, with no band on this page, is said at once
    page.evaluate(WATCH_NOTICES)
    page.evaluate(
        """() => { const a = [...S.alerts.values()].find((x) => x.resident_id === 'res-2');
        announce(a); announce({ ...a, id: 99999, resident_id: 'res-9', resident_name: 'Zhao Lei' }); }"""
    )
    assert page.evaluate("() => window.said") == {"alarm": ["Fall · Zhao Lei"], "toast": []}
    assert page.title() == "My relative · Li Wei · Eldercare"
    assert page.get_attribute("#week-chart", "role") == "img"
    assert (page.get_attribute("#week-chart", "aria-label") or "").startswith("Chart of sensor events from")
    for lang in ("en", "zh-CN"):
        if lang == "zh-CN":
            page.click("#lang")
            page.wait_for_function("() => document.documentElement.lang === 'zh-CN'")
            ready(page)
            assert "传感器事件图表" in (page.get_attribute("#week-chart", "aria-label") or "")
        over = page.wait_for_selector("#week-chart .u-over")
        over.scroll_into_view_if_needed()
        box = over.bounding_box()
        for dx in (0.5, 0.6):  # uPlot follows mouse moves over its plot area
            page.mouse.move(box["x"] + box["width"] * dx, box["y"] + box["height"] / 2)
        value = page.inner_text("#week-chart .u-legend .u-series:first-child .u-value")
        assert re.search(r"\d", value) and not re.search(r"[ap]m", value, re.I), (lang, value)
    large_text_on_a_small_screen(page)  # her e-mail address breaks rather than widen the page
