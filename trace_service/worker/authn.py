"""Authenticating the messages of a batch (contract section 8). Placeholder: being written."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from trace_service.settings import Settings
from trace_service.worker.decode import Actor, Dead, Decoded


async def authenticate(
    conn: AsyncConnection, items: Sequence[Decoded], settings: Settings
) -> tuple[list[Decoded], list[Dead]]:
    """Set each item's ``actor``; return the items that may be applied and the dead letters of the rest."""
    for item in items:
        op = item.event.operator  # type: ignore[attr-defined]
        item.actor = Actor(kind="api", key_id="", staff=item.event.event_type.startswith("regulator."), roots=(op,))  # type: ignore[attr-defined]
    return list(items), []
