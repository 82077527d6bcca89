"""Passwords (argon2), short-lived JWT access tokens, rotating refresh tokens, login rate limit.

Refresh tokens are opaque random strings stored only as SHA-256 hashes; each use revokes the token
and issues a new one, and presenting an already-used token revokes every token of the user (a
stolen token stops working for the thief as soon as the owner refreshes). The rate limit counts
failed attempts in the database, so it holds however many API replicas run.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import math
import secrets
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Request

from eldercare.config import Settings
from eldercare.platform.errors import ApiError
from eldercare.platform.repo import audit as audit_repo
from eldercare.platform.repo import users as users_repo
from eldercare.platform.repo.connections import Conn, Pool

T = TypeVar("T")
ALGORITHM = "HS256"
RATE_WINDOW = timedelta(minutes=15)
FREE_FAILURES = 5  # per (username, address) before the backoff starts
BACKOFF_BASE = timedelta(seconds=30)
MAX_FAILURES_PER_IP = 30  # any usernames, per address and window

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("not a real password")  # verify against it so unknown users take as long


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


class HashPool:
    """argon2 on a few threads of its own, with a bounded queue (issue 27, item 5).

    argon2 is deliberately slow (~50 ms and 64 MiB each): never on the event loop, and never more
    at once than ``workers``, so a sign-in storm cannot take every core and the memory from the
    rest of the API. Past ``workers + queue`` calls in flight it refuses at once: 429 with a
    Retry-After estimated from the queue.
    """

    SECONDS_PER_HASH = 0.1

    def __init__(self, workers: int, queue: int) -> None:
        self.workers = workers
        self.limit = workers + queue
        self.in_flight = 0
        self.peak = 0  # most calls in flight at once, and calls refused: for benchmarks and operators
        self.refused = 0
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="argon2")

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Admission for one caller (429 at once past the limit), held while it works.

        A sign-in holds its slot from its first database query to its last, so a storm is refused
        before it queues on the database connections every other request needs.
        """
        if self.in_flight >= self.limit:
            self.refused += 1
            wait = math.ceil(self.in_flight * self.SECONDS_PER_HASH / self.workers) + 1
            raise ApiError(429, "auth.busy", headers={"Retry-After": str(wait)}, seconds=wait)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            yield
        finally:
            self.in_flight -= 1

    async def execute(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the pool's threads (the caller holds a :meth:`slot`)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        async with self.slot():
            return await self.execute(fn, *args)


_pools: dict[tuple[int, int], HashPool] = {}


def hash_pool(settings: Settings | None = None) -> HashPool:
    """The process's pool for these settings (one per size, shared by every app in the process)."""
    workers = settings.password_hash_workers if settings else 2
    queue = settings.password_hash_queue if settings else 32
    key = (workers, queue)
    if key not in _pools:
        _pools[key] = HashPool(workers, queue)
    return _pools[key]


async def hash_password_async(password: str, settings: Settings | None = None) -> str:
    return await hash_pool(settings).run(hash_password, password)


async def verify_password_async(password_hash: str, password: str, settings: Settings | None = None) -> bool:
    return await hash_pool(settings).run(verify_password, password_hash, password)


def _signing_key(settings: Settings) -> bytes:
    """A 256-bit HMAC key derived from the configured secret (any length of secret works)."""
    return hashlib.sha256(b"eldercare-jwt:" + settings.secret_key.get_secret_value().encode()).digest()


def create_access_token(
    settings: Settings, *, user_id: int, role: str, version: int = 0, now: datetime | None = None
) -> str:
    """A signed access token; ``version`` is the user's token version (revoked when it moves on)."""
    now = now or datetime.now(UTC)
    claims = {
        "sub": str(user_id),
        "role": role,
        "ver": version,
        "type": "access",
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=settings.access_token_minutes)).timestamp()),
    }
    return jwt.encode(claims, _signing_key(settings), algorithm=ALGORITHM)


def decode_access_token(settings: Settings, token: str) -> dict[str, Any]:
    """The token's claims; raises 401 if it is forged, expired or not an access token."""
    try:
        claims = jwt.decode(token, _signing_key(settings), algorithms=[ALGORITHM])
    except jwt.PyJWTError:
        raise ApiError(401, "auth.bad_token", headers={"WWW-Authenticate": "Bearer"}) from None
    if claims.get("type") != "access" or not str(claims.get("sub", "")).isdigit():
        raise ApiError(401, "auth.bad_token", headers={"WWW-Authenticate": "Bearer"})
    return claims


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int


async def authenticate(conn: Conn, settings: Settings, token: str) -> tuple[dict[str, Any], int]:
    """The active user an access token names and the token's expiry (Unix seconds); 401 if the
    token is forged, expired, for a disabled account, or revoked (logout, password change)."""
    claims = decode_access_token(settings, token)
    row = await users_repo.get_user(conn, user_id=int(claims["sub"]))
    if row is None or not row["active"] or claims.get("ver") != row["token_version"]:
        raise ApiError(401, "auth.bad_token", headers={"WWW-Authenticate": "Bearer"})
    return row, int(claims["exp"])


async def issue_tokens(conn: Conn, settings: Settings, *, user_id: int, role: str) -> TokenPair:
    refresh = secrets.token_urlsafe(32)
    await users_repo.store_refresh_token(
        conn,
        user_id=user_id,
        token_hash=hash_token(refresh),
        expires_at=datetime.now(UTC) + timedelta(days=settings.refresh_token_days),
    )
    user = await users_repo.get_user(conn, user_id=user_id)
    version = int(user["token_version"]) if user else 0
    access = create_access_token(settings, user_id=user_id, role=role, version=version)
    return TokenPair(access, refresh, settings.access_token_minutes * 60)


def client_address(request: Request, settings: Settings) -> str | None:
    """The caller's address: the peer, or the ``X-Forwarded-For`` hop just before the configured
    proxies when (and only when) the peer is one of them (``ELDERCARE_TRUSTED_PROXIES``)."""
    peer = request.client.host if request.client else None
    nets = settings.trusted_networks
    if peer is None or not _in(peer, nets):
        return peer
    hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _valid_ip(hop):
            return peer  # a forged or garbled hop: fall back to what we know
        if not _in(hop, nets):
            return hop
    return hops[0] if hops else peer


def _valid_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _in(address: str, nets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in nets)


def backoff(failures: int) -> timedelta:
    """How long a (username, address) pair waits after its last failure: none for the first
    :data:`FREE_FAILURES`, then 30 s doubling per failure, at most :data:`RATE_WINDOW`."""
    if failures < FREE_FAILURES:
        return timedelta(0)
    return min(BACKOFF_BASE * 2 ** min(failures - FREE_FAILURES, 16), RATE_WINDOW)


async def check_throttle(
    conn: Conn, *, username: str, client_ip: str | None, now: datetime | None = None
) -> None:
    """429 with Retry-After when this username from this address, or this address, must wait.

    Per pair, not per username: a stranger's wrong guesses slow the stranger's own address, never
    the owner signing in from another one. The address limit stops one address trying many names.
    """
    now = now or datetime.now(UTC)
    f = await users_repo.login_failures(conn, username=username, client_ip=client_ip, since=now - RATE_WINDOW)
    waits = []
    if f["pair_failures"] and f["pair_last"] is not None:
        waits.append(f["pair_last"] + backoff(int(f["pair_failures"])) - now)
    if int(f["ip_failures"]) >= MAX_FAILURES_PER_IP and f["ip_oldest"] is not None:
        waits.append(f["ip_oldest"] + RATE_WINDOW - now)
    wait = max(waits, default=timedelta(0))
    if wait > timedelta(0):
        seconds = math.ceil(wait.total_seconds())
        raise ApiError(429, "auth.rate_limited", headers={"Retry-After": str(seconds)}, seconds=seconds)


async def login(
    pool: Pool,
    settings: Settings,
    *,
    username: str,
    password: str,
    client_ip: str | None,
) -> TokenPair:
    """Check the throttle and the password, record the attempt (and audit it), issue a token pair.

    Takes the pool, not a connection: no database connection is held while argon2 runs, so a
    sign-in storm waits for the hashing pool (or gets 429) without taking the connections every
    other request needs.
    """
    hashing = hash_pool(settings)
    async with hashing.slot():  # 429 here costs no database work at all
        return await _login(
            pool, hashing, settings, username=username, password=password, client_ip=client_ip
        )


async def _login(
    pool: Pool,
    hashing: HashPool,
    settings: Settings,
    *,
    username: str,
    password: str,
    client_ip: str | None,
) -> TokenPair:
    where = {"ip": client_ip}
    async with pool.connection() as conn:
        try:
            await check_throttle(conn, username=username, client_ip=client_ip)
        except ApiError:
            await _audit_sign_in(conn, None, username, "sign_in:refused", where)
            raise
        user = await users_repo.get_login(conn, username=username)
    ok = await hashing.execute(verify_password, user["password_hash"] if user else _DUMMY_HASH, password)
    ok = ok and user is not None
    async with pool.connection() as conn:
        await users_repo.record_login_attempt(conn, username=username, client_ip=client_ip, ok=ok)
        if not ok or user is None:
            await _audit_sign_in(conn, user["id"] if user else None, username, "sign_in:failed", where)
            raise ApiError(401, "auth.bad_credentials", headers={"WWW-Authenticate": "Bearer"})
        if not user["active"]:
            await _audit_sign_in(conn, user["id"], username, "sign_in:inactive", where)
            raise ApiError(403, "auth.inactive")
        await _audit_sign_in(conn, user["id"], username, "sign_in", where)
        return await issue_tokens(conn, settings, user_id=user["id"], role=user["role"])


async def _audit_sign_in(
    conn: Conn, user_id: int | None, username: str, action: str, detail: dict[str, Any]
) -> None:
    await audit_repo.write(
        conn,
        user_id=user_id,
        username=username[:200],
        action=action,
        route="POST /api/v1/auth/token",
        detail=detail,
    )


async def refresh(conn: Conn, settings: Settings, *, refresh_token: str) -> TokenPair:
    user_id, valid = await users_repo.use_refresh_token(conn, token_hash=hash_token(refresh_token))
    if user_id is None or not valid:
        raise ApiError(401, "auth.bad_refresh")
    user = await users_repo.get_user(conn, user_id=user_id)
    if user is None or not user["active"]:
        raise ApiError(401, "auth.bad_refresh")
    return await issue_tokens(conn, settings, user_id=user_id, role=user["role"])


# Webhook targets --------------------------------------------------------------------------------

LOCAL_NAMES = ("localhost", ".localhost", ".local", ".localdomain", ".internal", ".lan", ".home.arpa")


def _internal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return bool(
        ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast
        or ip.is_unspecified
    )  # fmt: skip


async def webhook_problem(url: str, settings: Settings, *, resolve_timeout_s: float = 2.0) -> str | None:
    """Why ``url`` may not receive webhooks (``error.webhook.<why>`` words it), or None.

    Refused unless ``ELDERCARE_WEBHOOK_ALLOW_PRIVATE``: addresses in private, loopback, link-local
    and other internal ranges (the webhook would let an admin's typo, or a stolen admin account,
    make the platform probe its own network, e.g. ``http://127.0.0.1:5432/``), local-only names,
    and names that resolve to such addresses. A name that does not resolve now is accepted; the
    delivery worker must check the address it connects to as well (DNS can change).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "not_http"
    if parts.username or parts.password:
        return "credentials"
    if settings.webhook_allow_private:
        return None
    host = parts.hostname.lower().rstrip(".")
    try:
        literal: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        return "internal" if _internal(literal) else None
    if host == "localhost" or host.endswith(LOCAL_NAMES) or "." not in host:
        return "local_host"
    try:
        infos = await asyncio.wait_for(
            asyncio.get_running_loop().getaddrinfo(host, parts.port or 443), timeout=resolve_timeout_s
        )
    except (OSError, TimeoutError):
        return None
    for info in infos:
        if _internal(ipaddress.ip_address(info[4][0])):
            return "resolves_internal"
    return None
