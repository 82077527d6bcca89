"""The consoles when things run long, in a real headless Chromium against a real server: names too
long for a phone's width."""

# ruff: noqa: F811 (the browser tests' fixtures, imported to be used here)
from __future__ import annotations

from typing import Any

import psycopg
import pytest
from platform_seed import World
from test_web_a11y import LARGE_TEXT, SIDEWAYS
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
