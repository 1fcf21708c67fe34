"""The unit of work: the one place a write transaction begins, for the API and the worker.

``async with unit_of_work(engine) as conn:`` runs its block in one transaction, committed when the block
ends and rolled back when it raises. Every write path takes its connection from here, so what a transaction
holds (one posted batch, one consumed batch, one tick) is visible where it starts, and nothing else starts
one (``engine.begin()`` outside this module is a review finding).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


@asynccontextmanager
async def unit_of_work(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One write transaction: committed at the end of the block, rolled back if it raises."""
    async with engine.begin() as conn:
        yield conn


@asynccontextmanager
async def reading(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection for reads (autobegun, rolled back at the end): nothing it does is committed."""
    async with engine.connect() as conn:
        yield conn
