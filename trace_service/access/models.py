"""Bodies of the operator and key endpoints, and the authenticated principal."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints


class Role(StrEnum):
    ADMIN = "admin"
    REGULATOR = "regulator"
    OPERATOR = "operator"


class OperatorKind(StrEnum):
    FARM = "farm"
    SLAUGHTERHOUSE = "slaughterhouse"
    WHOLESALE_MARKET = "wholesale_market"
    WHOLESALER = "wholesaler"
    RETAIL_MARKET = "retail_market"
    RETAILER = "retailer"
    SUPERMARKET = "supermarket"
    PLANTING_BASE = "planting_base"
    CANTEEN = "canteen"


class OperatorStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's role, its id and, for an operator key, its operator."""

    role: Role
    key_id: str
    operator: str | None = None

    @property
    def is_staff(self) -> bool:
        return self.role in (Role.ADMIN, Role.REGULATOR)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


Name = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
CreditCode = Annotated[str, StringConstraints(pattern=r"^[0-9A-Z]{18}$")]


class OperatorIn(_Body):
    code: str
    name: Name
    kind: OperatorKind
    region: str
    parent: str | None = None
    credit_code: CreditCode | None = None


class OperatorPatch(_Body):
    name: Name | None = None
    status: OperatorStatus | None = None
    credit_code: CreditCode | None = None


class OperatorOut(BaseModel):
    code: str
    name: str
    kind: str
    region: str
    parent: str | None
    credit_code: str | None
    status: str
    created_at: datetime
    updated_at: datetime


class OperatorKeyIn(_Body):
    name: Name | None = None


class StaffKeyIn(_Body):
    role: Annotated[Role, Field(description="regulator or admin")]
    name: Name


class KeyOut(BaseModel):
    key_id: str
    key: str = Field(description="The secret. Shown once; only a keyed hash is stored.")
    role: Role
    operator: str | None
    name: str | None
    created_at: datetime


OperatorCodes = Annotated[
    list[Annotated[str, StringConstraints(min_length=1, max_length=64)]], Field(min_length=1, max_length=10_000)
]


class IntegratorIn(_Body):
    name: Name
    operators: Annotated[
        OperatorCodes,
        Field(description="Operators it may report for; the operators registered under them are included."),
    ]


class IntegratorPatch(_Body):
    name: Name | None = None
    operators: OperatorCodes | None = None


class IntegratorOut(BaseModel):
    key_id: str
    name: str
    operators: list[str]
    status: Annotated[str, Field(description="active or revoked")]
    created_by: str
    created_at: datetime
    updated_at: datetime
    revoked_at: datetime | None


class NewIntegratorOut(IntegratorOut):
    secret: str = Field(
        description="The HMAC key of its signatures, used as ASCII bytes. Shown once; the service keeps only a "
        "salt from which, with its master secret, it can recompute it."
    )


class IntegratorList(BaseModel):
    items: list[IntegratorOut]
