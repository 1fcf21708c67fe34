"""API keys: generation, parsing and keyed hashing. Pure functions, no I/O.

A key reads ``trk.<key_id>.<secret>``. The key id is public (it names the key in logs and in
``DELETE /v1/keys/{key_id}``); only an HMAC-SHA256 of the secret, keyed with the server's pepper,
is stored. The secret carries 256 bits from the OS's CSPRNG.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

PREFIX = "trk"
_ID_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"


@dataclass(frozen=True)
class NewKey:
    key_id: str
    secret: str

    @property
    def token(self) -> str:
        return f"{PREFIX}.{self.key_id}.{self.secret}"


def generate() -> NewKey:
    key_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))
    return NewKey(key_id=key_id, secret=secrets.token_urlsafe(32))


def parse(token: str) -> tuple[str, str] | None:
    """Split a presented token into (key_id, secret); None when it is not shaped like a key."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != PREFIX or not parts[1] or len(parts[2]) < 32 or len(token) > 200:
        return None
    return parts[1], parts[2]


def hash_secret(secret: str, pepper: str) -> bytes:
    return hmac.new(pepper.encode(), secret.encode(), hashlib.sha256).digest()


def matches(secret: str, stored_hash: bytes, pepper: str) -> bool:
    return hmac.compare_digest(hash_secret(secret, pepper), stored_hash)


def matches_token(presented: str, expected: str) -> bool:
    """Constant-time comparison of a presented bearer token with a configured one."""
    return hmac.compare_digest(presented.encode(), expected.encode())
