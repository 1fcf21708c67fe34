"""The application factory: the API's composition root."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import Depends, FastAPI

from trace_service import __version__
from trace_service.access.endpoints import integrators_router
from trace_service.access.endpoints import router as access_router
from trace_service.access.http import PrincipalCache
from trace_service.alerts.endpoints import router as alerts_router
from trace_service.alerts.service import AlertStream
from trace_service.api.errors import ErrorBoundary, install_error_handlers
from trace_service.api.health import router as health_router
from trace_service.api.limits import BodyLimit, HeaderLimit
from trace_service.api.openapi import install_docs, install_openapi
from trace_service.api.text import storable_request_text
from trace_service.chain.endpoints import public_router
from trace_service.chain.endpoints import router as chain_router
from trace_service.codes.endpoints import router as codes_router
from trace_service.contract.events import build_catalogue
from trace_service.db.engine import create_engine
from trace_service.delivery.endpoints import router as subscriptions_router
from trace_service.epcis.endpoints import router as epcis_router
from trace_service.epcis.problems import EpcisShape
from trace_service.epcis.service import EpcisService
from trace_service.ingest.endpoints import router as ingest_router
from trace_service.ingest.publisher import EventPublisher
from trace_service.ingest.service import IntakeService
from trace_service.market.endpoints import public_router as market_public_router
from trace_service.market.endpoints import router as market_router
from trace_service.settings import Settings
from trace_service.sharing.endpoints import router as sharing_router
from trace_service.web.market_pages import router as market_pages_router
from trace_service.web.pages import router as web_router
from trace_service.web.pages import static_files

log = structlog.get_logger(__name__)


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        publisher = EventPublisher(settings)
        catalogue = build_catalogue(settings.codes, settings.max_events_per_request)
        app.state.settings = settings
        app.state.engine = engine
        # Lineage statements take scalars (a code, a depth): their cached plans save the planning of a large
        # statement on every read.
        app.state.read_engine = create_engine(settings, read_only=True, name="api-read", custom_plans=False)
        app.state.principal_cache = PrincipalCache(settings.auth_cache_seconds)
        app.state.publisher = publisher
        app.state.intake = IntakeService(settings, engine, publisher, catalogue)
        app.state.epcis = EpcisService(settings, engine, app.state.intake, app.state.read_engine)
        app.state.alert_stream = AlertStream(engine)
        if not settings.key_pepper.get_secret_value():
            log.warning("key_pepper_unset", hint="set TRACE_KEY_PEPPER so stored key hashes are keyed")
        log.info("api_started", version=__version__)
        try:
            yield
        finally:
            await app.state.alert_stream.close()
            await publisher.close()
            await engine.dispose()
            await app.state.read_engine.dispose()
            log.info("api_stopped")

    app = FastAPI(
        title="trace-service",
        version=__version__,
        summary="Meat and vegetable traceability (肉菜流通追溯): intake, lineage, recall, alerts",
        lifespan=lifespan,
        # Starlette's redirect of a path with a trailing slash builds its absolute URL from the Host
        # header: a forged header would send the client elsewhere. The API's paths have none; 404.
        redirect_slashes=False,
        dependencies=[Depends(storable_request_text)],
        # Served by install_docs from the package's own assets (a closed network has no CDN).
        docs_url=None,
        redoc_url=None,
    )
    install_openapi(app, settings)
    install_docs(app)
    install_error_handlers(app)
    app.add_middleware(BodyLimit, limit=settings.body_limit_bytes)
    app.add_middleware(HeaderLimit, limit=settings.max_header_bytes)
    # Added last, so it wraps the others: every failure below it is answered and the connection kept.
    app.add_middleware(ErrorBoundary)
    # Outermost: every error answer under /epcis, whoever made it, leaves as the binding's problem details.
    app.add_middleware(EpcisShape, capture_limit=settings.max_events_per_request)
    app.include_router(health_router)
    app.include_router(ingest_router)
    app.include_router(access_router)
    app.include_router(integrators_router)
    app.include_router(chain_router)
    app.include_router(alerts_router)
    app.include_router(market_router)
    app.include_router(market_public_router)
    app.include_router(public_router)
    app.include_router(codes_router)
    app.include_router(sharing_router)
    app.include_router(subscriptions_router)
    app.include_router(epcis_router)
    app.include_router(web_router)
    app.include_router(market_pages_router)
    app.mount("/static", static_files(), name="static")
    return app
