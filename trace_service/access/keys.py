"""API keys and the secrets that sign Kafka messages: generation, parsing and keyed hashing. Pure
functions, no I/O.

A key reads ``trk.<key_id>.<secret>``. The key id is public (it names the key in logs and in
``DELETE /v1/keys/{key_id}``); only an HMAC-SHA256 of the secret, keyed with the server's pepper,
is stored. The secret carries 256 bits from the OS's CSPRNG.

Signing secrets (contract section 8) all derive from one master secret, ``TRACE_SIGNING_SECRET`` (or,
when that is unset, a value derived from ``TRACE_KEY_PEPPER``): the API's own, and each integrator's as
``HMAC(master, key_id + salt)`` with a random salt stored in its row. The worker must recompute an
integrator's secret to check its HMACs, so the secret cannot be a one-way hash like an API key's; deriving
it means the database alone never yields a secret (and neither does the master alone), nothing
reversible is stored, and no encryption key has to be managed besides the master.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

PREFIX = "trk"
INTEGRATOR_PREFIX = "int"
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


# -- signing secrets ---------------------------------------------------------------------------------


def signing_master(signing_secret: str, pepper: str) -> bytes | None:
    """The master of every signing secret; None when neither setting is there (nothing may be signed)."""
    if signing_secret:
        return signing_secret.encode()
    if pepper:
        # A separate derivation, so a signature never doubles as a stored key hash or the other way round.
        return hmac.new(pepper.encode(), b"trace-service signing master v1", hashlib.sha256).digest()
    return None


def api_signing_secret(master: bytes) -> bytes:
    """The HMAC key of the messages the API produces (key id ``api``)."""
    return hmac.new(master, b"api", hashlib.sha256).digest()


def new_integrator_id() -> str:
    return f"{INTEGRATOR_PREFIX}-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))


def new_salt() -> bytes:
    return secrets.token_bytes(16)


def integrator_secret(master: bytes, key_id: str, salt: bytes) -> str:
    """An integrator's secret, as shown to it once: URL-safe base64 of 256 bits, used as ASCII bytes."""
    digest = hmac.new(master, b"integrator\n" + key_id.encode() + b"\n" + salt, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
