"""Authenticating and authorizing the messages of a batch (contract section 8).

Every message on the events topic carries a signature (:mod:`trace_service.contract.signing`): the API's,
under the reserved key id ``api`` and naming the actor it authenticated, or a registered integrator's.
A message without a valid signature, or from a revoked integrator, is a dead letter ``unauthenticated``;
an authenticated sender reporting for an operator outside its scope, for a suspended operator, or sending
``regulator.*`` without being staff, is a dead letter ``forbidden``. The rules are the API's (contract
section 4): a sender's scope is its operators and every operator registered under them, transitively.

Set-based: one statement per batch reads the integrators named in its headers and the ancestry of the
operators it reports for (:func:`trace_service.access.repository.senders`).

A refused message's ``event_id`` and ``operator`` are claims of whoever produced it. They stay out of the
columns that serve an event's status (only in ``details``) unless the sender is authenticated and the
operator is within its scope: otherwise anyone who can produce to the topic could make a legitimate
pending event read ``rejected`` by sending a forged copy of its id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from trace_service.access import keys
from trace_service.access import repository as access_repo
from trace_service.access.integrators import signing_master
from trace_service.contract import signing
from trace_service.settings import Settings
from trace_service.worker.decode import Actor, Dead, Decoded, refused

log = structlog.get_logger(__name__)

UNAUTHENTICATED = "unauthenticated"
FORBIDDEN = "forbidden"
STAFF_ONLY_PREFIX = "regulator."
ACTIVE = "active"

UNCONFIGURED = (
    "this worker has no signing secret (TRACE_SIGNING_SECRET or TRACE_KEY_PEPPER, the same as the API's) "
    "and cannot check any signature"
)


@dataclass(frozen=True)
class _Refusal:
    code: str
    message: str
    in_scope: bool  # the sender may speak for the envelope's operator: its event_id may serve the status


class _Verifier:
    """Checks claims against the API's secret and the integrators' (derived once per integrator)."""

    def __init__(self, master: bytes, senders: access_repo.Senders) -> None:
        self._master = master
        self._api = keys.api_signing_secret(master)
        self._senders = senders
        self._secrets: dict[str, str] = {}

    def actor(self, claim: signing.Claim, key: bytes | None, value: bytes, *, verified: bool = False) -> Actor | str:
        """The authenticated sender of a message, or why it is not authenticated.

        ``verified``: :class:`ApiMark` already checked the API's HMAC of this key and value with this secret.
        """
        if claim.key_id == signing.API_KEY_ID:
            if not verified and not signing.verify(self._api, claim, key, value):
                return "the signature does not match the message (key id api)"
            if not claim.actor:
                return f"a message of the API names no actor ({signing.ACTOR_HEADER})"
            if claim.actor == signing.STAFF_ACTOR:
                return Actor(kind="api", key_id=signing.API_KEY_ID, staff=True, roots=())
            return Actor(kind="api", key_id=signing.API_KEY_ID, staff=False, roots=(claim.actor,))
        integrator = self._senders.integrators.get(claim.key_id)
        if integrator is None:
            return f"no integrator {claim.key_id}"
        secret = self._secrets.get(claim.key_id)
        if secret is None:
            secret = self._secrets[claim.key_id] = keys.integrator_secret(
                self._master, integrator.key_id, integrator.salt
            )
        if not signing.verify(secret, claim, key, value):
            return f"the signature does not match the message (key id {claim.key_id})"
        if integrator.revoked:
            return f"integrator {claim.key_id} is revoked"
        # An integrator's trace-actor header, if any, is covered by its signature but vouches for nothing.
        return Actor(kind="integrator", key_id=claim.key_id, staff=False, roots=integrator.operators)


class ApiMark:
    """The API's own mark, checked before a batch's transaction: it needs no database, so the worker reads the
    claims and verifies the API's HMAC while the previous batch's transaction runs (``worker/main.py``).

    It only marks a message (:attr:`Decoded.api_verified`); :func:`authenticate` still derives the actor and
    authorizes it. Integrators' signatures need their registrations and are verified in the transaction.
    """

    def __init__(self, settings: Settings) -> None:
        master = signing_master(settings)
        self._api = keys.api_signing_secret(master) if master is not None else None

    def check(self, item: Decoded) -> None:
        claim = item.claim = signing.read_claim(item.headers)
        item.api_verified = (
            self._api is not None
            and isinstance(claim, signing.Claim)
            and claim.key_id == signing.API_KEY_ID
            and signing.verify(self._api, claim, item.key, item.raw)
        )


def _authorize(
    actor: Actor, roots_of: frozenset[str], operator: str, event_type: str, ancestry: dict[str, dict[str, str]]
) -> _Refusal | None:
    """The API's rules (ingest.service._authorize) for one event of an authenticated sender.

    ``roots_of`` is the set of the actor's roots: an integrator may have thousands, its operators' chains
    of parents have a few links, so the chain is what is walked.
    """
    if actor.staff:
        return None
    chain = ancestry.get(operator, {})
    roots = [c for c in chain if c in roots_of]
    if not roots:
        return _Refusal(FORBIDDEN, f"{operator} is not an operator of sender {actor.key_id} or under one", False)
    if event_type.startswith(STAFF_ONLY_PREFIX):
        return _Refusal(FORBIDDEN, f"only regulators send {event_type}", True)
    if all(chain[r] != ACTIVE for r in roots):
        return _Refusal(FORBIDDEN, f"operator {roots[0]}, which this sender reports as, is suspended", True)
    if chain[operator] != ACTIVE:
        return _Refusal(FORBIDDEN, f"operator {operator} is suspended", True)
    return None


def _claimed(code: str, message: str, key_id: str | None, event_id: object, operator: object) -> dict[str, Any]:
    """The detail of a refused message whose claims are not vouched for: they are shown, never used."""
    detail: dict[str, Any] = {"field": "headers" if code == UNAUTHENTICATED else "operator", "type": code}
    detail["message"] = message
    if key_id is not None:
        detail["key_id"] = key_id
    if event_id is not None:
        detail["claimed_event_id"] = str(event_id)
    if operator is not None:
        detail["claimed_operator"] = operator
    return detail


def _dead(item: Decoded, refusal: _Refusal, key_id: str | None = None) -> Dead:
    event_id = item.event.event_id
    operator = item.event.operator
    if refusal.in_scope:
        details = [{"field": "operator", "type": refusal.code, "message": refusal.message, "key_id": key_id}]
    else:
        details = [_claimed(refusal.code, refusal.message, key_id, event_id, operator)]
    return refused(item, refusal.code, refusal.message, details, identified=refusal.in_scope)


def _unauthenticated(message: str) -> _Refusal:
    return _Refusal(UNAUTHENTICATED, message, in_scope=False)


async def authenticate(
    conn: AsyncConnection, items: Sequence[Decoded], settings: Settings
) -> tuple[list[Decoded], list[Dead]]:
    """Set each item's ``actor``; return the items that may be applied and the dead letters of the rest.

    ``source`` becomes ``api`` for a valid signature of the API, and stays ``kafka`` otherwise.
    """
    if not items:
        return [], []
    master = signing_master(settings)
    if master is None:
        log.error("signing_secret_unset", refused=len(items), hint=UNCONFIGURED)
        return [], [_dead(i, _unauthenticated(UNCONFIGURED)) for i in items]
    dead: list[Dead] = []
    claimed: list[tuple[Decoded, signing.Claim]] = []
    for item in items:
        claim = item.claim if item.claim is not None else signing.read_claim(item.headers)
        if isinstance(claim, str):
            dead.append(_dead(item, _unauthenticated(claim)))
        else:
            claimed.append((item, claim))
    senders = await access_repo.senders(
        conn,
        [c.key_id for _, c in claimed if c.key_id != signing.API_KEY_ID],
        [i.event.operator for i, _ in claimed],
    )
    verifier = _Verifier(master, senders)
    root_sets: dict[str, frozenset[str]] = {}
    kept: list[Decoded] = []
    for item, claim in claimed:
        actor = verifier.actor(claim, item.key, item.raw, verified=item.api_verified)
        if isinstance(actor, str):
            dead.append(_dead(item, _unauthenticated(actor), claim.key_id))
            continue
        item.actor = actor
        # One set per integrator (it may have thousands of roots); an API actor has one root.
        roots_of = root_sets.get(actor.key_id) if actor.kind == "integrator" else frozenset(actor.roots)
        if roots_of is None:
            roots_of = root_sets[actor.key_id] = frozenset(actor.roots)
        event = item.event
        refusal = _authorize(actor, roots_of, event.operator, event.event_type, senders.ancestry)
        if refusal is not None:
            dead.append(_dead(item, refusal, actor.key_id))
            continue
        item.source = "api" if actor.kind == "api" else "kafka"
        kept.append(item)
    return kept, dead


async def vouch_for_dead(conn: AsyncConnection, dead: Sequence[Dead], settings: Settings) -> list[Dead]:
    """The dead letters of decoding (invalid or malformed messages), with the ``event_id`` and ``operator``
    they salvaged kept only when the message is signed by a sender that may speak for that operator.

    Without this, an unsigned invalid copy of a pending event's id would make that event read ``rejected``.
    """
    master = signing_master(settings)
    claims = [signing.read_claim(d.headers) if d.event_id or d.operator else None for d in dead]
    if not any(claims):
        return list(dead)
    senders = await access_repo.senders(
        conn,
        [c.key_id for c in claims if isinstance(c, signing.Claim) and c.key_id != signing.API_KEY_ID],
        [d.operator for d, c in zip(dead, claims, strict=True) if c is not None and d.operator is not None],
    )
    verifier = _Verifier(master, senders) if master is not None else None
    vouched: list[Dead] = []
    for d, claim in zip(dead, claims, strict=True):
        if claim is None:
            vouched.append(d)
            continue
        if isinstance(claim, str):
            actor: Actor | str = claim
        else:
            actor = verifier.actor(claim, d.key, d.raw) if verifier is not None else UNCONFIGURED
        if isinstance(actor, Actor):
            chain = senders.ancestry.get(d.operator or "", {})
            if actor.staff or not frozenset(chain).isdisjoint(actor.roots):
                vouched.append(d)
                continue
            actor = f"{d.operator} is not an operator of sender {actor.key_id} or under one"
        key_id = claim.key_id if isinstance(claim, signing.Claim) else None
        extra = _claimed(UNAUTHENTICATED, f"not vouched for: {actor}", key_id, d.event_id, d.operator)
        vouched.append(replace(d, event_id=None, operator=None, details=[*d.details, extra]))
    return vouched
