"""Signed messages on the events topic (contract section 8): the scheme, shared by the API, the worker,
the simulator and any integrator. Pure: the standard library only.

A message is signed with HMAC-SHA256 over a canonical string that binds who signs (the key id), the
Kafka message key, the actor the API vouches for (empty for an integrator) and a SHA-256 of the value::

    v1 \\n <key id> \\n <kafka key> \\n <actor> \\n <hex sha256 of the value>

The headers are ``trace-key-id: <key id>``, ``trace-signature: v1=<base64 of the HMAC>`` and, on messages
the API produced, ``trace-actor: staff | <operator code>``. An integrator's HMAC key is its secret exactly
as the registration answer shows it, as ASCII bytes.

The topic and the partition are not signed: a copy of a signed message is the same event (the same
``event_id`` and bytes), which the worker stores once, wherever it is produced.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

VERSION = "v1"
KEY_ID_HEADER = "trace-key-id"
SIGNATURE_HEADER = "trace-signature"
ACTOR_HEADER = "trace-actor"
# Informational only: the worker trusts the signature, never this header.
SOURCE_HEADER = "trace-source"

API_KEY_ID = "api"  # reserved: the key id of the messages the API produces
STAFF_ACTOR = "staff"  # the API's actor for a regulator or admin key

_SIGNED_HEADERS = (KEY_ID_HEADER, SIGNATURE_HEADER, ACTOR_HEADER)
MAX_FIELD = 200  # key ids, Kafka keys and actors longer than this are not ours


class SigningError(ValueError):
    """A field that cannot be signed unambiguously (empty key id, a newline, too long)."""


def _field(name: str, value: bytes, *, empty_ok: bool) -> bytes:
    if (not value and not empty_ok) or b"\n" in value or len(value) > MAX_FIELD:
        raise SigningError(f"{name} must be 1-{MAX_FIELD} bytes without a newline")
    return value


def _bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


def canonical(key_id: str, kafka_key: bytes | None, value: bytes | None, actor: str = "") -> bytes:
    """The bytes that are signed. Raises SigningError for a field that would make it ambiguous."""
    return b"\n".join(
        (
            VERSION.encode(),
            _field("key id", key_id.encode(), empty_ok=False),
            _field("kafka key", kafka_key or b"", empty_ok=True),
            _field("actor", actor.encode(), empty_ok=True),
            hashlib.sha256(value or b"").hexdigest().encode(),
        )
    )


def signature(secret: str | bytes, key_id: str, kafka_key: bytes | None, value: bytes | None, actor: str = "") -> str:
    """The value of the ``trace-signature`` header: ``v1=<base64 of HMAC-SHA256(secret, canonical)>``."""
    digest = hmac.new(_bytes(secret), canonical(key_id, kafka_key, value, actor), hashlib.sha256).digest()
    return f"{VERSION}={base64.b64encode(digest).decode()}"


def sign_headers(
    key_id: str, secret: str | bytes, kafka_key: bytes | None, value: bytes | None, *, actor: str | None = None
) -> list[tuple[str, bytes]]:
    """The headers to put on a message produced with ``kafka_key`` and ``value``."""
    headers = [(KEY_ID_HEADER, key_id.encode())]
    if actor is not None:
        headers.append((ACTOR_HEADER, actor.encode()))
    headers.append((SIGNATURE_HEADER, signature(secret, key_id, kafka_key, value, actor or "").encode()))
    return headers


@dataclass(frozen=True)
class Claim:
    """What a message's headers claim: who signed it, for whom (API messages), and the HMAC."""

    key_id: str
    actor: str
    mac: bytes


def read_claim(headers: Iterable[tuple[str, bytes]]) -> Claim | str:
    """The claim of a message's headers, or why there is none (a short reason for the dead letter)."""
    seen: dict[str, bytes] = {}
    for name, value in headers:
        if name in _SIGNED_HEADERS:
            if name in seen:  # two readers could pick different copies: refuse rather than choose
                return f"the header {name} appears more than once"
            seen[name] = value
    if KEY_ID_HEADER not in seen or SIGNATURE_HEADER not in seen:
        return f"the message is not signed (headers {KEY_ID_HEADER} and {SIGNATURE_HEADER})"
    try:
        key_id = seen[KEY_ID_HEADER].decode("ascii")
        actor = seen.get(ACTOR_HEADER, b"").decode("ascii")
        scheme, _, encoded = seen[SIGNATURE_HEADER].decode("ascii").partition("=")
    except UnicodeDecodeError:
        return "the signature headers are not ASCII"
    if scheme != VERSION:
        return f"{SIGNATURE_HEADER} must read {VERSION}=<base64>"
    try:
        mac = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        return f"{SIGNATURE_HEADER} is not base64"
    if len(mac) != hashlib.sha256().digest_size or not key_id or len(key_id) > MAX_FIELD:
        return "the signature headers are malformed"
    return Claim(key_id=key_id, actor=actor, mac=mac)


def verify(secret: str | bytes, claim: Claim, kafka_key: bytes | None, value: bytes | None) -> bool:
    """Does the claim's HMAC match this key and value under ``secret``? Constant-time."""
    try:
        expected = canonical(claim.key_id, kafka_key, value, claim.actor)
    except SigningError:
        return False
    return hmac.compare_digest(hmac.new(_bytes(secret), expected, hashlib.sha256).digest(), claim.mac)
