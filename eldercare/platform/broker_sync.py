"""Rewrite the broker's password and ACL files from the registry, then ask Mosquitto to reload.

Called after a gateway is provisioned, rotated or deleted, at API start and by
``eldercare broker sync``. The database is the source of truth: a failed write or reload is
logged and repaired by the next sync, never a reason to refuse the registry change.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from eldercare.config import Settings
from eldercare.platform import broker_auth as ba
from eldercare.platform.repo import registry
from eldercare.platform.repo.connections import Conn

log = logging.getLogger(__name__)


@dataclass
class SyncResult:
    """What a sync did, for the CLI and the logs."""

    accounts: int = 0
    changed: bool = False
    reloaded: list[str] = field(default_factory=list)
    reload_error: str | None = None  # the files were written but the broker was not told
    skipped: dict[str, str] = field(default_factory=dict)


def enabled(settings: Settings) -> bool:
    """The platform manages the broker's files only when told where they are."""
    return settings.broker_password_file is not None and settings.broker_acl_file is not None


def service_accounts(settings: Settings, previous: dict[str, str]) -> list[ba.Account]:
    """The accounts of configured services (hashes kept while the passwords are unchanged)."""
    root = settings.mqtt_topic_root
    makers = (
        (ba.INGEST_USER, settings.broker_ingest_password, ba.ingest_account),
        (ba.PLATFORM_USER, settings.broker_platform_password, ba.platform_account),
        (ba.SIMULATOR_USER, settings.broker_simulator_password, ba.simulator_account),
    )
    return [
        make(ba.reuse_or_hash(secret.get_secret_value(), previous.get(user)), root)
        for user, secret, make in makers
        if secret is not None
    ]


def write_files(
    settings: Settings, gateways: list[dict[str, Any]], *, force_reload: bool = False
) -> SyncResult:
    """Render and write both files; reload the broker if either changed (blocking: run in a thread)."""
    pw_file, acl_file = settings.broker_password_file, settings.broker_acl_file
    assert pw_file is not None and acl_file is not None
    root, by_pattern = settings.mqtt_topic_root, settings.broker_acl_style == "pattern"
    accounts = service_accounts(settings, ba.read_hashes(pw_file))
    skipped = {}
    for g in gateways:
        user, hashed = g["mqtt_username"], g["broker_password_hash"]
        if hashed is None:
            skipped[user] = "no broker credential yet: rotate its credentials"
        elif by_pattern and user != g["id"]:
            skipped[user] = f"the ACL patterns need the username to be the gateway id {g['id']}"
        elif by_pattern:
            accounts.append(ba.Account(user, hashed))
        else:
            accounts.append(
                ba.gateway_account(
                    username=user, site=g["site_id"], gateway=g["id"], password_hash=hashed, root=root
                )
            )
    rendered = ba.render(accounts, ba.gateway_patterns(root) if by_pattern else ())
    result = SyncResult(accounts=len(rendered.users), skipped={**skipped, **rendered.skipped})
    # ACL first: a reload between the two writes then never grants more than either old or new files
    result.changed = ba.write_atomic(acl_file, rendered.acl) | ba.write_atomic(pw_file, rendered.passwords)
    if result.changed or force_reload:
        try:
            result.reloaded = reload(settings, ba.digest(rendered))
        except ba.BrokerAuthError as exc:
            result.reload_error = str(exc)
    return result


def reload(settings: Settings, digest: str) -> list[str]:
    """Every configured way of reloading Mosquitto; raises :class:`BrokerAuthError` if one fails."""
    done = []
    if settings.broker_reload_stamp_file is not None:
        ba.touch_stamp(settings.broker_reload_stamp_file, digest)
        done.append(f"stamp {settings.broker_reload_stamp_file}")
    if settings.broker_pid_file is not None:
        pid = ba.signal_pid_file(settings.broker_pid_file)
        done.append(f"SIGHUP pid {pid}")
    return done


async def sync(conn: Conn, settings: Settings, *, force_reload: bool = False) -> SyncResult:
    """Read the registry and write the files under one advisory lock (one writer across replicas)."""
    async with conn.transaction():
        await registry.lock_broker_files(conn)
        gateways = await registry.broker_gateways(conn)
        result = await asyncio.to_thread(write_files, settings, gateways, force_reload=force_reload)
    log.info(
        "broker files: %s accounts, changed=%s, reload=%s, %s left out (e.g. %s)",
        result.accounts,
        result.changed,
        result.reloaded,
        len(result.skipped),
        sorted(result.skipped)[:3],
    )
    if result.reload_error:
        log.error(
            "broker files written but not reloaded (run `eldercare broker sync`): %s", result.reload_error
        )
    return result


async def sync_quietly(conn: Conn, settings: Settings) -> bool | None:
    """For request handlers: None if not managed, else whether the broker got the change."""
    if not enabled(settings):
        return None
    try:
        result = await sync(conn, settings)
    except OSError as exc:
        log.error("broker files not updated (run `eldercare broker sync`): %s", exc)
        return False
    return result.reload_error is None
