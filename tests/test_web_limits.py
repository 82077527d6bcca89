"""The resident page's inactivity limits in a real headless Chromium: a care worker sees how far the
detector learned the home and each room's limits, sets "bathroom: 45 min", sees the change in the
history and undoes it, in both languages."""

# ruff: noqa: F811 (the browser tests' fixtures, imported to be used here)
from __future__ import annotations

from typing import Any

import pytest
from platform_seed import World
from test_web_browser import _shots, both_languages, browser, inbox, new_page, server, sign_in, world  # noqa: F401

pytestmark = pytest.mark.browser


def test_a_care_worker_sets_and_undoes_a_residents_bathroom_limit(
    browser: Any, server: str, world: World
) -> None:
    page = new_page(browser, server)
    sign_in(page, "worker1", world.password)
    page.goto(server + "/web/#/resident/res-1")
    page.wait_for_selector("#limits #lim-rooms tr[data-room=bathroom]")
    assert "0.0/7 天" in page.inner_text("#lim-learning")  # worker1 reads Chinese: nothing learned yet
    assert page.query_selector("#lim-history") is None  # no changes yet
    page.fill("#lim-rooms input[data-room=bathroom]", "45")
    page.click("#lim-rooms tr[data-room=bathroom] button")
    page.wait_for_selector("#lim-history li")
    row = page.inner_text("#lim-rooms tr[data-room=bathroom]")
    assert "照护团队设置" in row and "45 分钟" in row
    assert "45 分钟" in page.inner_text("#lim-history")
    both_languages(page, "resident-limits")
    page.click("#lim-history li button")  # undo
    page.wait_for_selector("#lim-history li:nth-child(2)")
    assert "撤销了变更" in page.inner_text("#lim-history li:first-child")
    assert "照护团队设置" not in page.inner_text("#lim-rooms tr[data-room=bathroom]")
