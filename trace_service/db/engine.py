"""Engine factory and migrations runner."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from trace_service.settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"


def create_engine(
    settings: Settings,
    *,
    pool_size: int | None = None,
    statement_timeout_ms: int | None = None,
    name: str = "api",
    read_only: bool = False,
    custom_plans: bool = True,
) -> AsyncEngine:
    """An engine whose sessions carry a statement timeout, so no query can hold a connection forever.

    ``read_only`` engines run in autocommit: a single-statement read then costs one round trip, not
    three (no BEGIN, no ROLLBACK when the connection goes back to the pool).

    Plans. asyncpg prepares every statement, and after five runs Postgres may switch to a generic plan and
    keep it until the table's statistics change; a plan made while a table was nearly empty (a fresh
    database, a server without autovacuum) is a sequential scan that stays one as the table grows. With
    ``custom_plans`` (the API's intake statements: small arrays, cheap to plan) every execution is planned
    with its actual parameters. Without it (the worker, whose statements carry arrays of thousands of
    codes: planning them costs ~10 ms a statement; the lineage reads, large statements on scalars) plans
    are cached, and connections are replaced every minute so that a cached plan is made again against
    the tables as they are now.
    """
    timeout = statement_timeout_ms if statement_timeout_ms is not None else settings.statement_timeout_ms
    extra: dict[str, object] = {"isolation_level": "AUTOCOMMIT"} if read_only else {}
    plans = {"plan_cache_mode": "force_custom_plan"} if custom_plans else {}
    return create_async_engine(
        settings.database_url,
        **extra,
        pool_size=pool_size or settings.db_pool_size,
        max_overflow=0,
        pool_pre_ping=False,
        pool_recycle=-1 if custom_plans else 60,
        connect_args={
            "server_settings": {
                "application_name": f"trace-service-{name}",
                "statement_timeout": str(timeout),
                # Times rendered by Postgres (JSON, CSV) carry the city's offset.
                "TimeZone": settings.timezone,
                # None of these short statements gains from JIT; a misestimate costs ~230 ms of compiling.
                "jit": "off",
                **plans,
            },
        },
    )


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolation: a literal % in a password must be doubled.
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def migrate(database_url: str, revision: str = "head") -> None:
    """Bring the schema to ``revision``. Safe to run again and from several processes at once."""
    command.upgrade(alembic_config(database_url), revision)
