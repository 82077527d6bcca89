"""Passwords (argon2), short-lived JWT access tokens, rotating refresh tokens, login rate limit.

Refresh tokens are opaque random strings stored only as SHA-256 hashes; each use revokes the token
and issues a new one, and presenting an already-used token revokes every token of the user (a
stolen token stops working for the thief as soon as the owner refreshes). The rate limit counts
failed attempts in the database, so it holds however many API replicas run.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from psycopg import AsyncConnection

from eldercare.config import Settings
from eldercare.platform.errors import ApiError
from eldercare.platform.repo import users as users_repo

T = TypeVar("T")
ALGORITHM = "HS256"
RATE_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_USER = 5
MAX_FAILURES_PER_IP = 30

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
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="argon2")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if self.in_flight >= self.limit:
            wait = math.ceil(self.in_flight * self.SECONDS_PER_HASH / self.workers) + 1
            raise ApiError(429, "auth.busy", headers={"Retry-After": str(wait)}, seconds=wait)
        self.in_flight += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        finally:
            self.in_flight -= 1


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


def create_access_token(settings: Settings, *, user_id: int, role: str, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    claims = {
        "sub": str(user_id),
        "role": role,
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


async def issue_tokens(
    conn: AsyncConnection[Any], settings: Settings, *, user_id: int, role: str
) -> TokenPair:
    refresh = secrets.token_urlsafe(32)
    await users_repo.store_refresh_token(
        conn,
        user_id=user_id,
        token_hash=hash_token(refresh),
        expires_at=datetime.now(UTC) + timedelta(days=settings.refresh_token_days),
    )
    access = create_access_token(settings, user_id=user_id, role=role)
    return TokenPair(access, refresh, settings.access_token_minutes * 60)


async def login(
    conn: AsyncConnection[Any], settings: Settings, *, username: str, password: str, client_ip: str | None
) -> TokenPair:
    """Check the rate limit and the password, record the attempt, issue a token pair."""
    now = datetime.now(UTC)
    by_user, by_ip, oldest = await users_repo.login_failures(
        conn, username=username, client_ip=client_ip, since=now - RATE_WINDOW
    )
    if by_user >= MAX_FAILURES_PER_USER or by_ip >= MAX_FAILURES_PER_IP:
        wait = int(((oldest or now) + RATE_WINDOW - now).total_seconds()) + 1
        raise ApiError(429, "auth.rate_limited", headers={"Retry-After": str(wait)}, seconds=wait)
    user = await users_repo.get_login(conn, username=username)
    ok = await verify_password_async(user["password_hash"] if user else _DUMMY_HASH, password, settings)
    ok = ok and user is not None
    await users_repo.record_login_attempt(conn, username=username, client_ip=client_ip, ok=ok)
    if not ok or user is None:
        raise ApiError(401, "auth.bad_credentials", headers={"WWW-Authenticate": "Bearer"})
    if not user["active"]:
        raise ApiError(403, "auth.inactive")
    return await issue_tokens(conn, settings, user_id=user["id"], role=user["role"])


async def refresh(conn: AsyncConnection[Any], settings: Settings, *, refresh_token: str) -> TokenPair:
    user_id, valid = await users_repo.use_refresh_token(conn, token_hash=hash_token(refresh_token))
    if user_id is None or not valid:
        raise ApiError(401, "auth.bad_refresh")
    user = await users_repo.get_user(conn, user_id=user_id)
    if user is None or not user["active"]:
        raise ApiError(401, "auth.bad_refresh")
    return await issue_tokens(conn, settings, user_id=user_id, role=user["role"])
