"""A stable, unique worker slot for replicas started from one configuration (compose ``replicas``).

Replicas of one service share their environment, so ``ELDERCARE_INGEST_CLIENT_ID`` cannot tell them
apart. The container's hostname would, but it is the container id, new each time the container is
recreated (``docker compose up`` after a new image): the old client id's persistent session would
stay a member of the shared subscription, receive its share of every message, and lose it when the
session expires. So each replica instead takes the lowest free slot in a directory the replicas
share (a volume): an exclusive ``flock`` on ``slot-<n>.lock``, held for the life of the process and
dropped by the kernel when the process dies however it dies. A recreated replica takes a slot a
stopped one left and resumes that one's session, exactly like a restarted ``--workers`` process.

``flock`` needs the replicas on one host (a local volume, not NFS); across machines give each
worker its own ``ELDERCARE_INGEST_CLIENT_ID`` (e.g. a StatefulSet ordinal) instead.
"""

from __future__ import annotations

import fcntl
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from eldercare.ingest.errors import IngestError

MAX_SLOTS = 256


class NoFreeSlot(IngestError):
    """Every slot in the directory is held by a running worker (or the directory is unusable)."""


@dataclass
class Slot:
    """A held slot; the lock lasts until :meth:`release` or the end of the process."""

    index: int
    path: Path
    fd: int

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = -1


def claim(directory: Path, *, limit: int = MAX_SLOTS) -> Slot:
    """Lock and return the lowest free slot in ``directory`` (created if missing)."""
    for index in range(limit):
        slot = _try(directory, index)
        if slot is not None:
            return slot
    msg = f"all {limit} ingest slots in {directory} are held by running workers"
    raise NoFreeSlot(msg)


def hold(directory: Path, index: int) -> Slot:
    """Lock slot ``index`` (``eldercare ingest retire``: never the session of a running worker)."""
    slot = _try(directory, index)
    if slot is None:
        msg = f"ingest slot {index} in {directory} is held by a running worker"
        raise NoFreeSlot(msg)
    return slot


def _try(directory: Path, index: int) -> Slot | None:
    path = directory / f"slot-{index}.lock"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        msg = f"ingest slot {path}: {exc}"
        raise NoFreeSlot(msg) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    # who holds it, for an operator reading the file; the lock, not this text, is the truth
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{socket.gethostname()} {os.getpid()}\n".encode(), 0)
    return Slot(index, path, fd)
