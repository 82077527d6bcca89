"""Mosquitto's password and ACL files, generated from the registry (pure logic plus file writing).

Mosquitto 2 reads a ``password_file`` of ``username:$7$<iterations>$<salt>$<hash>`` lines
(PBKDF2-HMAC-SHA512, what ``mosquitto_passwd`` writes by default) and an ``acl_file`` of
``user`` blocks; it re-reads both on SIGHUP and drops connected clients whose credential is
gone. The registry stores each gateway's hash in that format, so these files can always be
rebuilt from the database alone: :mod:`eldercare.platform.broker_sync` does that.

Access follows wire protocol v1 (docs/protocol.md section 3): a gateway may publish only its own
``telemetry``, ``event`` and ``status`` and read only its own ``config`` and ``ack`` (what ingest
has stored, the end-to-end acknowledgement); ingest reads every gateway's uplink and writes the
``ack`` topics; nothing is open to anonymous clients (no topic line precedes the first ``user``).
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from eldercare.broker_hash import is_hash, mosquitto_hash, verify

FILE_MODE = 0o640  # never world-readable (Mosquitto warns, later versions refuse)

# Service accounts: fixed names, so a gateway can never be provisioned under one of them.
INGEST_USER = "eldercare-ingest"
PLATFORM_USER = "eldercare-platform"
SIMULATOR_USER = "eldercare-simulator"
SERVICE_USERS = frozenset({INGEST_USER, PLATFORM_USER, SIMULATOR_USER})

# ':' ends the username in a password file; whitespace or wildcards would break ACL lines
_BAD_NAME = re.compile(r"[:\s#+]")


class BrokerAuthError(Exception):
    """The broker files could not be written or the broker could not be told to reload."""


def valid_username(name: str) -> bool:
    """Whether ``name`` can stand in Mosquitto's password and ACL files."""
    return bool(name) and _BAD_NAME.search(name) is None


@dataclass(frozen=True)
class Account:
    """One broker user: its hash and the topics it may read (subscribe) and write (publish)."""

    username: str
    password_hash: str
    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()


def gateway_account(*, username: str, site: str, gateway: str, password_hash: str, root: str) -> Account:
    """Publish its own telemetry, event and status (also its Will); read its own config and ack."""
    prefix = f"{root}/{site}/{gateway}"
    return Account(
        username,
        password_hash,
        read=(f"{prefix}/config", f"{prefix}/ack"),
        write=(f"{prefix}/telemetry", f"{prefix}/event", f"{prefix}/status"),
    )


def gateway_patterns(root: str) -> tuple[str, ...]:
    """The same rights for every gateway at once, for large fleets (``broker_acl_style = "pattern"``).

    ``%u`` is the username, which is the gateway id; the site level is a wildcard, so the broker
    only stops a gateway from publishing as another gateway, and ingest refuses (dead-letters) a
    message under a site the gateway is not registered to. Mosquitto 2.0 parses per-user ACL
    blocks in quadratic time (bench/broker_auth.py: 5,000 gateways stall every reload ~1.4 s),
    patterns in constant time.
    """
    uplink = (f"pattern write {root}/+/%u/{kind}" for kind in ("telemetry", "event", "status"))
    return (f"pattern read {root}/+/%u/config", f"pattern read {root}/+/%u/ack", *uplink)


def ingest_account(password_hash: str, root: str) -> Account:
    """Ingest reads everything under the root (its ``$share/<group>/{root}/#`` subscription), so that
    a message on a topic the protocol does not know is dead-lettered rather than never seen, and
    publishes each gateway's retained ``ack`` after its commit."""
    return Account(INGEST_USER, password_hash, read=(f"{root}/#",), write=(f"{root}/+/+/ack",))


def platform_account(password_hash: str, root: str) -> Account:
    """The API publishes retained configs and drives simulations (tester endpoints)."""
    return Account(
        PLATFORM_USER,
        password_hash,
        read=(f"{root}/_sim/ack",),
        write=(f"{root}/+/+/config", f"{root}/_sim/control"),
    )


def simulator_account(password_hash: str, root: str) -> Account:
    """The simulation runner's control connection (its gateways use their own accounts)."""
    return Account(SIMULATOR_USER, password_hash, read=(f"{root}/_sim/control",), write=(f"{root}/_sim/ack",))


@dataclass
class Rendered:
    """Both files' text, and the gateways left out (with why) so callers can report them."""

    passwords: str
    acl: str
    users: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def render(accounts: Iterable[Account], patterns: Iterable[str] = ()) -> Rendered:
    """Password and ACL file text, sorted by username; bad or duplicate names are skipped.

    The first account with a name wins, so pass service accounts first: a gateway can never
    take over a service account's rights. An account without topics gets no ``user`` block
    (its rights, if any, come from ``patterns``).
    """
    seen: dict[str, Account] = {}
    skipped: dict[str, str] = {}
    for a in accounts:
        if not valid_username(a.username):
            skipped[a.username] = "username holds ':', whitespace, '#' or '+'"
        elif a.username in seen:
            skipped[a.username] = "username already taken by another account"
        elif not is_hash(a.password_hash):
            skipped[a.username] = "no Mosquitto ($7$) password hash"
        else:
            seen[a.username] = a
    users = [seen[k] for k in sorted(seen)]
    passwords = "".join(f"{a.username}:{a.password_hash}\n" for a in users)
    blocks = ["# generated by eldercare (eldercare broker sync); edits are overwritten\n"]
    if patterns:
        blocks.append("\n".join(patterns) + "\n")
    for a in users:
        if not a.read and not a.write:
            continue
        lines = [f"user {a.username}"]
        lines += [f"topic read {t}" for t in a.read]
        lines += [f"topic write {t}" for t in a.write]
        blocks.append("\n".join(lines) + "\n")
    return Rendered(passwords, "\n".join(blocks), [a.username for a in users], skipped)


def read_hashes(path: Path) -> dict[str, str]:
    """username -> hash of an existing password file (empty if it does not exist)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    out = {}
    for line in text.splitlines():
        user, sep, hashed = line.partition(":")
        if sep:
            out[user] = hashed
    return out


def reuse_or_hash(password: str, previous: str | None) -> str:
    """Keep a service account's existing hash while it still matches, so unchanged files stay equal."""
    if previous is not None and verify(password, previous):
        return previous
    return mosquitto_hash(password)


def write_atomic(path: Path, text: str, mode: int = FILE_MODE) -> bool:
    """Replace ``path`` by a temporary file in the same directory; False if it already held ``text``.

    The broker may reload at any moment: it must see the old file or the new one, never half.
    """
    try:
        if path.read_text() == text:
            return False
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def signal_pid_file(pid_file: Path) -> int:
    """SIGHUP the process named in a pid file (Mosquitto's ``pid_file``); returns the pid."""
    try:
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError, IndexError) as exc:
        msg = f"cannot signal the broker through {pid_file}: {exc}"
        raise BrokerAuthError(msg) from exc
    return pid


def touch_stamp(stamp_file: Path, digest: str) -> None:
    """Tell a watcher beside the broker (deploy/mosquitto-reload.sh) that the files changed."""
    write_atomic(stamp_file, f"{time.time():.3f} {digest}\n", mode=0o644)


def digest(rendered: Rendered) -> str:
    """A short fingerprint of both files, written into the stamp."""
    h = hashlib.sha256(rendered.passwords.encode() + b"\0" + rendered.acl.encode())
    return h.hexdigest()[:16]
