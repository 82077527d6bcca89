"""``eldercare demo``: the whole platform on one machine, on embedded servers when none are configured.

It runs the same commands an operator would, as child processes sharing one set of settings:
``db migrate``, ``simulate seed``, ``simulate history`` (three weeks of each home's past, so the
inactivity detectors fit on it and the charts are filled from the first minute), ``ingest``,
``engine`` (the alert engine, a process of its own), ``serve --no-engine`` (the API and the
consoles) and ``simulate run`` (through real edge agents), then fires a few incidents with
``simulate trigger`` so that alerts arrive in the consoles.

Every child inherits all of the demo's ``ELDERCARE_*`` variables (and its ``--config`` file); the
demo adds only what it decided itself: the embedded servers' URLs, the data directory, ports, and
(unless configured) an ingest client id of its own, since the default one is shared by every ingest.
A port left at its default is replaced by a free one when taken (HTTP) or always (ingest metrics,
which nobody needs at a fixed place in a demo), so a second demo or a test run can hold them. One
demo runs per data directory (:func:`one_demo_per_data_dir`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click

from eldercare.cli_settings import get_settings
from eldercare.config import CONFIG_ENV, ENV_PREFIX, Settings
from eldercare.simulators.neighbourhood import home_sim
from eldercare.simulators.routine import DAY

# (seconds after the simulation starts, home index, incident kind); each fires at that home or, if
# its resident is out then, at the next one whose resident is in
# the no_wake one plays out at its home's next planned wake (at 60x, minutes later)
DEMO_INCIDENTS: list[tuple[float, int, str]] = [
    (20, 0, "fall"),
    (40, 1, "sos"),
    (70, 2, "bathroom_too_long"),
    (90, 3, "no_wake"),
]
HISTORY_DAYS = 21  # each home's past, written before it runs live, so its detectors have learned it
INCIDENT_SPAN_S = 2 * 3600.0  # ... and stays in this long (simulated), while the incident plays out


# where each role starts in the web app (docs/web.md); a family member lands on their relative's page
CONSOLES = {"care_worker": "#/console", "admin": "#/admin", "tester": "#/tester"}


def say(message: str) -> None:
    """One line of the demo's log, with the wall-clock time (local) in front."""
    click.echo(f"{time.strftime('%H:%M:%S')} {message}")


F = TypeVar("F", bound=Callable[..., Any])


def timed_errors(f: F) -> F:
    """The error that ends the demo ("Error: ingest stopped ...") carries the time too."""
    import functools

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except click.ClickException as exc:
            if type(exc) is not click.ClickException:  # usage errors keep their form and exit code
                raise
            raise click.ClickException(f"{time.strftime('%H:%M:%S')} {exc.message}") from exc

    return wrapper  # type: ignore[return-value]


@dataclass
class Children:
    """Child processes of the demo, stopped in reverse order of start."""

    env: dict[str, str]
    log_dir: Path
    procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def run(self, name: str, *args: str, timeout: float = 300) -> str:
        """Run a command to completion; a failure ends the demo with its last lines."""
        out = subprocess.run(
            [sys.executable, "-m", "eldercare.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if out.returncode != 0:
            tail = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["(no output)"]
            msg = f"{name} failed: {tail[0]}"
            raise click.ClickException(msg)
        return out.stdout

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """A long-running child, in a session of its own: a terminal's Ctrl-C (or ``timeout``'s signal)
        goes to the demo's whole process group, and children in it stopped at once, before the demo
        could score the run: the simulator's gateways said goodbye (offline), and an engine still
        running turned that into a ``device_offline`` alert the score counted as a false alarm. Only
        the demo stops them (:meth:`stop`), after it has scored. Out of its group, a child would
        outlive a demo that cannot stop it (``kill -9``, ``timeout -s KILL``, a second Ctrl-C while
        it stops them): each gets SIGTERM when the demo dies, as the embedded broker does."""
        from eldercare.embedded import die_with_parent

        main = threading.current_thread() is threading.main_thread()
        log = (self.log_dir / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "eldercare.cli", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # (pdeathsig follows the thread that started it: the demo's main thread, never a passing one)
            preexec_fn=die_with_parent if main and sys.platform == "linux" else None,
        )
        self.procs.append((name, proc))
        return proc

    def check_alive(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None and name != "simulator":
                msg = f"{name} stopped (exit {proc.returncode}); see {self.log_dir / (name + '.log')}"
                raise click.ClickException(msg)

    def stop(self) -> None:
        for _name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for _name, proc in reversed(self.procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def _wait_http(url: str, timeout: float, children: Children) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children.check_alive()  # a platform that failed to start says why at once
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    msg = f"the platform did not answer at {url} within {timeout:.0f} s"
    raise click.ClickException(msg)


def _bindable(host: str, port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _ports(settings: Settings) -> tuple[int, int]:
    """(HTTP port, ingest metrics port) for the children: a configured port is kept (and must be
    free), a default one is replaced by a free one where needed."""
    from eldercare.embedded import free_port

    host, explicit = settings.http_host, settings.model_fields_set
    http_port = settings.http_port
    if http_port == 0 or not _bindable(host, http_port):
        if "http_port" in explicit and http_port != 0:
            msg = f"ELDERCARE_HTTP_PORT: port {http_port} on {host} is in use; choose another or 0 (any)"
            raise click.ClickException(msg)
        http_port = free_port(host)
    metrics_port = settings.metrics_port
    if "metrics_port" not in explicit:
        metrics_port = free_port(host)  # 9108 may be anyone's: a demo needs no fixed place
    elif metrics_port and not _bindable(host, metrics_port):
        msg = f"ELDERCARE_METRICS_PORT: port {metrics_port} on {host} is in use; choose another or 0 (off)"
        raise click.ClickException(msg)
    return http_port, metrics_port


def _child_env(
    settings: Settings,
    db_url: str,
    mqtt_url: str,
    protocol: str,
    *,
    ports: tuple[int, int],
    config_file: str | None = None,
) -> dict[str, str]:
    """The demo's whole environment, every ``ELDERCARE_*`` setting included, plus what the demo
    decided: the servers' URLs, the data directory and the ports."""
    env = dict(os.environ)
    if config_file is not None:
        env[CONFIG_ENV] = str(Path(config_file).resolve())
    env.update(
        {
            f"{ENV_PREFIX}DATABASE_URL": db_url,
            f"{ENV_PREFIX}MQTT_URL": mqtt_url,
            f"{ENV_PREFIX}MQTT_PROTOCOL": protocol,
            f"{ENV_PREFIX}DATA_DIR": str(settings.data_dir.resolve()),
            f"{ENV_PREFIX}HTTP_PORT": str(ports[0]),
            f"{ENV_PREFIX}METRICS_PORT": str(ports[1]),
        }
    )
    if settings.smtp_url is None and settings.mail_outbox is None:  # no mail server: show what would go
        env[f"{ENV_PREFIX}MAIL_OUTBOX"] = str(outbox_of(settings))
    if "ingest_client_id" not in settings.model_fields_set:
        env[f"{ENV_PREFIX}INGEST_CLIENT_ID"] = demo_client_id(settings, mqtt_url)
    return env


def outbox_of(settings: Settings) -> Path:
    """Where the demo's e-mails go (a Maildir) when no SMTP server is configured."""
    return settings.mail_outbox or settings.data_dir.resolve() / "demo" / "outbox"


def demo_client_id(settings: Settings, mqtt_url: str) -> str:
    """Ingest's MQTT client id in a demo: the default ``eldercare-ingest-0`` would take over the
    session of any other ingest on the same broker (another demo, a test run); one per data
    directory and topic root instead, so that the next demo on the same data resumes its session."""
    import hashlib

    key = f"{settings.data_dir.resolve()}|{settings.mqtt_topic_root}|{mqtt_url}"
    return f"eldercare-demo-{hashlib.sha256(key.encode()).hexdigest()[:16]}-0"


@click.command()
@click.option("--homes", type=click.IntRange(1, 200), default=20, show_default=True)
@click.option("--stations", type=click.IntRange(0, 10), default=1, show_default=True)
@click.option(
    "--speed",
    type=click.FloatRange(1, 3600),
    default=60.0,
    show_default=True,
    help="Simulated seconds per real second.",
)
@click.option(
    "--mode",
    type=click.Choice(["edge", "direct"]),
    default="edge",
    show_default=True,
    help="edge: through real edge agents; direct: straight to MQTT.",
)
@click.option(
    "--duration",
    type=click.FloatRange(10),
    default=None,
    help="Stop after this many seconds (default: run until Ctrl-C).",
)
@click.option("--no-incidents", is_flag=True, help="Do not fire the scripted incidents.")
@click.option(
    "--broker",
    type=click.Choice(["auto", "mosquitto", "amqtt"]),
    default="auto",
    show_default=True,
    help="Embedded broker when ELDERCARE_MQTT_URL is unset: mosquitto if installed, else amqtt.",
)
@click.pass_context
@timed_errors
def demo(
    ctx: click.Context,
    homes: int,
    stations: int,
    speed: float,
    mode: str,
    duration: float | None,
    no_incidents: bool,
    broker: str,
) -> None:
    """Run the whole platform with simulated homes; open the printed address in a browser.

    运行完整平台与模拟家庭；在浏览器中打开显示的地址。
    """
    from eldercare.embedded import EmbeddedBroker, EmbeddedPostgres

    stop_on_signals()
    settings = get_settings(ctx)
    root = ctx.find_root()
    config_file = root.obj.get("config_file") if isinstance(root.obj, dict) else None
    data_dir = settings.data_dir.resolve()
    run_dir = data_dir / "demo"
    run_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        stack.enter_context(one_demo_per_data_dir(run_dir))
        ports = _ports(settings)
        if settings.database_url is None:
            say("starting the embedded PostgreSQL ...")
            db_url = stack.enter_context(EmbeddedPostgres(data_dir / "postgres"))
        else:
            db_url = settings.database_url.get_secret_value()
        if settings.mqtt_url is None:
            say("starting the embedded MQTT broker ...")
            embedded = EmbeddedBroker(data_dir=data_dir / "broker", kind=broker)  # type: ignore[arg-type]
            host, port = stack.enter_context(embedded)
            mqtt_url = f"mqtt://{host}:{port}"
            protocol = "5" if embedded.supports_v5 else "3.1.1"
        else:
            mqtt_url = settings.mqtt_url.get_secret_value()
            protocol = settings.mqtt_protocol
        if protocol == "3.1.1":
            say(
                "note: the broker speaks MQTT 3.1.1 only, so one ingest worker runs with a plain"
                " subscription (no shared subscriptions); install mosquitto for MQTT 5"
            )
        env = _child_env(settings, db_url, mqtt_url, protocol, ports=ports, config_file=config_file)
        children = Children(env, run_dir)
        stack.callback(children.stop)

        say(children.run("migrate", "db", "migrate").strip().splitlines()[-1])
        manifest = run_dir / "manifest.json"
        # unique per run: two demos on one broker with the same prefix would share gateway ids, i.e.
        # MQTT client ids, and knock each other's agents off the broker in turn
        prefix = f"demo{secrets.token_hex(4)}"
        say(
            children.run(
                "seed", "simulate", "seed", "--homes", str(homes), "--stations", str(stations),
                "--prefix", prefix, "--manifest", str(manifest),
            ).strip()
        )  # fmt: skip
        sim_start = time.time()  # the simulated clock starts here; the homes' past ends here
        click.echo(
            children.run(
                "history", "simulate", "history", "--manifest", str(manifest), "--days", str(HISTORY_DAYS),
                "--sim-start", repr(sim_start),
            ).strip()
        )  # fmt: skip
        children.start("ingest", "ingest")
        children.start("engine", "engine")  # as `serve` would start it; its own log (engine.log)
        children.start("platform", "serve", "--no-engine")
        base = f"http://{settings.http_host}:{ports[0]}"
        _wait_http(f"{base}/healthz", 60, children)
        sim_args = ["simulate", "run", "--manifest", str(manifest), "--speed", str(speed), "--mode", mode,
                    "--sim-start", repr(sim_start)]  # fmt: skip
        # the last demo's truth is of the neighbourhood this one replaced: `simulate run` would keep it aside
        manifest.with_name("truth.jsonl").unlink(missing_ok=True)
        sim_started = time.time()  # the runner's wall start; its simulated clock starts at sim_start
        children.start("simulator", *sim_args, "--quiet")
        metrics = f"http://{settings.http_host}:{ports[1]}/metrics" if ports[1] else None
        _print_welcome(base, manifest, run_dir, metrics)
        if settings.smtp_url is None:
            say(f"no SMTP server (ELDERCARE_SMTP_URL): alert e-mails are kept in {outbox_of(settings)}/new")

        started = time.monotonic()
        pending = [] if no_incidents else sorted(DEMO_INCIDENTS)
        fired: set[int] = set()
        try:
            while duration is None or time.monotonic() - started < duration:
                children.check_alive()
                elapsed = time.monotonic() - started
                while pending and pending[0][0] <= elapsed:
                    _at, home, kind = pending.pop(0)
                    sim_now = sim_start + speed * (time.time() - sim_started)
                    span = (sim_now, sim_now + INCIDENT_SPAN_S)
                    home = home_in(
                        homes_of(manifest), home, span, fired, day0=math.floor(sim_start / DAY) * DAY
                    )
                    fired.add(home)
                    children.run(
                        "trigger", "simulate", "trigger", "--manifest", str(manifest),
                        "--resident", str(home), "--kind", kind,
                    )  # fmt: skip
                    say(f"incident fired: {kind} at home {home} ({elapsed:.0f} s in)")
                time.sleep(1)
        except KeyboardInterrupt:
            say("stopping ...")
        truth = manifest.with_name("truth.jsonl")
        if truth.exists():
            say("the simulation's score:")
            click.echo(children.run("score", "simulate", "score", "--manifest", str(manifest),
                                    "--truth", str(truth)))  # fmt: skip


@contextlib.contextmanager
def one_demo_per_data_dir(run_dir: Path) -> Iterator[None]:
    """Hold ``<data dir>/demo/demo.lock`` (an exclusive ``flock``, dropped when the process dies) for
    the demo's life. Two demos on one data directory wrote one manifest (each printed the sign-ins of
    whichever seeded last), one set of logs and e-mails, deleted each other's truth and shared an
    ingest client id; the second now says so before it starts anything."""
    import fcntl

    path = run_dir / "demo.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            msg = (
                f"another demo (pid {holder}) is running on the data directory {run_dir.parent}:"
                " stop it, or give this one its own (ELDERCARE_DATA_DIR)"
            )
            raise click.ClickException(msg) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor drops the lock


def stop_on_signals() -> None:
    """Ctrl-C, SIGTERM and a closed terminal (SIGHUP) stop the demo cleanly, however it was started.

    A program started in the background by a non-interactive shell (``eldercare demo &`` in a script,
    a CI step) inherits SIGINT *ignored*, and Python then never raises KeyboardInterrupt: Ctrl-C or
    ``kill -INT`` would leave the demo and its children running. Its children have sessions of their
    own (:meth:`Children.start`), so a closed terminal's hangup reaches the demo alone: it stops them.
    """

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGHUP, interrupt)


def homes_of(manifest: Path) -> list[dict[str, Any]]:
    homes: list[dict[str, Any]] = json.loads(manifest.read_text(encoding="utf-8"))["homes"]
    return homes


def home_in(
    homes: list[dict[str, Any]], first: int, span: tuple[float, float], taken: set[int], *, day0: float
) -> int:
    """The first home from ``first`` on, not ``taken``, whose resident is in throughout ``span`` (sim time).

    A scripted incident at a home whose resident is out (at the day station, say) would happen only
    after they come home, hours of simulated time later: the demo would seem to have missed it.
    ``day0``: the midnight the runner planned each home's days from (before its start). With fewer
    homes than scripted incidents (``--homes 2``), a home already used takes another.
    """
    order = [(first + k) % len(homes) for k in range(len(homes))]
    untaken_first = [i for i in order if i not in taken] + [i for i in order if i in taken]
    for i in untaken_first:
        if not home_sim(homes[i], day0).out_between(*span):
            return i
    return order[0]


def _print_welcome(base: str, manifest: Path, run_dir: Path, metrics: str | None) -> None:
    users = json.loads(manifest.read_text(encoding="utf-8")).get("users", [])
    click.echo("")
    say(f"eldercare is running: {base}/   (API docs: {base}/docs)")
    shown: set[str] = set()
    for user in users:
        if user["role"] not in shown:
            shown.add(user["role"])
            page = f"{base}/{CONSOLES.get(user['role'], '')}"
            click.echo(f"  {user['role']:<12} {user['username']} / {user['password']:<22} {page}")
    click.echo(f"logs: {run_dir}/*.log   manifest: {manifest}   Ctrl-C stops everything")
    if metrics:
        click.echo(f"ingest metrics: {metrics}")
    click.echo("")
