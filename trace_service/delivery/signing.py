"""Webhook secrets and signatures in the Standard Webhooks form (contract section 9). Pure: no I/O.

A subscription's secret reads ``whsec_<base64 of 32 bytes>``. The deliverer must sign every batch with it, so it
cannot be kept as a one-way hash like an API key. It is derived instead, as integrators' secrets are
(:mod:`trace_service.access.keys`): ``HMAC-SHA256(signing master, "webhook" + id + salt)`` with a random salt
stored in the subscription's row. The database alone never yields a secret, nothing reversible is stored, and
no further encryption key has to be managed; the price is that changing ``TRACE_SIGNING_SECRET`` changes every
subscription's secret (as it does every integrator's).

A delivery carries ``webhook-id`` (the batch's id, the same on every retry of the batch), ``webhook-timestamp``
(unix seconds of this attempt) and ``webhook-signature: v1,<base64 of HMAC-SHA256(key, "<id>.<timestamp>.<body>")>``
where ``key`` is the base64-decoded part of the secret after ``whsec_``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

PREFIX = "whsec_"
SUBSCRIPTION_PREFIX = "sub_"
MESSAGE_PREFIX = "msg_"
_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"


def new_subscription_id() -> str:
    return SUBSCRIPTION_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(16))


def new_delivery_id() -> str:
    """A batch's ``webhook-id``: 120 random bits, so a receiver may deduplicate on it."""
    return MESSAGE_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(24))


def new_salt() -> bytes:
    return secrets.token_bytes(16)


def secret_key(master: bytes, subscription_id: str, salt: bytes) -> bytes:
    """The HMAC key of a subscription's signatures (32 bytes)."""
    return hmac.new(master, b"webhook\n" + subscription_id.encode() + b"\n" + salt, hashlib.sha256).digest()


def secret(master: bytes, subscription_id: str, salt: bytes) -> str:
    """The secret as shown to the subscriber once: ``whsec_`` and the standard base64 of the key."""
    return PREFIX + base64.b64encode(secret_key(master, subscription_id, salt)).decode()


def signature(key: bytes, delivery_id: str, timestamp: int, body: bytes) -> str:
    signed = delivery_id.encode() + b"." + str(timestamp).encode() + b"." + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def headers(key: bytes, delivery_id: str, timestamp: int, body: bytes) -> list[tuple[bytes, bytes]]:
    """The Standard Webhooks headers of one attempt."""
    return [
        (b"webhook-id", delivery_id.encode()),
        (b"webhook-timestamp", str(timestamp).encode()),
        (b"webhook-signature", signature(key, delivery_id, timestamp, body).encode()),
    ]
