"""``eldercare ingest``: run the ingest workers (bare ``eldercare ingest`` runs them too)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from eldercare.cli_settings import get_settings
from eldercare.config import Settings
from eldercare.ingest.errors import IngestError, StoreUnavailable

if TYPE_CHECKING:
    from eldercare.ingest.slot import Slot

log = logging.getLogger(__name__)


@click.group(invoke_without_command=True)
@click.pass_context
def ingest(ctx: click.Context) -> None:
    """Store MQTT telemetry, events and status in the database (exactly once, batched)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(run)


@ingest.command()
@click.option(
    "--workers",
    "-w",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Worker processes sharing the load through an MQTT v5 shared subscription.",
)
@click.option(
    "--commit-log",
    type=click.Path(dir_okay=False, path_type=Path),
    hidden=True,
    help="Append 'gateway epoch seq received committed' per message (benchmarks).",
)
@click.pass_context
def run(ctx: click.Context, workers: int, commit_log: Path | None) -> None:
    """Run ingest until SIGTERM or Ctrl-C."""
    from eldercare.db import require_schema, resolve_url
    from eldercare.ingest.worker import run_worker, supervise

    settings = get_settings(ctx)
    if workers > 1 and (not settings.ingest_shared_group or settings.mqtt_protocol != "5"):
        raise click.BadParameter(
            "several workers need an MQTT v5 shared subscription "
            "(ELDERCARE_INGEST_SHARED_GROUP set, ELDERCARE_MQTT_PROTOCOL=5)",
            param_hint="--workers",
        )
    mqtt_url = _mqtt_url(settings)
    db_url = resolve_url(settings)
    require_schema(settings)  # else each worker fails on its first query (and --workers restarts it)
    slot = None
    if settings.ingest_slot_dir is not None:  # the slot's lock is what keeps its client ids to one worker
        slot, settings = _take_slot(settings, settings.ingest_slot_dir, workers)
    else:
        _refuse_a_second_worker(settings, db_url, workers)
    try:
        if workers == 1:
            run_worker(settings, db_url=db_url, mqtt_url=mqtt_url, commit_log=commit_log)
        else:
            supervise(settings, db_url=db_url, mqtt_url=mqtt_url, workers=workers, commit_log=commit_log)
    except IngestError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if slot is not None:
            slot.release()


def _take_slot(settings: Settings, directory: Path, workers: int) -> tuple[Slot, Settings]:
    """Hold the lowest free slot; its workers' client ids start at base + slot x workers."""
    from eldercare.ingest.slot import NoFreeSlot, claim
    from eldercare.ingest.worker import client_id_for

    try:
        slot = claim(directory)
    except NoFreeSlot as exc:
        raise click.ClickException(str(exc)) from None
    base = client_id_for(settings.ingest_client_id, slot.index * workers)
    log.info("holding ingest slot %d (%s): client id %s", slot.index, slot.path, base)
    return slot, settings.model_copy(update={"ingest_client_id": base})


@ingest.command()
@click.option(
    "--index",
    type=click.IntRange(0, 10_000),
    required=True,
    help="Which worker leaves for good: its client id is derived as for --workers "
    "(with ELDERCARE_INGEST_SLOT_DIR, one worker per replica: the slot).",
)
@click.pass_context
def retire(ctx: click.Context, index: int) -> None:
    """Take a worker out of the shared group for good, without losing what its session holds.

    A stopped worker's persistent session stays a member of the shared subscription and keeps
    receiving its share until it expires. This connects as that worker, unsubscribes, stores
    whatever the session still delivers, and ends the session once nothing has come for a while.
    """
    from eldercare.db import resolve_url
    from eldercare.ingest.worker import run_worker

    settings = get_settings(ctx)
    slot = None
    if settings.ingest_slot_dir is not None:  # replicas: refuse to take over a running one's session
        from eldercare.ingest.slot import NoFreeSlot, hold

        try:
            slot = hold(settings.ingest_slot_dir, index)
        except NoFreeSlot as exc:
            raise click.ClickException(f"{exc}: it is not retired") from None
    try:
        db_url = resolve_url(settings)
        if slot is None:  # no slot lock to ask: the worker's own heartbeat says whether it runs
            _refuse_a_running_worker(settings, db_url, index)
        run_worker(settings, db_url=db_url, mqtt_url=_mqtt_url(settings), index=index, retire=True)
    except IngestError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if slot is not None:
            slot.release()


def _refuse_a_running_worker(settings: Settings, db_url: str, index: int) -> None:
    """Retiring connects with the worker's client id: a running worker would be thrown off its
    session (and reconnect, and throw the retiring one off). Refuse while it records itself alive."""
    from eldercare.ingest.worker import client_id_for

    client_id = client_id_for(settings.ingest_client_id, index)
    running = _running(settings, db_url, [client_id])
    if running is None:
        return
    _, age, pid, host, silent_after = running
    msg = (
        f"{client_id} recorded itself alive {age:.0f} s ago (process {pid} on {host}): stop it first, "
        f"or if it is stopped run this again once it has been silent for {silent_after:.0f} s; "
        "it is not retired"
    )
    raise click.ClickException(msg)


def _refuse_a_second_worker(settings: Settings, db_url: str, workers: int) -> None:
    """Two workers with one client id take the broker session from each other every second, and
    neither stores anything in between; the second to start says so and stops instead."""
    from eldercare.ingest.worker import client_id_for

    ids = [client_id_for(settings.ingest_client_id, i) for i in range(workers)]
    running = _running(settings, db_url, ids)
    if running is None:
        return
    client_id, age, pid, host, _ = running
    msg = (
        f"ingest worker {client_id} is already running (process {pid} on {host}, alive {age:.0f} s ago):"
        " two workers with one client id take its broker session from each other; stop it, or give"
        " this one its own ELDERCARE_INGEST_CLIENT_ID"
    )
    raise click.ClickException(msg)


def _running(
    settings: Settings, db_url: str, client_ids: list[str]
) -> tuple[str, float, int, str, float] | None:
    """(client id, seconds since it was alive, pid, host, silence that means stopped) of the first of
    ``client_ids`` that a running worker holds, by its heartbeat in ``ingest_workers``; or None."""
    import socket

    from eldercare.ingest.store import Store
    from eldercare.ingest.worker import SILENT_HEARTBEATS

    silent_after = SILENT_HEARTBEATS * settings.ingest_heartbeat_s
    store = Store(db_url)
    try:
        for client_id in client_ids:
            seen = store.last_alive(client_id=client_id)
            if seen is None:
                continue
            host, pid, age = seen
            if age >= silent_after or pid == 0:
                continue  # a running worker records itself alive every heartbeat; a stopped one, pid 0
            if host == socket.gethostname() and not _alive(pid):
                continue  # stopped a moment ago on this host: its process is gone
            return client_id, age, pid, host, silent_after
    except StoreUnavailable as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise click.ClickException(f"the database cannot be used: {first}") from None
    finally:
        store.close()
    return None


def _alive(pid: int) -> bool:
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    try:  # killed but not yet reaped by its parent: it runs no more
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _mqtt_url(settings: Settings) -> str:
    if settings.mqtt_url is None:
        # The demo starts its embedded broker and passes its URL in the settings.
        raise click.ClickException("ELDERCARE_MQTT_URL is not set: ingest needs a broker (mqtt://host:1883)")
    return settings.mqtt_url.get_secret_value()
