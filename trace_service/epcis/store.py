"""The EPCIS event index, written by the worker in the transaction that applies the events.

:func:`record` takes the events a batch applied for the first time and writes one ``epcis_events`` row for
each: a captured event (``epcis.event``) as it was sent, with ``eventID`` set to its CBV event hash when it
had none; a domestic event by its index columns only (``mapping.index``, straight from the typed event), with no
``doc``: the query renders it from the stored envelope when it reads it (``mapping.render``), so the worker
neither renders nor writes the EPCIS document of most of a batch. ``recordTime`` is the row's ``record_time``
(the applying transaction's time), added when the event is read. An event carrying an
``errorDeclaration`` sets the declaration on the row of the event it corrects instead of adding one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from trace_service.contract.epcis import hashing, mapping
from trace_service.contract.epcis.uris import URIs, operator_uri
from trace_service.contract.events import EPCIS_URIS, Envelope, EpcisEventEvent, epcis_hash
from trace_service.epcis import repository as repo

EPCIS_EVENT = "epcis.event"

_BIZ_STEP = ("https://ref.gs1.org/cbv/BizStep-", "urn:epcglobal:cbv:bizstep:")
_DISPOSITION = ("https://ref.gs1.org/cbv/Disp-", "urn:epcglobal:cbv:disp:")


def _short(value: Any, prefixes: tuple[str, ...]) -> str | None:
    if not isinstance(value, str):
        return None
    for prefix in prefixes:
        if value.startswith(prefix):
            return value[len(prefix) :]
    return value


def biz_step(value: Any) -> str | None:
    """A bizStep as its CBV short name (``shipping``), whether sent bare, as a web URI or as a URN; a user
    vocabulary URI is kept whole."""
    return _short(value, _BIZ_STEP)


def disposition(value: Any) -> str | None:
    return _short(value, _DISPOSITION)


def _id_of(place: Any) -> str | None:
    found = place.get("id") if isinstance(place, dict) else None
    return found if isinstance(found, str) else None


def index_row(
    event_id: str, operator: str, event: dict[str, Any], context: Any, declaration: Any = None
) -> dict[str, Any]:
    """One ``epcis_events`` row (the columns of ``repository.COLUMNS``) for an EPCIS event whose ``eventID``
    is set."""
    epcs, inputs, outputs = mapping.epcs(event)
    parent = event.get("parentID")
    return {
        "event_id": event_id,
        "epcis_id": event["eventID"],
        "type": event.get("type"),
        "event_time": event.get("eventTime"),
        "biz_step": biz_step(event.get("bizStep")),
        "disposition": disposition(event.get("disposition")),
        "action": event.get("action"),
        "read_point": _id_of(event.get("readPoint")),
        "biz_location": _id_of(event.get("bizLocation")),
        "operator": operator,
        "epcs": sorted(set(epcs)),
        "input_epcs": sorted(set(inputs)),
        "output_epcs": sorted(set(outputs)),
        "parent_id": parent if isinstance(parent, str) else None,
        "doc": event,
        "context": context,
        "error_declaration": declaration,
    }


def domestic_row(event: Envelope, uris: URIs) -> dict[str, Any]:
    """The ``epcis_events`` row of a domestic event: the columns :func:`index_row` takes from its rendering, and
    no ``doc`` (rendered when read)."""
    found = mapping.index(event, uris)
    here = operator_uri(event.operator, uris)
    return {
        "event_id": event.event_id,
        "epcis_id": f"urn:uuid:{event.event_id}",
        "type": found.type,
        "event_time": event.occurred_at,
        "biz_step": biz_step(found.biz_step),
        "disposition": found.disposition,
        "action": found.action,
        "read_point": here,
        "biz_location": here,
        "operator": event.operator,
        "epcs": sorted(set(found.epcs)),
        "input_epcs": sorted(set(found.inputs)),
        "output_epcs": sorted(set(found.outputs)),
        "parent_id": None,
        "doc": None,
        "context": None,
        "error_declaration": None,
    }


def _captured(envelope: dict[str, Any], hash_: str) -> tuple[dict[str, Any], bool]:
    """The row of a captured event (``hash_``: its CBV event hash, which leaves out ``errorDeclaration``,
    ``eventID`` and ``recordTime``), and whether it is an error declaration."""
    data = envelope["data"]
    event = dict(data["event"])
    context = data.get("context")
    declaration = event.pop("errorDeclaration", None)
    event.pop("recordTime", None)  # the repository's to set
    if "eventID" not in event:
        event["eventID"] = hash_
    if declaration is None:
        return index_row(envelope["event_id"], envelope["operator"], event, context), False
    # The declaration's row is the corrected event's: its envelope id without the declaration mark.
    original = str(hashing.envelope_id(hash_, error_declaration=False))
    return index_row(original, envelope["operator"], event, context, declaration), True


async def record(conn: AsyncConnection, fresh_events: Sequence[Envelope]) -> None:
    """Index the events a batch applied for the first time (call inside the batch's transaction)."""
    rows: list[dict[str, Any]] = []
    declarations: list[dict[str, Any]] = []
    for model in fresh_events:
        if isinstance(model, EpcisEventEvent):
            # The event and context are the JSON as sent: no need to dump the whole model (most of a batch).
            captured = {
                "event_id": str(model.event_id),
                "operator": model.operator,
                "data": {"event": model.data.event, "context": model.data.context},
            }
            row, declares = _captured(captured, epcis_hash(model))
            (declarations if declares else rows).append(row)
            continue
        rows.append(domestic_row(model, EPCIS_URIS))
    await repo.insert_events(conn, rows)
    await repo.declare_errors(conn, declarations)
