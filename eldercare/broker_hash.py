"""Mosquitto's password hash (``$7$``, PBKDF2-SHA512), shared by the platform and the simulators.

A neutral module: the platform writes the broker's password file with it and the simulators seed
their gateways' credentials with it, so neither imports the other (docs/architecture.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

ITERATIONS = 101  # mosquitto_passwd 2.0's default; the passwords are 192 random bits anyway
SALT_BYTES = 12
HASH_PREFIX = "$7$"
_HASH_RE = re.compile(r"\$7\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)\Z")


def mosquitto_hash(password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """``$7$<iterations>$<base64 salt>$<base64 PBKDF2-SHA512>``, as ``mosquitto_passwd -b`` writes."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    b64 = base64.b64encode
    return f"{HASH_PREFIX}{iterations}${b64(salt).decode()}${b64(digest).decode()}"


def is_hash(text: str) -> bool:
    """Whether ``text`` has the shape of a ``$7$`` hash (Mosquitto refuses other entries)."""
    return _HASH_RE.match(text) is not None


def verify(password: str, hashed: str) -> bool:
    """Whether ``password`` matches a ``$7$`` hash (constant-time compare)."""
    m = _HASH_RE.match(hashed)
    if m is None:
        return False
    salt, expected = base64.b64decode(m[2]), base64.b64decode(m[3])
    got = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(m[1]))
    return hmac.compare_digest(got, expected)
