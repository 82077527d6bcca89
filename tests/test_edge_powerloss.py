"""Power loss, not just ``kill -9``: what the outbox acknowledged must be on the disk.

A ``kill -9`` leaves the kernel's page cache intact, so it cannot tell an fsync from a plain
write. Here the outbox writes to an ext4 file system on a loop device backed by an image file.
Everything the loop device has received is in that image; what the application wrote but did
not fsync is still dirty in the upper file system's page cache and is *not*. At a random instant
the writer is frozen (SIGSTOP) and the image copied: the copy is the disk as a power cut would
leave it (the kernel may have written back some unsynced data by then; a real disk may also
have it). The copy is then mounted (ext4 replays its journal, as after a reboot) and checked:
SQLite's ``integrity_check``, every reading and event the outbox acknowledged is there exactly
once and in order, and every sealed message is intact.

A control run with ``synchronous=normal`` and no WAL checkpoints (so no fsync at all after the
outbox is created) must lose acknowledged readings, which shows that the harness really drops
unsynced writes.

Needs root and loop devices (``losetup``, ``mount``); device-mapper (dm-flakey, dm-log-writes)
is not available in our containers. Where the loop device is unavailable the test is skipped
with the reason; ``ELDERCARE_REQUIRE_POWERLOSS=1`` turns that skip into a failure.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

IMAGE_MB = 24

# Appends counter readings through the outbox, seals them into messages, "acknowledges" (deletes)
# some messages as PUBACKs would, and adds events; a line is printed only after the call returned.
WRITER = r"""
import sys
from pathlib import Path
from eldercare.edge.config import OutboxConfig
from eldercare.edge.outbox import Outbox

path, sync = Path(sys.argv[1]), sys.argv[2]
ob = Outbox(path, OutboxConfig(path=path, synchronous=sync))
if sync == "normal":  # the control: no checkpoint either, so nothing after the schema is fsynced
    ob._db.execute("PRAGMA wal_autocheckpoint=0")
print("epoch", ob.epoch, flush=True)
v, t, turn = 0, 1_790_000_000_000, 0
while True:
    turn += 1
    rows = [(t + v + i, "counter-1", "steps", float(v + i)) for i in range(7)]
    ob.add_readings(rows)
    v += len(rows)
    print("R", v - 1, flush=True)
    if turn % 5 == 0:
        for seq, n in ob.seal_batches(20, t + v, partial=False):
            print("S", seq, n, flush=True)
    if turn % 13 == 0:
        seq = ob.add_event({"t": t + v, "sensor": "sos-1", "kind": "sos"}, t + v)
        print("E", seq, flush=True)
    if turn % 9 == 0:
        sent = [m.seq for m in ob.next_batch([], 2)]
        ob.ack(sent)
        print("D", *sent, flush=True)
"""


def _run(*cmd: str) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        msg = f"{' '.join(cmd)}: {out.stderr.strip() or out.stdout.strip()}"
        raise OSError(msg)
    return out.stdout.strip()


@contextmanager
def _mounted(image: Path, where: Path) -> Iterator[Path]:
    """``image`` (ext4) attached to a loop device and mounted at ``where``."""
    dev = _run("losetup", "--find", "--show", str(image))
    try:
        where.mkdir(parents=True, exist_ok=True)
        # commit=600: ext4 commits its journal only when asked (fsync), not every 5 s by itself
        _run("mount", "-t", "ext4", "-o", "commit=600", dev, str(where))
        try:
            yield where
        finally:
            _run("umount", str(where))
    finally:
        _run("losetup", "--detach", dev)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    """A fresh ext4 image, or a skip (a failure with ELDERCARE_REQUIRE_POWERLOSS=1) saying why not."""
    img = tmp_path / "disk.img"
    try:
        if os.geteuid() != 0:
            msg = "not root"
            raise OSError(msg)
        for tool in ("losetup", "mount", "umount", "mkfs.ext4"):
            if shutil.which(tool) is None:
                msg = f"{tool} not installed"
                raise OSError(msg)
        with img.open("wb") as f:
            f.truncate(IMAGE_MB * 1024 * 1024)
        _run("mkfs.ext4", "-q", "-F", str(img))
        with _mounted(img, tmp_path / "probe"):
            pass
    except OSError as exc:
        reason = f"power-loss test needs root and loop devices (losetup + mount ext4): {exc}"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            reason = f"CI: power loss NOT tested on this runner; {reason}"
        if os.environ.get("ELDERCARE_REQUIRE_POWERLOSS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return img


class Writer:
    """The writer process and the lines it printed (each one an acknowledged write)."""

    def __init__(self, db: Path, synchronous: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(db), synchronous],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[list[str]] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.split())

    def wait_for(self, n: int, timeout: float = 60) -> None:
        """Until ``n`` batches of readings have been acknowledged."""
        deadline = time.monotonic() + timeout
        while sum(1 for x in list(self.lines) if x[0] == "R") < n:
            assert self.proc.poll() is None, self.proc.stderr.read() if self.proc.stderr else ""
            assert time.monotonic() < deadline, "the writer is not writing"
            time.sleep(0.01)

    def freeze(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self.reader.join(10)


def _power_cut(image: Path, work: Path, synchronous: str, rng: random.Random) -> tuple[list[list[str]], Path]:
    """Run the writer, freeze it at a random instant, copy the disk as the device has it."""
    _run("mkfs.ext4", "-q", "-F", str(image))
    snapshot = work / "after-cut.img"
    with _mounted(image, work / "live") as live:
        writer = Writer(live / "outbox.sqlite3", synchronous)
        try:
            writer.wait_for(rng.randint(20, 200))
            time.sleep(rng.uniform(0.0, 0.2))
            writer.freeze()
            shutil.copyfile(image, snapshot)  # the power cut: only what reached the device
            time.sleep(0.05)  # let the reader take what the writer printed before the freeze
            lines = list(writer.lines)
        finally:
            writer.kill()
    return lines, snapshot


def _check_after_reboot(lines: list[list[str]], snapshot: Path, work: Path) -> list[str]:
    """Mount the copy (journal replay) and compare the outbox with what it acknowledged."""
    acked_reading = max((int(x[1]) for x in lines if x[0] == "R"), default=-1)
    sealed = {int(x[1]): int(x[2]) for x in lines if x[0] == "S"}
    events = {int(x[1]) for x in lines if x[0] == "E"}
    deleted = {int(s) for x in lines if x[0] == "D" for s in x[1:]}
    epoch = next(x[1] for x in lines if x[0] == "epoch")
    problems: list[str] = []
    with _mounted(snapshot, work / "rebooted") as disk:
        con = sqlite3.connect(disk / "outbox.sqlite3")
        try:
            integrity = con.execute("PRAGMA integrity_check").fetchone()[0]
            if integrity != "ok":
                return [f"integrity_check: {integrity}"]
            meta = dict(con.execute("SELECT key, value FROM meta"))
            messages = con.execute("SELECT seq, kind, payload FROM messages ORDER BY seq").fetchall()
            pending = [v for (v,) in con.execute("SELECT value FROM pending ORDER BY id")]
        except sqlite3.DatabaseError as exc:  # e.g. the tables themselves were never made durable
            return [f"outbox lost: {exc}"]
        finally:
            con.close()
    if meta.get("epoch") != epoch:
        problems.append(f"epoch {meta.get('epoch')} is not the writer's {epoch}")
    values: list[float] = []
    seqs_on_disk: set[int] = set()
    for seq, kind, payload in messages:
        seqs_on_disk.add(seq)
        body = json.loads(payload)
        if body["seq"] != seq or body["epoch"] != epoch:
            problems.append(f"message {seq} holds seq {body['seq']} / epoch {body['epoch']}")
        if kind == "telemetry":
            values += [r["value"] for r in body["readings"]]
            if seq in sealed and len(body["readings"]) != sealed[seq]:
                problems.append(f"message {seq} has {len(body['readings'])} readings, sealed {sealed[seq]}")
    values += pending
    if values != sorted(values) or len(set(values)) != len(values):
        problems.append("readings out of order or duplicated")
    # readings in messages the writer deleted (acknowledged by the "broker") may be gone; the
    # counter's values are sealed in order, so the k-th telemetry message holds the next n values
    may_go: set[float] = set()
    first = 0
    for seq in sorted(sealed):
        if seq in deleted:
            may_go.update(float(v) for v in range(first, first + sealed[seq]))
        first += sealed[seq]
    have = set(values)
    missing = [v for v in range(acked_reading + 1) if float(v) not in have and float(v) not in may_go]
    if missing:
        problems.append(f"{len(missing)} acknowledged readings lost (last acknowledged {acked_reading})")
    lost_msgs = sorted((set(sealed) | events) - seqs_on_disk - deleted)
    if lost_msgs:
        problems.append(f"acknowledged messages lost: {lost_msgs[:10]}")
    next_seq = int(meta.get("next_seq", "0"))
    if next_seq <= max(set(sealed) | events, default=-1):
        problems.append(f"next_seq {next_seq} would reuse an acknowledged seq")
    return problems


def test_power_cut_keeps_every_acknowledged_reading(image: Path, tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("ELDERCARE_POWERLOSS_SEED", time.time_ns() % 10_000)))
    for cut in range(6):
        work = tmp_path / f"cut{cut}"
        work.mkdir()
        lines, snapshot = _power_cut(image, work, "full", rng)
        assert sum(1 for x in lines if x[0] == "R") >= 20
        problems = _check_after_reboot(lines, snapshot, work)
        assert not problems, f"cut {cut}: {problems}"
        snapshot.unlink()


def test_the_harness_catches_commits_that_were_not_fsynced(image: Path, tmp_path: Path) -> None:
    """Control: with nothing fsynced (``synchronous=normal``, no checkpoint) acknowledged readings go.

    Whether a cut finds unsynced pages depends on the kernel's writeback at that instant (a busy
    machine once wrote them all back before each of 3 cuts), so up to 8 cuts, stopping at the first
    loss."""
    rng = random.Random(7)
    losses: list[str] = []
    for cut in range(8):
        work = tmp_path / f"cut{cut}"
        work.mkdir()
        lines, snapshot = _power_cut(image, work, "normal", rng)
        losses += [p for p in _check_after_reboot(lines, snapshot, work) if "lost" in p]
        snapshot.unlink()
        if losses:
            break
    assert losses, "unsynced commits survived every cut: the harness does not simulate power loss"
