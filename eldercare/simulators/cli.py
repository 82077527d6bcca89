"""``eldercare simulate``: datasets, seeding the platform, running homes live, triggering, scoring."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from eldercare.cli_settings import get_settings
from eldercare.kinds import INCIDENT_KINDS

KIND_CHOICE = click.Choice(INCIDENT_KINDS)  # the registry's incident kinds (eldercare.kinds)
EPOCH_2100 = 4_102_444_800.0  # simulated starts are epoch seconds between 1970 and 2100


class Number(click.FloatRange):
    """A float in a range that is a number: click's FloatRange lets ``nan`` through every bound
    (a run at ``--speed nan`` stood still, ``--sim-start nan`` ended in a traceback)."""

    def __init__(self, min: float | None = None, max: float | None = None, *, inf: bool = False) -> None:
        super().__init__(min, max)
        self.inf = inf  # whether "inf" means something (an incident that never ends)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        rv = super().convert(value, param, ctx)
        if math.isnan(rv) or (math.isinf(rv) and not self.inf):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return rv


@click.group()
def simulate() -> None:
    """Simulated homes and stations: datasets, seeding, live runs, incidents, scoring.

    模拟的家庭与驿站：数据集、注册、实时运行、触发事件、评分。
    """


def _load_manifest(path: str) -> dict[str, Any]:
    try:
        m = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise click.BadParameter(f"{path}: {exc.strerror}", param_hint="--manifest") from None
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"{path}: not JSON ({exc.msg})", param_hint="--manifest") from None
    if not isinstance(m, dict) or m.get("version") != 1 or "homes" not in m:
        raise click.BadParameter(f"{path}: not an eldercare simulation manifest", param_hint="--manifest")
    return m


def _scenario(name_or_path: str) -> Any:
    from eldercare.simulators import scenario as sc

    try:
        # a file is a file whatever its name; a name without ".toml" that is no file is a built-in's
        is_file = name_or_path.endswith(".toml") or "/" in name_or_path or Path(name_or_path).is_file()
        path = Path(name_or_path) if is_file else sc.builtin(name_or_path)
        return sc.load(path)
    except sc.ScenarioError as exc:
        raise click.BadParameter(str(exc), param_hint="--scenario") from None


@simulate.command()
@click.option("--days", type=click.IntRange(1, 3650), default=28, show_default=True)
@click.option("--homes", type=click.IntRange(1, 100_000), default=10, show_default=True)
@click.option("-o", "--out", "out", type=click.Path(file_okay=False), required=True, help="Output directory.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--scenario", help="A scenario TOML file or the name of a built-in one (overrides --days/--homes)."
)
@click.option(
    "--kinds",
    default="all",
    show_default=True,
    help="Comma-separated incident kinds drawn at random per home ('none' for none).",
)
@click.option(
    "--first-day", type=int, default=7, show_default=True, help="Days of normal life before incidents."
)
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.option(
    "--acc-minutes",
    type=Number(-1),
    default=30.0,
    show_default=True,
    help="Minutes of ordinary accelerometer data per home (plus one session per fall); -1: none.",
)
@click.option("--drop-rate", type=Number(0, 0.99), default=0.0)
@click.option("--spurious-rate", type=Number(0), default=0.0, help="False PIR triggers per sensor per day.")
@click.option(
    "--couples",
    type=Number(0, 1),
    default=0.0,
    show_default=True,
    help="Share of homes with two residents.",
)
def dataset(
    days: int,
    homes: int,
    out: str,
    seed: int,
    scenario: str | None,
    kinds: str,
    first_day: int,
    fmt: str,
    acc_minutes: float,
    drop_rate: float,
    spurious_rate: float,
    couples: float,
) -> None:
    """Write labelled data: home event streams with incidents, accelerometer sessions with falls.

    写出带标签的数据：家庭事件流与事件真值、带跌倒时刻的加速度数据。
    """
    from eldercare.simulators.dataset import write_dataset
    from eldercare.simulators.routine import SimulationError
    from eldercare.simulators.scenario import Scenario

    if scenario:
        sc = _scenario(scenario)
    else:
        chosen = INCIDENT_KINDS if kinds == "all" else () if kinds == "none" else tuple(kinds.split(","))
        bad = [k for k in chosen if k not in INCIDENT_KINDS]
        if bad:  # an empty name (",," or "") is named as such, not left as a blank
            raise click.BadParameter(
                f"unknown kind(s) {', '.join(repr(k) for k in bad)}; expected 'all', 'none' or some of"
                f" {','.join(INCIDENT_KINDS)}",
                param_hint="--kinds",
            )
        if chosen and not 0 <= first_day < days:
            raise click.BadParameter(f"must be 0..{days - 1}", param_hint="--first-day")
        sc = Scenario(
            name="dataset",
            seed=seed,
            days=days,
            homes=homes,
            drop_rate=drop_rate,
            spurious_rate=spurious_rate,
            couples=couples,
            random_kinds=chosen,
            random_first_day=first_day if chosen else 0,
        )
    t0 = time.perf_counter()

    def progress(home: int, run: Any) -> None:
        click.echo(
            f"\rhome {home + 1}/{sc.homes}: {len(run.events)} events, {len(run.truth)} incidents",
            err=True,
            nl=False,
        )

    done = [0]

    def counted(home: int, run: Any) -> None:
        done[0] = home + 1
        progress(home, run)

    try:
        summary = write_dataset(sc, Path(out), fmt=fmt, acc_minutes=acc_minutes, progress=counted)
    except SimulationError as exc:  # a scenario's incident a home cannot have (a sensor it lacks)
        click.echo("", err=True)
        raise click.BadParameter(f"{sc.name}: home {done[0]}: {exc}", param_hint="--scenario") from None
    click.echo("", err=True)
    click.echo(
        f"wrote {summary['homes']} homes, {summary['events']} events, {summary['incidents']} incidents, "
        f"{summary['acc_sessions']} accelerometer sessions to {out} in {time.perf_counter() - t0:.1f} s"
    )


@simulate.command("seed")
@click.option("--homes", type=click.IntRange(0, 100_000), default=10, show_default=True)
@click.option("--stations", type=click.IntRange(0, 1000), default=1, show_default=True)
@click.option("--seed", "seed_", type=int, default=0, show_default=True)
@click.option(
    "--prefix",
    default="sim",
    show_default=True,
    help="Prefix of every id, to keep several neighbourhoods apart.",
)
@click.option(
    "-o",
    "--manifest",
    "manifest_path",
    type=click.Path(dir_okay=False),
    default="sim-manifest.json",
    show_default=True,
)
@click.option("--roster-days", type=click.IntRange(1, 3650), default=30, show_default=True)
@click.option(
    "--couples",
    type=Number(0, 1),
    default=0.0,
    show_default=True,
    help="Share of homes with two residents.",
)
@click.pass_context
def seed_cmd(
    ctx: click.Context,
    homes: int,
    stations: int,
    seed_: int,
    prefix: str,
    manifest_path: str,
    roster_days: int,
    couples: float,
) -> None:
    """Register simulated homes, stations, people and rosters in the database; write a manifest.

    在数据库中注册模拟的家庭、驿站、人员与排班，并写出清单文件。
    """
    import re

    import psycopg

    from eldercare.db import resolve_url
    from eldercare.simulators import neighbourhood as nb
    from eldercare.simulators import store

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,15}", prefix):
        raise click.BadParameter("1-16 letters, digits, '-' or '_'", param_hint="--prefix")
    settings = get_settings(ctx)
    now = time.time()
    p = nb.plan(seed_, homes, stations, prefix=prefix, now=now, roster_days=roster_days, couples=couples)
    # The manifest is opened before the neighbourhood is written: a path that cannot be written
    # found only after the commit left the homes registered, their passwords lost and the prefix taken.
    existed = os.path.lexists(manifest_path)
    try:
        fd = os.open(manifest_path, os.O_WRONLY | os.O_CREAT, 0o600)
    except OSError as exc:
        raise click.BadParameter(f"{manifest_path}: {exc.strerror}", param_hint="-o/--manifest") from None
    try:
        counts = store.seed(resolve_url(settings), p)
    except BaseException as exc:
        os.close(fd)
        if not existed:
            os.unlink(manifest_path)
        if isinstance(exc, store.StoreError):
            raise click.ClickException(str(exc)) from None
        if isinstance(exc, psycopg.OperationalError):
            msg = str(exc).strip().splitlines()[0]
            raise click.ClickException(f"cannot reach the database: {msg}") from None
        raise
    m = nb.manifest(p, topic_root=settings.mqtt_topic_root, created_at=now, start=now)
    # the manifest holds the simulated accounts' passwords: readable by its owner only
    os.ftruncate(fd, 0)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(json.dumps(m, ensure_ascii=False, indent=1) + "\n")
    click.echo(", ".join(f"{v} {k}" for k, v in counts.items()))
    click.echo(f"manifest: {manifest_path}")


@simulate.command()
@click.option("--manifest", "manifest_path", required=True, type=click.Path(dir_okay=False))
@click.option(
    "--days", type=click.IntRange(1, 90), default=21, show_default=True, help="Days of past to write."
)
@click.option(
    "--sim-start",
    type=Number(0, EPOCH_2100),
    default=None,
    help="Where the past ends: the run's simulated start (epoch s); default: now.",
)
@click.pass_context
def history(ctx: click.Context, manifest_path: str, days: int, sim_start: float | None) -> None:
    """Write each seeded home's past readings, so its detectors learn its routine at once.

    写入每个模拟家庭的历史读数，使检测器立即学习其作息。
    """
    import psycopg

    from eldercare.db import resolve_url
    from eldercare.simulators import history as hist

    m = _load_manifest(manifest_path)
    settings = get_settings(ctx)
    end = time.time() if sim_start is None else sim_start
    started = time.monotonic()
    try:
        with psycopg.connect(resolve_url(settings)) as conn:
            written = hist.backfill(conn, m, end, days)
    except psycopg.OperationalError as exc:
        raise click.ClickException(f"cannot reach the database: {str(exc).strip().splitlines()[0]}") from None
    fresh = sum(1 for n in written.values() if n)
    click.echo(
        f"history: {sum(written.values())} readings over {days} days for {fresh} homes"
        f" ({len(written) - fresh} already had theirs) in {time.monotonic() - started:.1f} s"
    )


@simulate.command()
@click.option("--manifest", "manifest_path", required=True, type=click.Path(dir_okay=False))
@click.option(
    "--speed",
    type=Number(0.1, 100_000),
    default=1.0,
    show_default=True,
    help="Simulated seconds per wall-clock second.",
)
@click.option("--mode", type=click.Choice(["direct", "edge"]), default="direct", show_default=True)
@click.option(
    "--homes",
    type=click.IntRange(1),
    default=None,
    help="Only the first N homes of the manifest, and none of its stations.",
)
@click.option("--duration", type=Number(0), default=None, help="Stop after this many wall-clock seconds.")
@click.option(
    "--sim-start", type=Number(0, EPOCH_2100), default=None, help="Simulated start (epoch s); default: now."
)
@click.option("--scenario", help="Incidents to schedule (home indexes map to the manifest's homes).")
@click.option(
    "--truth",
    "truth_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Ground truth JSON lines (default: next to the manifest, truth.jsonl).",
)
@click.option(
    "--status-every",
    type=Number(5),
    default=300.0,
    show_default=True,
    help="Simulated seconds between gateway status messages.",
)
@click.option(
    "--false-fall-rate",
    type=Number(0),
    default=0.02,
    show_default=True,
    help="Direct mode: wrongly detected falls per resident per day.",
)
@click.option(
    "--fall-detected",
    type=Number(0, 1),
    default=0.9,
    show_default=True,
    help="Direct mode: the chance that a fall is reported as a fall event (the wearable's detector).",
)
@click.option("--quiet", is_flag=True, help="No live line.")
@click.pass_context
def run(
    ctx: click.Context,
    manifest_path: str,
    speed: float,
    mode: str,
    homes: int | None,
    duration: float | None,
    sim_start: float | None,
    scenario: str | None,
    truth_path: str | None,
    status_every: float,
    false_fall_rate: float,
    fall_detected: float,
    quiet: bool,
) -> None:
    """Drive the seeded homes against the broker, in real time or faster.

    按真实时间或加速运行模拟家庭，向消息代理发送数据。
    """
    from eldercare.simulators.routine import SimulationError
    from eldercare.simulators.runner import RunOptions, run_direct

    m = _load_manifest(manifest_path)
    settings = get_settings(ctx)
    sc = _scenario(scenario) if scenario else None
    truth = Path(truth_path) if truth_path else Path(manifest_path).with_name("truth.jsonl")
    try:  # a truth file that cannot be written is a bad --truth, said before the run starts
        _keep_earlier_truth(truth)
        truth.open("a").close()
    except OSError as exc:
        raise click.BadParameter(f"{truth}: {exc.strerror or exc}", param_hint="--truth") from None
    n = min(homes or len(m["homes"]), len(m["homes"]))
    if sc is not None and sc.homes > n:  # said, not left out in silence
        click.echo(
            f"scenario {sc.name}: {sc.homes} homes, this run {n}: the incidents of homes"
            f" {n}..{sc.homes - 1} are left out",
            err=True,
        )
    if sc is not None and sc.profiles:  # said, not ignored in silence
        click.echo(
            f"scenario {sc.name}: its [[profile]] overrides are not applied in a live run (the homes'"
            " profiles are the manifest's, which their history was written from)",
            err=True,
        )
    opts = RunOptions(
        speed=speed,
        homes=homes,
        duration=duration,
        sim_start=sim_start,
        status_every=status_every,
        false_fall_rate=false_fall_rate,
        fall_detected=fall_detected,
        live=not quiet,
    )
    try:
        if mode == "edge":
            from eldercare.simulators.edge import run_edge

            edge_dir = settings.data_dir / "sim-edge"
            stats = run_edge(settings, m, opts, edge_dir=edge_dir, truth_path=truth, scenario=sc)
        else:
            stats = run_direct(settings, m, opts, truth_path=truth, scenario=sc)
    except SimulationError as exc:  # a scenario's incident this neighbourhood cannot have
        raise click.BadParameter(str(exc), param_hint="--scenario") from None
    except (OSError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(stats))


def _keep_earlier_truth(path: Path) -> None:
    """An earlier run's truth file is moved aside, named by when that run started, not overwritten:
    its run's incidents could no longer be scored."""
    from eldercare.simulators.scenario import ScenarioError, read_clock

    if not path.is_file() or path.stat().st_size == 0:
        return
    try:
        clock = read_clock(path) or {}
        began = time.gmtime(float(clock.get("wall_start", path.stat().st_mtime)))
    except (ScenarioError, ValueError, TypeError, OSError):
        began = time.gmtime(path.stat().st_mtime)
    aside = path.with_name(f"{path.stem}-{time.strftime('%Y%m%dT%H%M%SZ', began)}{path.suffix}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.stem}-{time.strftime('%Y%m%dT%H%M%SZ', began)}-{n}{path.suffix}")
    path.rename(aside)
    click.echo(f"the earlier run's truth {path} is kept as {aside}", err=True)


@simulate.command()
@click.option("--manifest", "manifest_path", required=True, type=click.Path(dir_okay=False))
@click.option("--resident", required=True, help="Resident id, or the home's index in the manifest.")
@click.option("--kind", required=True, type=KIND_CHOICE)
@click.option(
    "--duration-min",
    type=Number(0, inf=True),
    default=None,
    help="Default: the kind's default; 'inf': never ends.",
)
@click.option("--room", default=None)
@click.option("--sensor", default=None)
@click.pass_context
def trigger(
    ctx: click.Context,
    manifest_path: str,
    resident: str,
    kind: str,
    duration_min: float | None,
    room: str | None,
    sensor: str | None,
) -> None:
    """Make something happen to a resident of a running simulation.

    在运行中的模拟里为一位长者触发事件。
    """
    from eldercare.sim_control import send_trigger

    m = _load_manifest(manifest_path)
    homes = m["homes"]
    # either resident of a home of two (docs: "Triggers name either resident")
    who = {r: r for h in homes for r in (h["resident"], (h.get("partner") or {}).get("resident")) if r}
    if resident.isdigit() and int(resident) < len(homes):
        who.setdefault(resident, homes[int(resident)]["resident"])
    if resident not in who:
        raise click.BadParameter(f"no resident {resident!r} in {manifest_path}", param_hint="--resident")
    settings = get_settings(ctx)
    req = {
        "resident": who[resident],
        "kind": kind,
        "room": room,
        "sensor": sensor,
        "duration_s": None if duration_min is None else duration_min * 60,
    }
    try:
        answer = send_trigger(settings, settings.mqtt_topic_root, req)
    except (OSError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(answer.get("truth"), ensure_ascii=False))


@simulate.command()
@click.option("--manifest", "manifest_path", required=True, type=click.Path(dir_okay=False))
@click.option("--truth", "truth_path", required=True, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--window-h",
    type=Number(0),
    default=2.0,
    show_default=True,
    help="Hours after an incident's end (or start) in which an alert still counts as catching it.",
)
@click.pass_context
def score(ctx: click.Context, manifest_path: str, truth_path: str, as_json: bool, window_h: float) -> None:
    """Compare the ground truth with the alerts the platform raised.

    将真值与平台产生的告警进行比对评分。
    """
    import psycopg

    from eldercare import scoring
    from eldercare.db import resolve_url
    from eldercare.simulators import store
    from eldercare.simulators.scenario import ScenarioError, read_clock, read_truth

    m = _load_manifest(manifest_path)
    try:
        truth = read_truth(truth_path)
        clock = read_clock(truth_path)
    except ScenarioError as exc:
        raise click.BadParameter(str(exc), param_hint="--truth") from None
    if not truth and clock is None:  # every alert would be a false alarm over a span made up of them
        raise click.BadParameter(
            f"{truth_path}: no incidents and no run's clock: not the truth of a run", param_hint="--truth"
        )
    residents = {h["resident"] for h in m["homes"]} | {
        h["partner"]["resident"] for h in m["homes"] if h.get("partner")
    }
    stray = sorted({r.resident for r in truth} - residents)
    if stray:  # scored against this neighbourhood's alerts, every one would be a miss
        raise click.BadParameter(
            f"{truth_path}: {len(stray)} resident(s) of its incidents are not in {manifest_path}"
            f" ({', '.join(stray[:3])}{', …' if len(stray) > 3 else ''}): the truth of another"
            " neighbourhood?",
            param_hint="--truth",
        )
    sites = [h["site"] for h in m["homes"]] + [s["site"] for s in m.get("stations", [])]
    settings = get_settings(ctx)
    try:
        alerts, trail = store.fetch_alerts(resolve_url(settings), sites=sites)
    except psycopg.OperationalError as exc:
        raise click.ClickException(f"cannot reach the database: {str(exc).strip().splitlines()[0]}") from None
    report = scoring.score(
        truth,
        alerts,
        trail,
        residents=len(residents),
        clock=clock,
        window_s=window_h * 3600,
    )
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(report.table())
    sys.stdout.flush()
