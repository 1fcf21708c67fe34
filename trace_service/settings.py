"""Settings, read from the environment with the ``TRACE_`` prefix.

Nothing here runs at import time: call :func:`load_settings` in a composition root and pass the
object down.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from trace_service.contract.codes import CodePatterns


class CodeSettings(CodePatterns, BaseSettings):
    """Code formats of contract section 1, overridable as ``TRACE_CODE_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="TRACE_CODE_", extra="ignore")


class RuleSettings(BaseSettings):
    """Thresholds of the integrity rules (domain.md), overridable as ``TRACE_RULE_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="TRACE_RULE_", extra="ignore")

    # Provinces of the 中南区 ASF zone whose slaughter pigs Guangdong admits; the home province.
    zone_provinces: list[str] = ["44", "35", "36", "43", "45", "46"]
    home_province: str = "44"
    # Days a quarantine certificate stays valid after the day it was issued (0: the same day only).
    cert_valid_days_a: int = Field(default=5, ge=0)
    cert_valid_days_b: int = Field(default=0, ge=0)
    cert_valid_days_product: int = Field(default=7, ge=0)
    yield_min: float = Field(default=0.68, gt=0)
    yield_max: float = Field(default=0.80, gt=0)
    mass_balance_tolerance: float = Field(default=0.03, ge=0)
    shipment_tolerance: float = Field(default=0.0, ge=0)
    chilled_shelf_life_days: int = Field(default=7, ge=0)
    # cold_chain_break: a frozen lot may be above this many °C for at most this many minutes in one excursion.
    cold_chain_max_c: float = Field(default=-15.0, ge=-90, le=90)
    cold_chain_max_minutes: int = Field(default=30, ge=0)
    # upstream_missing: how long a referenced lot may stay unresolved.
    grace_seconds: int = Field(default=30 * 60, ge=0)
    # How long an event about a lot with no holder yet waits for the lot's creating event before it is
    # rejected (lot_unknown). A day: markets upload hours of records at once after an outage.
    park_seconds: int = Field(default=24 * 3600, ge=0)
    # Rules that judge an absence (no ASF result, no quality certificate) wait this long for late reports.
    settle_seconds: float = Field(default=5.0, ge=0)
    # How often the worker runs the due checks and the sweeper.
    tick_seconds: float = Field(default=1.0, gt=0)
    enabled: bool = True


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRACE_", extra="ignore")

    # Where the state lives.
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/trace"
    kafka_bootstrap: str = "127.0.0.1:9092"

    # Topics (contract section 5) and how they are laid out.
    topic_events: str = "trace.events.v1"
    topic_dlq: str = "trace.events.v1.dlq"
    topic_alerts: str = "trace.alerts.v1"
    events_partitions: int = Field(default=4, ge=1, le=1024)
    dlq_partitions: int = Field(default=1, ge=1, le=1024)
    alerts_partitions: int = Field(default=1, ge=1, le=1024)
    replication_factor: int = Field(default=1, ge=1, le=7)
    consumer_group: str = "trace-projector"

    # Intake.
    admin_token: SecretStr | None = None
    key_pepper: SecretStr = SecretStr("")
    # Master of the secrets that sign Kafka messages (the API's mark, integrators' secrets; contract
    # section 8). Unset: derived from key_pepper; with neither, the API refuses to start.
    signing_secret: SecretStr = SecretStr("")
    body_limit_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    # All request headers together (names and values); more gets 431. Browsers send 1-2 KB, big cookies ~8 KB.
    max_header_bytes: int = Field(default=16 * 1024, ge=1024)
    max_events_per_request: int = Field(default=1000, ge=1, le=10_000)
    max_requests_in_flight: int = Field(default=64, ge=1)
    future_skew_seconds: int = Field(default=300, ge=0)
    produce_timeout_seconds: float = Field(default=10.0, gt=0)
    wait_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    retry_after_seconds: int = Field(default=5, ge=1)
    producer_linger_ms: int = Field(default=5, ge=0)
    producer_max_batch_bytes: int = Field(default=1024 * 1024, ge=16 * 1024)

    # Worker.
    worker_max_records: int = Field(default=5000, ge=1)
    worker_poll_timeout_ms: int = Field(default=200, ge=1)
    # How long the broker may hold a fetch waiting for data. The embedded broker answers only when it
    # runs out, so 50-100 ms cuts alert latency there; Kafka answers as soon as data arrives.
    worker_fetch_max_wait_ms: int = Field(default=500, ge=1, le=5000)
    worker_session_timeout_ms: int = Field(default=10_000, ge=1000)
    worker_heartbeat_interval_ms: int = Field(default=3000, ge=100)
    # An intake ledger row whose event is not applied this long after it was produced is produced again
    # (the broker may have forgotten it); each later attempt waits twice as long, up to 10 minutes.
    redeliver_after_seconds: float = Field(default=30.0, gt=0)
    # A worker's readiness on GET /readyz of this port (unset: no port). Not ready while Postgres or the broker
    # is away; the worker then waits and retries, it never exits on an outage.
    worker_health_port: int | None = Field(default=None, ge=0, le=65535)
    worker_health_host: str = "127.0.0.1"

    # Postgres.
    db_pool_size: int = Field(default=10, ge=1)
    # How long an authenticated key is remembered by an API process (0 turns the cache off).
    auth_cache_seconds: float = Field(default=5.0, ge=0)
    statement_timeout_ms: int = Field(default=5000, ge=1)

    # Where the public reaches the service: QR codes print it and redirects keep its path. Never taken
    # from a request's Host header, which the client chooses.
    public_base_url: str = Field(default="http://127.0.0.1:8000", pattern=r"^https?://[^/?#\s]+(/[^?#\s]*)?$")

    # The city's time zone: times the service renders itself (lineage JSON, CSV) use its offset.
    timezone: str = "Asia/Shanghai"

    # Logging: "json" in production, "console" for people.
    log_format: str = "json"
    log_level: str = "info"

    # -- sharing: feed, exports, audit --
    # Items a filtered feed page scans at most: a department with narrow scopes moves its cursor this far
    # per page through items that are not for it (docs/sharing.md).
    feed_scan_rows: int = Field(default=20_000, ge=1000, le=1_000_000)
    # Events an export reads per keyset page (each page its own short query; the answer is streamed).
    export_page_rows: int = Field(default=2000, ge=100, le=50_000)

    # -- sharing: subscriptions, delivery, report --
    # Items per webhook batch at most. A batch leaves as soon as anything is there; it never waits to fill.
    webhook_batch_size: int = Field(default=500, ge=1, le=1000)
    # How often a deliverer reads the stream's head: the floor of the commit-to-receiver latency.
    webhook_poll_seconds: float = Field(default=0.05, gt=0, le=10)
    # One request's whole time (connect, send, answer). A receiver that takes longer counts as failed.
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    # Requests in flight per deliver process, over all its subscriptions.
    webhook_concurrency: int = Field(default=32, ge=1, le=1024)
    # Subscriptions one deliver process works on at most; the others are left to other processes.
    webhook_max_subscriptions: int = Field(default=1000, ge=1)
    # Retries: the first after this long, doubling (with jitter) up to the maximum.
    webhook_retry_first_seconds: float = Field(default=1.0, gt=0)
    webhook_retry_max_seconds: float = Field(default=600.0, gt=0)
    # A subscription failing this long without a success is paused (resume with POST .../resume).
    webhook_pause_after_seconds: float = Field(default=86_400.0, gt=0)
    # A deliverer's hold on a subscription; renewed while it works, taken over by another once expired. Raised
    # in code to cover a request's timeout and a statement's, so a lease never lapses during a request.
    webhook_lease_seconds: float = Field(default=30.0, gt=0)
    # How often a deliverer looks for subscriptions no live deliverer holds.
    webhook_claim_seconds: float = Field(default=1.0, gt=0)
    # Networks (CIDR) a callback URL may resolve into despite the address rules (loopback, link-local, ...):
    # a deployment's own decision, like an admin's `allow_private` on one subscription. Never the service itself.
    webhook_allowed_networks: list[str] = []
    # Networks (CIDR) a callback URL may never resolve into, even with an admin's allowance: the service's own
    # infrastructure on a private network (the database's, the broker's), which the address rules allow.
    webhook_denied_networks: list[str] = []
    # Delivery attempts older than this are deleted by the deliverers.
    webhook_attempts_keep_days: int = Field(default=14, ge=1)
    # The upward report: where `trace-service report` writes, and where it pushes (unset: it only writes).
    report_dir: str = "reports"
    report_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    # Sent as `Authorization: Bearer <token>` with each push, when set.
    report_token: SecretStr = SecretStr("")
    report_timeout_seconds: float = Field(default=60.0, gt=0)

    # -- pages: consumer page --
    # Whom a consumer calls, on every trace page (Chinese, and the English page's wording). The page adds
    # "ask the market's service desk" when the market is known.
    consumer_contact: str = Field(default="市场监管投诉举报电话 12315", min_length=1, max_length=120)
    consumer_contact_en: str = Field(
        default="Market regulation complaints hotline: 12315", min_length=1, max_length=120
    )

    codes: CodeSettings = Field(default_factory=CodeSettings)
    rules: RuleSettings = Field(default_factory=RuleSettings)


def load_settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]


_Section = TypeVar("_Section", bound=BaseSettings)
_DEFAULT_SECTIONS: dict[type[BaseSettings], BaseSettings] = {}


def section(settings: object, name: str, kind: type[_Section]) -> _Section:
    """A settings section that ``Settings`` does not carry as a field (the market's thresholds, its bulletin,
    its stock): ``settings.<name>`` when the object given has one of that kind (a test's or a benchmark's),
    else ``kind()`` read from the environment once per process."""
    given = getattr(settings, name, None)
    if isinstance(given, kind):
        return given
    default = _DEFAULT_SECTIONS.get(kind)
    if not isinstance(default, kind):
        default = _DEFAULT_SECTIONS[kind] = kind()
    return default
