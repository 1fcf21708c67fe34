"""SQL for issued lot codes: the issuer sequence and daily counter of each operator, and the blocks issued."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

# One statement, so that concurrent requests never share a serial:
# - the operator's row in code_issuers is created on its first request, with the next value of
#   code_issuer_seq (COALESCE evaluates nextval only when the operator has no row yet), or locked and
#   updated by ON CONFLICT DO UPDATE, which serialises concurrent requests of one operator;
# - the day only moves forward (GREATEST): a request that computed yesterday's date just before midnight
#   gets a block of the row's newer day rather than resetting yesterday's counter;
# - the block is recorded in code_blocks, whose key (seq, day, first_serial) would refuse an overlap.
_ALLOCATE = sa.text(
    """
    WITH issuer AS (
        INSERT INTO code_issuers AS i (operator, seq, day, next_serial)
        VALUES (
            :operator,
            COALESCE((SELECT seq FROM code_issuers WHERE operator = :operator), nextval('code_issuer_seq')),
            :day,
            :count + 1
        )
        ON CONFLICT (operator) DO UPDATE
            SET day = GREATEST(i.day, EXCLUDED.day),
                next_serial = CASE WHEN EXCLUDED.day > i.day THEN EXCLUDED.next_serial
                                   ELSE i.next_serial + :count END
        RETURNING i.operator, i.seq, i.day, i.next_serial - :count AS first_serial
    )
    INSERT INTO code_blocks (seq, day, first_serial, count, operator, key_id)
    SELECT seq, day, first_serial, :count, operator, :key_id FROM issuer
    RETURNING seq, day, first_serial, count
    """
).bindparams(
    sa.bindparam("operator", type_=sa.Text),
    sa.bindparam("day", type_=sa.Date),
    sa.bindparam("count", type_=sa.Integer),
    sa.bindparam("key_id", type_=sa.Text),
)

_OWNER = sa.text(
    """
    SELECT operator FROM (
        SELECT operator, first_serial, count FROM code_blocks
        WHERE seq = :seq AND day = :day AND first_serial <= :serial
        ORDER BY first_serial DESC
        LIMIT 1
    ) b
    WHERE :serial < b.first_serial + b.count
    """
).bindparams(
    sa.bindparam("seq", type_=sa.Integer),
    sa.bindparam("day", type_=sa.Date),
    sa.bindparam("serial", type_=sa.Integer),
)

_ISSUERS = sa.text("SELECT seq FROM code_issuers WHERE seq = ANY(:seqs)").bindparams(
    sa.bindparam("seqs", type_=sa.ARRAY(sa.Integer))
)


@dataclass(frozen=True)
class Block:
    """Serials ``first_serial .. first_serial + count - 1`` of ``day`` under issuer sequence ``seq``."""

    seq: int
    day: date
    first_serial: int
    count: int


async def allocate(conn: AsyncConnection, operator: str, day: date, count: int, key_id: str) -> Block:
    """Reserve the next ``count`` serials of the operator's day and record the block."""
    params = {"operator": operator, "day": day, "count": count, "key_id": key_id}
    row = (await conn.execute(_ALLOCATE, params)).mappings().one()
    return Block(seq=row["seq"], day=row["day"], first_serial=row["first_serial"], count=row["count"])


async def block_owner(conn: AsyncConnection, seq: int, day: date, serial: int) -> str | None:
    """The operator a serial was issued to, or None when no block holds it."""
    owner: str | None = (await conn.execute(_OWNER, {"seq": seq, "day": day, "serial": serial})).scalar_one_or_none()
    return owner


async def issuers(conn: AsyncConnection, seqs: Collection[int]) -> set[int]:
    """Which of these issuer sequences belong to an operator the service has issued codes to."""
    if not seqs:
        return set()
    return set((await conn.execute(_ISSUERS, {"seqs": sorted(set(seqs))})).scalars())
