"""Live vs offline: the inactivity detector through the whole live path, and offline on the same homes.

    python bench/live_inactivity.py [--homes 5] [--days 1] [--speed 360] [--port P] [--keep] [--json]
    python bench/live_inactivity.py --homes 20 --days 14 --speed 720   # docs/models.md, ~35 min

Live: a fresh database (``bench_live_<random>`` on ELDERCARE_DATABASE_URL's server, default
postgres@127.0.0.1:5432; dropped at the end) and the broker of ELDERCARE_MQTT_URL (default
mqtt://127.0.0.1:1883). It seeds ``--homes`` homes, writes their 21-day past (``simulate history``),
starts ``ingest`` and ``serve``, and runs ``simulate run --mode direct`` for ``--days`` simulated days
with a scenario giving every home one collapse, morning without getting up, night wandering and long
bathroom stay at random times; then ``simulate score --json`` (its ``inactivity`` figures: the
detector's own alerts only). The simulated days end at the last midnight, so they run behind the wall
clock and ingest never sees readings more than a day ahead of it.

Offline: the same homes, days and incidents (the runner's own HomeSim and scenario), the detector
fitted on the same past and run with ``detect``, scored by the same scorer: what ``eldercare models
evaluate`` would report for these homes. A difference beyond noise is a defect of the live path.

The engine looks for due residents every 2 wall seconds, 24 simulated minutes at 720x, and on a
loaded machine falls hours of simulated time behind; neither adds to the live delays: an alert is
scored at the time the detector says it became due (``sim_detected_ms``), and so is a later detection
that joined an open alert (its trail row keeps the detector's time; dated by the row, when the engine
got to it, such detections were late, a miss and a false alarm each: 62 of 80 caught live against 79
offline, 0.42 false alarms per resident-week against 0.03).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg

from eldercare.embedded import free_port
from eldercare.models.inactivity import InactivityDetector
from eldercare.platform.engine.inactivity import ALERT_KIND
from eldercare.scoring import AlertRow, score
from eldercare.simulators import scenario as sc
from eldercare.simulators.history import home_events
from eldercare.simulators.neighbourhood import home_sim
from eldercare.simulators.routine import DAY, Incident, TruthRecord

KINDS = ["collapse", "no_wake", "night_wandering", "bathroom_too_long"]


def _cli(env: dict[str, str], *args: str, timeout: float = 600) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "eldercare.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(args[:2])} failed: {(out.stderr or out.stdout).strip()[-800:]}")
    return out.stdout


def _scenario(path: Path, *, start: float, days: int, homes: int, seed: int) -> sc.Scenario:
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start))
    path.write_text(
        f'name = "bench-live"\nseed = {seed}\nstart = {iso}\ndays = {days}\nhomes = {homes}\n\n'
        f"[random]\nkinds = {json.dumps(KINDS)}\nfirst_day = 0\n",
        encoding="utf-8",
    )
    return sc.load(path)


def offline(manifest: dict[str, Any], scen: sc.Scenario, start: float, days: int) -> dict[str, Any]:
    """The detector on the same homes, days and incidents, fitted on the same past."""
    end = start + days * DAY
    truth: list[TruthRecord] = []
    alerts: list[AlertRow] = []
    for i, h in enumerate(manifest["homes"]):
        sim = home_sim(h, start)
        for inc in scen.incidents_for(i):
            sim.schedule(Incident(inc.kind, inc.t, inc.duration, inc.room, inc.sensor))
        stream = [(e.t, e.kind, e.room, e.value) for e in sim.pop_until(end)]
        truth += sim.truth
        past = [(e.t, e.kind, e.room, e.value) for e in home_events(h, start)]
        det = InactivityDetector()
        det.utc_offset_s = 0.0  # the simulated homes live in UTC
        det.fit(past)
        for a in det.detect(stream, until=end):
            kind = ALERT_KIND.get(a.kind)
            if kind is not None:
                alerts.append(
                    AlertRow(len(alerts), kind, h["resident"], h["site"], None, a.t, a.t, None, None)
                )
    rep = score(truth, alerts, residents=len(manifest["homes"]), period_s=days * DAY, now=end)
    return rep.inactivity


def live(
    args: argparse.Namespace, work: Path, start: float
) -> tuple[dict[str, Any], dict[str, Any], sc.Scenario]:
    base = os.environ.get("ELDERCARE_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"bench_live_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    db_url = base.rsplit("/", 1)[0] + "/" + name
    port = args.port or free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELDERCARE_")} | {
        "ELDERCARE_DATABASE_URL": db_url,
        "ELDERCARE_MQTT_URL": os.environ.get("ELDERCARE_MQTT_URL", "mqtt://127.0.0.1:1883"),
        "ELDERCARE_MQTT_TOPIC_ROOT": f"{name}/v1",
        "ELDERCARE_HTTP_PORT": str(port),
        "ELDERCARE_METRICS_PORT": "0",
        "ELDERCARE_DATA_DIR": str(work),
        "ELDERCARE_INGEST_CLIENT_ID": f"{name}-ingest",
    }
    procs: list[subprocess.Popen[bytes]] = []
    try:
        _cli(env, "db", "migrate")
        manifest_path, truth = work / "manifest.json", work / "truth.jsonl"
        _cli(env, "simulate", "seed", "--homes", str(args.homes), "--stations", "0", "--prefix", "bl",
             "--manifest", str(manifest_path))  # fmt: skip
        scen = _scenario(
            work / "scenario.toml", start=start, days=args.days, homes=args.homes, seed=args.seed
        )
        print(
            _cli(
                env, "simulate", "history", "--manifest", str(manifest_path), "--sim-start", repr(start)
            ).strip()
        )
        for what in ("ingest", "serve"):
            log = (work / f"{what}.log").open("wb")
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "eldercare.cli", what], env=env, stdout=log, stderr=log
                )
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        wall = args.days * DAY / args.speed
        t0 = time.monotonic()
        _cli(env, "simulate", "run", "--manifest", str(manifest_path), "--speed", str(args.speed),
             "--mode", "direct", "--sim-start", repr(start), "--scenario", str(work / "scenario.toml"),
             "--duration", f"{wall + 5:.0f}", "--truth", str(truth), "--quiet",
             timeout=wall + 300)  # fmt: skip
        print(f"live run: {args.days} simulated days of {args.homes} homes in {time.monotonic() - t0:.0f} s")
        behind, waited = catch_up(db_url, args.catch_up)
        print(
            f"engine: {behind / 3600:.1f} simulated h behind the homes' clocks at the end;"
            f" caught up in {waited:.0f} s"
        )
        out = _cli(
            env, "simulate", "score", "--manifest", str(manifest_path), "--truth", str(truth), "--json"
        )
        report = json.loads(out)
        return report["inactivity"], report, scen
    finally:
        for p in procs:
            p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        if args.keep:
            print(f"kept: {db_url} ({work})")
        else:
            with psycopg.connect(base, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


LAGGING = """
SELECT coalesce(max(extract(epoch FROM g.reported_at) - coalesce((d.state ->> 'due_s')::float, 0)), 0)
FROM detector_settings d JOIN residents r ON r.id = d.resident_id
JOIN gateways g ON g.site_id = r.home_site_id
"""
SLACK_S = 900.0  # the settling margin (at most 600 s of the home's time) and a tick


def catch_up(db_url: str, limit_s: float) -> tuple[float, float]:
    """Wait until the engine has judged every home up to its final clock (the simulator stopped, so
    the clocks stand still); returns how far (s of the homes' time) it was behind, and the wait.

    On a loaded machine the engine may not keep up with a fast simulation (a refit reads three weeks
    of a home's readings, once a simulated day per home); scoring at once would count what it had
    not judged yet as missed."""
    t0 = time.monotonic()
    first = None
    with psycopg.connect(db_url, autocommit=True) as conn:
        while True:
            row = conn.execute(LAGGING).fetchone()
            lag = float(row[0]) if row else 0.0
            first = lag if first is None else first
            if lag <= SLACK_S or time.monotonic() - t0 > limit_s:
                break
            time.sleep(2)
    time.sleep(5)  # the last round's alerts
    return first or 0.0, time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--homes", type=int, default=5)
    ap.add_argument("--days", type=int, default=1)
    ap.add_argument("--speed", type=float, default=360.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--port", type=int, default=0, help="The platform's HTTP port (default: a free one).")
    ap.add_argument("--keep", action="store_true", help="Keep the live database (and print its URL).")
    ap.add_argument(
        "--catch-up",
        type=float,
        default=1800.0,
        help="Wait at most this long (s) for the engine to judge the end.",
    )
    args = ap.parse_args()
    start = math.floor(time.time() / DAY) * DAY - args.days * DAY  # ends at the last midnight
    work = Path(tempfile.mkdtemp(prefix="bench-live-"))
    try:
        live_figs, report, scen = live(args, work, start)
        manifest = json.loads((work / "manifest.json").read_text(encoding="utf-8"))
        off = offline(manifest, scen, start, args.days)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    result = {"homes": args.homes, "days": args.days, "speed": args.speed, "live": live_figs, "offline": off,
              "live_kinds": report["kinds"]}  # fmt: skip
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(
        f"{'':<10}{'incidents':>10}{'caught':>8}{'p50 min':>9}{'p90 min':>9}"
        f"{'false alarms':>14}{'per res-wk':>11}"
    )
    for name, d in (("live", live_figs), ("offline", off)):

        def m(x: float | None) -> str:
            return "-" if x is None else f"{x / 60:.0f}"

        fa = d["false_alarms_per_resident_week"]
        print(
            f"{name:<10}{d['incidents']:>10}{d['caught']:>8}{m(d['delay_median_s']):>9}{m(d['delay_p90_s']):>9}"
            f"{d['false_alarms']:>14}{'-' if fa is None else f'{fa:.2f}':>11}"
        )


if __name__ == "__main__":
    main()
