"""Which operator kinds may be registered under which: the one table of parent kinds. Pure.

``parent`` is the reporting tree of contract section 4 ("a market reports for its tenant wholesalers and
stalls"): a parent's key reports for the operators under it, and a market tests its tenants' lots. So only
tenants have a parent, and only a market that houses them (domain.md): a wholesaler under a wholesale
market, a stall (``retailer``) under a wet market or a supermarket (a concession counter). Farms, planting
bases, slaughterhouses, markets, supermarkets and canteens are nodes of their own and take no parent.
"""

from __future__ import annotations

from trace_service.access.models import OperatorKind

ALLOWED_PARENTS: dict[OperatorKind, tuple[OperatorKind, ...]] = {
    OperatorKind.FARM: (),
    OperatorKind.PLANTING_BASE: (),
    OperatorKind.SLAUGHTERHOUSE: (),
    OperatorKind.WHOLESALE_MARKET: (),
    OperatorKind.RETAIL_MARKET: (),
    OperatorKind.SUPERMARKET: (),
    OperatorKind.CANTEEN: (),
    OperatorKind.IMPORTER: (),
    OperatorKind.COLD_STORE: (),
    OperatorKind.WHOLESALER: (OperatorKind.WHOLESALE_MARKET,),
    OperatorKind.RETAILER: (OperatorKind.RETAIL_MARKET, OperatorKind.SUPERMARKET),
}


def parent_problem(kind: OperatorKind, parent_kind: str) -> str | None:
    """Why an operator of ``kind`` may not be registered under one of ``parent_kind``; None when it may."""
    allowed = ALLOWED_PARENTS[kind]
    if parent_kind in allowed:
        return None
    if not allowed:
        tenants = "; ".join(
            f"a {k.value} under a {' or '.join(p.value for p in ps)}" for k, ps in ALLOWED_PARENTS.items() if ps
        )
        return f"a {kind.value} takes no parent, so not a {parent_kind} (only tenants have one: {tenants})"
    names = " or ".join(k.value for k in allowed)
    return f"a {kind.value} may only be registered under a {names}, not under a {parent_kind}"
