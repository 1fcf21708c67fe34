"""Bodies of the operator and key endpoints, and the authenticated principal."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.config import JsonDict


class Role(StrEnum):
    ADMIN = "admin"
    REGULATOR = "regulator"
    OPERATOR = "operator"
    # Another department or platform (contract section 9): reads within its scopes, never writes.
    DEPARTMENT = "department"


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
    IMPORTER = "importer"  # 进口商: enters imported meat through customs (issue 14)
    COLD_STORE = "cold_store"  # 冷库


class OperatorStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's role, its id and, for an operator key, its operator; for a department key,
    its scopes (access/scopes.py)."""

    role: Role
    key_id: str
    operator: str | None = None
    scopes: tuple[str, ...] = ()

    @property
    def is_staff(self) -> bool:
        return self.role in (Role.ADMIN, Role.REGULATOR)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


Name = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
CreditCode = Annotated[str, StringConstraints(pattern=r"^[0-9A-Z]{18}$")]


# One operator as registered: the example of the registration, which the answer repeats.
_OPERATOR_EXAMPLE: JsonDict = {
    "code": "442000600012",
    "name": "东升镇农贸市场12号摊",
    "kind": "retailer",
    "region": "442000",
    "parent": "442000600001",
}


class OperatorIn(_Body):
    model_config = ConfigDict(json_schema_extra={"examples": [_OPERATOR_EXAMPLE]})

    code: str
    name: Name
    kind: OperatorKind
    region: str
    parent: str | None = None
    credit_code: CreditCode | None = None
    emergency_outlet: Annotated[
        bool, Field(description="a designated emergency outlet (应急投放网点) of the commerce bureau")
    ] = False


class OperatorPatch(_Body):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "suspended"}]})

    name: Name | None = None
    status: OperatorStatus | None = None
    credit_code: CreditCode | None = None
    emergency_outlet: bool | None = None


class OperatorOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **_OPERATOR_EXAMPLE,
                    "credit_code": None,
                    "status": "active",
                    "created_at": "2026-11-24T09:30:00+08:00",
                    "updated_at": "2026-11-24T09:30:00+08:00",
                }
            ]
        }
    )

    code: str
    name: str
    kind: str
    region: str
    parent: str | None
    credit_code: str | None
    emergency_outlet: bool = Field(default=False, description="a designated emergency outlet (应急投放网点)")
    status: str
    created_at: datetime
    updated_at: datetime


class OperatorKeyIn(_Body):
    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "12号摊收银机"}]})

    name: Name | None = None


class StaffKeyIn(_Body):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"role": "regulator", "name": "中山市市场监管局 食品科"}]}
    )

    role: Annotated[Role, Field(description="regulator, admin or department")]
    name: Name
    scopes: Annotated[
        list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] | None,
        Field(
            max_length=64,
            description="department keys only: event-type patterns (`farm.*`, `lot.tested`, `*`), `alerts`, "
            "`market`, `personal` (docs/sharing.md)",
            examples=[["lot.tested", "slaughter.*", "alerts"]],
        ),
    ] = None


class KeyOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "key_id": "k7Qm2xY9pLw3",
                    "key": "trk.k7Qm2xY9pLw3.Yc1vQ2...",
                    "role": "operator",
                    "operator": "442000600012",
                    "name": "12号摊收银机",
                    "created_at": "2026-11-24T09:30:00+08:00",
                }
            ]
        }
    )

    key_id: str
    key: str = Field(description="The secret. Shown once; only a keyed hash is stored.")
    role: Role
    operator: str | None
    name: str | None
    created_at: datetime
    scopes: list[str] | None = Field(default=None, description="a department key's scopes")


OperatorCodes = Annotated[
    list[Annotated[str, StringConstraints(min_length=1, max_length=64)]], Field(min_length=1, max_length=10_000)
]


class IntegratorIn(_Body):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "东升市场信息系统", "operators": ["442000600001"]}]}
    )

    name: Name
    operators: Annotated[
        OperatorCodes,
        Field(description="Operators it may report for; the operators registered under them are included."),
    ]


class IntegratorPatch(_Body):
    model_config = ConfigDict(json_schema_extra={"examples": [{"operators": ["442000600001", "442000200001"]}]})

    name: Name | None = None
    operators: OperatorCodes | None = None


# One integrator as the API shows it: the example of every answer that carries one.
_INTEGRATOR_EXAMPLE: JsonDict = {
    "key_id": "int-3kq8v2nd0xa1",
    "name": "东升市场信息系统",
    "operators": ["442000600001"],
    "status": "active",
    "created_by": "admin",
    "created_at": "2026-11-24T09:30:00+08:00",
    "updated_at": "2026-11-24T09:30:00+08:00",
    "revoked_at": None,
}


class IntegratorOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_INTEGRATOR_EXAMPLE]})

    key_id: str
    name: str
    operators: list[str]
    status: Annotated[str, Field(description="active or revoked")]
    created_by: str
    created_at: datetime
    updated_at: datetime
    revoked_at: datetime | None


class NewIntegratorOut(IntegratorOut):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{**_INTEGRATOR_EXAMPLE, "secret": "q0VfH3...shown-once"}]}
    )

    secret: str = Field(
        description="The HMAC key of its signatures, used as ASCII bytes. Shown once; the service keeps only a "
        "salt from which, with its master secret, it can recompute it."
    )


class IntegratorList(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [_INTEGRATOR_EXAMPLE]}]})

    items: list[IntegratorOut]
