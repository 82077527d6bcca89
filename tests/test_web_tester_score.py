"""The testers' console scores what it fires, and its score is the CLI's for the same run.

A real neighbourhood of one simulated home (``eldercare simulate seed``), the real runner in direct
mode (``eldercare simulate run``), ingest as a process, the platform with its engine under uvicorn
and Chromium on the testers' page: an SOS, a fall and a low battery are fired from the page, each
alert is waited for on the page, then the page's score table is read and compared with
``eldercare simulate score --json`` over the runner's truth file.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from ingest_support import IngestProcess, wait_for
from server_support import serving
from test_web_browser import CHROMIUM_ARGS, WAIT_MS, settle, sign_in

from eldercare.config import Settings
from eldercare.simulators.neighbourhood import home_sim
from eldercare.simulators.routine import DAY

pytestmark = [pytest.mark.browser, pytest.mark.slow]
FIRED = ("sos", "fall", "low_battery")


def cli(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "eldercare.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture
def run(
    settings: Settings, db_url: str, mqtt_url: str, topic_root: str, tmp_path: Path
) -> Iterator[dict[str, Any]]:
    """One seeded home, ingest and the runner started; yields the manifest and the CLI's environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELDERCARE_")} | {
        "ELDERCARE_DATABASE_URL": db_url,
        "ELDERCARE_MQTT_URL": mqtt_url,
        "ELDERCARE_MQTT_TOPIC_ROOT": topic_root,
        "ELDERCARE_DATA_DIR": str(tmp_path),
    }
    manifest = tmp_path / "manifest.json"
    cli(env, "db", "migrate")
    cli(
        env,
        "simulate",
        "seed",
        "--homes",
        "1",
        "--stations",
        "0",
        "--prefix",
        "ts",
        "--manifest",
        str(manifest),
    )
    sim_start = _resident_at_home(json.loads(manifest.read_text())["homes"][0], time.time())
    ingest = IngestProcess(db_url, mqtt_url, topic_root, tmp_path).start()
    log = (tmp_path / "runner.log").open("wb")
    runner = subprocess.Popen(
        [sys.executable, "-m", "eldercare.cli", "simulate", "run", "--manifest", str(manifest),
         "--mode", "direct", "--speed", "5", "--status-every", "5", "--false-fall-rate", "0",
         "--fall-detected", "1", "--quiet", "--sim-start", repr(sim_start)],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        ingest.wait_healthy()

        def runner_up() -> bool:  # its gateway's status stored: connected, control topic included
            with psycopg.connect(db_url) as conn:
                row = conn.execute("SELECT count(*) FROM gateways WHERE state = 'online'").fetchone()
            return bool(row and row[0])

        wait_for(runner_up, 60, "the runner's gateway online")
        yield {"env": env, "manifest": manifest, "truth": manifest.with_name("truth.jsonl")}
    finally:
        runner.terminate()
        runner.wait(30)
        log.close()
        ingest.stop()


def _resident_at_home(home: dict[str, Any], now: float) -> float:
    """A simulated start, from ``now`` on, with the resident at home for the next 3 simulated hours.

    A fall fired while the resident is out happens only once they are back (the simulator's rule), up
    to hours of simulated time later: the page would wait for an alert that is not due yet.
    """
    for step in range(48):
        t = now + step * 30 * 60
        if not home_sim(home, math.floor(t / DAY) * DAY).out_between(t, t + 3 * 3600):
            return t
    pytest.fail("the simulated resident is out at every half hour of the next day")


def test_the_page_scores_what_it_fired_as_the_cli_does(settings: Settings, run: dict[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    m = json.loads(run["manifest"].read_text())
    tester = next(u for u in m["users"] if u["role"] == "tester")
    resident = m["homes"][0]["resident"]
    from eldercare.platform.app import create_app

    with serving(create_app(settings)) as port, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1366, "height": 800}, locale="en-US").new_page()
            page.set_default_timeout(WAIT_MS)
            page.goto(f"http://127.0.0.1:{port}/web/")
            sign_in(page, tester["username"], tester["password"])
            page.goto(f"http://127.0.0.1:{port}/web/#/tester")
            page.wait_for_selector(f"#sim-residents [data-trigger='{resident}']")
            for kind in FIRED:
                page.select_option(f"[data-kind-for='{resident}']", kind)
                # sent with wait_for_ack: the runner's answer (its ground truth) came back (the
                # response, not the toast, which a live alert's toast may replace at once)
                with page.expect_response(lambda r: r.url.endswith("/sim/incidents")) as sent:
                    page.click(f"[data-trigger='{resident}']")
                answer = sent.value
                assert answer.status == 201 and answer.json()["acknowledged"], answer.text()
            for kind in FIRED:  # every one raised its alert, shown on the page as it came
                page.wait_for_selector(f"#alert-list li[data-kind='{kind}']", timeout=90_000)
            # the score drawn when the page opened is still there: refresh until it counts what
            # was fired (the runner's truths reach the platform on their own path)
            page.wait_for_function(REFRESHED, arg=len(FIRED), polling=1000, timeout=60_000)
            page.wait_for_selector("#score-tables")
            settle(page)
            shown = page.evaluate(SCORE_ON_PAGE)
        finally:
            browser.close()

    out = cli(
        run["env"],
        "simulate",
        "score",
        "--manifest",
        str(run["manifest"]),
        "--truth",
        str(run["truth"]),
        "--json",
    )
    report = json.loads(out)
    assert shown["incidents"] == len(FIRED)
    for kind in FIRED:
        want = report["kinds"][kind]
        assert want["incidents"] == 1 and want["caught"] == 1, report  # the CLI agrees it was caught
        got = shown["kinds"][kind]
        for f in ("incidents", "caught", "missed", "under_way", "delay_median_s", "delay_p90_s"):
            # the page prints numbers as JavaScript does (32.0 as "32")
            assert (None if got[f] == "—" else float(got[f])) == want[f], (kind, f, got, want)
    assert shown["kinds"].keys() == report["kinds"].keys()
    assert {k: int(n) for k, n in shown["false_alarms"].items()} == report["false_alarms"]
    assert float(shown["resident_weeks"]) == report["resident_weeks"]


def _chromium() -> str | None:
    from conftest import chromium_path

    return chromium_path()


# True once the page's score counts ``n`` incidents; until then it asks for the score again.
REFRESHED = """(n) => {
  const shown = document.querySelector('#score > p .data');
  if (shown && Number(shown.textContent) >= n) return true;
  document.getElementById('score-refresh').click();
  return false;
}"""

# The page's score as the testers see it: every cell's text, by kind and field.
SCORE_ON_PAGE = """() => {
  const kinds = {};
  document.querySelectorAll('#score-tables tr[data-kind]').forEach((tr) => {
    const row = {};
    tr.querySelectorAll('td[data-f]').forEach((td) => { row[td.dataset.f] = td.textContent.trim(); });
    kinds[tr.dataset.kind] = row;
  });
  const fa = {};
  document.querySelectorAll('[data-false-alarms]').forEach((b) => {
    fa[b.dataset.falseAlarms] = b.querySelector('.data').textContent.trim();
  });
  const incidents = Number(document.querySelector('#score > p .data').textContent);
  const weeks = document.getElementById('resident-weeks').textContent.trim();
  return { kinds, false_alarms: fa, incidents, resident_weeks: weeks };
}"""
