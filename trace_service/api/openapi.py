"""The OpenAPI document of the API, and the two pages that show it, served with no outside request.

* :func:`install_docs` serves ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) from the assets vendored
  under ``api/vendor/`` (mounted at ``/docs-assets``): no CDN, no web font, no outside favicon, so they
  work on a closed network.
* :func:`install_openapi` makes ``app.openapi`` finish FastAPI's document once, on its first request:
  the body of ``POST /v1/events`` becomes the contract's envelope schema (built from the deployment's
  code patterns, the same generator as ``schemas/``) with the files of ``events/examples/`` as named
  examples, whatever 422 FastAPI documented by default (``HTTPValidationError``, a shape the API
  never sends) becomes the contract's error body, and the models' examples get back the nulls FastAPI's
  encoding drops.

The error answers of each operation are declared at its decorator with
:func:`trace_service.contract.responses.errors`; ``tests/test_openapi.py`` checks that none is missing.
The HTML pages (``/t/...``, ``/console``) and ``/metrics`` stay out of the document: they are not part
of the integration API (a browser's pages, a Prometheus scrape), and a client generated from the
document should not carry them.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from trace_service.contract.events import build_catalogue
from trace_service.contract.responses import ErrorBody, errors
from trace_service.contract.schemas import ENVELOPE_FILE, generate_schemas
from trace_service.epcis import models as epcis_models
from trace_service.settings import Settings

VENDOR = Path(__file__).resolve().parent / "vendor"
ASSETS = "/docs-assets"
# The example events of the contract, one per event type, kept with the event schemas at the repository
# root; a wheel install has no such folder and its document goes without them.
EVENT_EXAMPLES = Path(__file__).resolve().parents[2] / "events" / "examples"

# The component an operation's request body names to take events (one envelope or an array of them);
# the document fills it in, as the schema depends on the deployment's code patterns and batch limit.
EVENT_BODY = "EventBody"
EVENT_BODY_REF = f"#/components/schemas/{EVENT_BODY}"
_EVENT_PREFIX = "Event"


# The pages may load only what the service serves. FastAPI's pages start their viewer with an inline
# script, the viewers inject their styles, and ReDoc runs its search in a worker made from a blob. The
# policy also keeps the one outside request ReDoc 2 makes by itself (its "API docs by Redocly" logo in
# the side menu, which hides itself when refused) from ever leaving the browser.
DOCS_POLICY = (
    "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def install_docs(app: FastAPI) -> None:
    """``/docs`` and ``/redoc`` from the package's own copies of Swagger UI and ReDoc."""
    app.mount(ASSETS, StaticFiles(directory=VENDOR), name="docs-assets")
    title = f"{app.title} API"

    def base(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = base(request)
        page = get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=title,
            swagger_js_url=f"{root}{ASSETS}/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/swagger-ui/favicon-32x32.png",
            oauth2_redirect_url=None,
            # Swagger UI would ask an online validator to judge the document (and show its badge).
            swagger_ui_parameters={"validatorUrl": None, "displayRequestDuration": True},
        )
        page.headers["Content-Security-Policy"] = DOCS_POLICY
        return page

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = base(request)
        page = get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=title,
            redoc_js_url=f"{root}{ASSETS}/redoc/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS}/swagger-ui/favicon-32x32.png",
            with_google_fonts=False,
        )
        page.headers["Content-Security-Policy"] = DOCS_POLICY
        return page


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """Replace ``app.openapi`` by one that completes FastAPI's document (built once, then cached)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                openapi_version=app.openapi_version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
                servers=app.servers,
            )
            app.openapi_schema = complete(document, settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete(document: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The document with the contract's event schema and error body where FastAPI has its own."""
    components = document.setdefault("components", {}).setdefault("schemas", {})
    _restore_examples(components)
    components.update(_error_components())
    # EPCIS (issue 14): the problem details of /epcis and its capture document, named by $ref in its routes.
    if _mentions(document.get("paths", {}), epcis_models.PROBLEM_REF):
        components.update({k: v for k, v in epcis_models.components().items() if k not in components})
        _epcis_without_422(document)
    if _mentions(document.get("paths", {}), EVENT_BODY_REF):
        _add_event_body(document, settings)
    _contract_errors(document)
    for name in ("HTTPValidationError", "ValidationError"):
        if not _mentions(document, f"#/components/schemas/{name}"):
            components.pop(name, None)
    return document


def _models(root: type[BaseModel] = BaseModel) -> Iterator[type[BaseModel]]:
    for cls in root.__subclasses__():
        yield cls
        yield from _models(cls)


def _restore_examples(components: dict[str, Any]) -> None:
    """Put back the models' own examples: FastAPI encodes the document without its null values, which
    leaves examples that omit required nullable fields (``"parent": null``) and no longer validate."""
    by_name: dict[str, list[Any]] = {}
    for cls in _models():
        extra = cls.model_config.get("json_schema_extra")
        if cls.__module__.startswith("trace_service.") and isinstance(extra, dict) and "examples" in extra:
            by_name.setdefault(cls.__name__, []).append(extra["examples"])
    for name, schema in components.items():
        found = by_name.get(name.removesuffix("-Input").removesuffix("-Output"), [])
        if len(found) == 1:  # a name two models share is left as FastAPI wrote it
            schema["examples"] = copy.deepcopy(found[0])


# -- errors -----------------------------------------------------------------------------------------------


def _error_components() -> dict[str, Any]:
    schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}", mode="serialization")
    defs = schema.pop("$defs", {})
    return {**defs, "ErrorBody": schema}


def _contract_errors(document: dict[str, Any]) -> None:
    """A 422 that FastAPI documented with its own ``HTTPValidationError`` gets the contract's body."""
    ours = errors(422)[422]
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            answer = operation.get("responses", {}).get("422")
            if answer is not None and _mentions(answer, "#/components/schemas/HTTPValidationError"):
                operation["responses"]["422"] = {
                    "description": ours["description"],
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/ErrorBody"},
                            **ours["content"]["application/json"],
                        }
                    },
                }


def _epcis_without_422(document: dict[str, Any]) -> None:
    """The binding answers a refused parameter with 400 problem details, never 422 (``epcis/problems.py``):
    the 422 FastAPI documents for every operation with parameters is dropped where errors are problems."""
    for path, path_item in document.get("paths", {}).items():
        if path == "/epcis" or path.startswith("/epcis/"):
            for operation in path_item.values():
                operation.get("responses", {}).pop("422", None)


def _mentions(node: Any, ref: str) -> bool:
    if isinstance(node, dict):
        return node.get("$ref") == ref or any(_mentions(v, ref) for v in node.values())
    if isinstance(node, list):
        return any(_mentions(v, ref) for v in node)
    return False


# -- events -----------------------------------------------------------------------------------------------


def _add_event_body(document: dict[str, Any], settings: Settings) -> None:
    """The envelope schema of ``schemas/envelope.schema.json``, for this deployment's code patterns, as
    components; the event body is one envelope or an array of them."""
    catalogue = build_catalogue(settings.codes, settings.max_events_per_request)
    envelope = copy.deepcopy(generate_schemas(catalogue)[ENVELOPE_FILE])
    defs: dict[str, Any] = envelope.pop("$defs", {})
    for key in ("$id", "$schema"):
        envelope.pop(key, None)
    names = {name: name if name.endswith("Event") else _EVENT_PREFIX + name for name in defs}
    components = document["components"]["schemas"]
    for name, schema in defs.items():
        if names[name] in components:
            raise ValueError(f"the event schema's {name!r} collides with the component {names[name]!r}")
        components[names[name]] = _rebase(schema, names)
    components["Event"] = _rebase(envelope, names)
    components[EVENT_BODY] = {
        "title": "One event or an array of events",
        "description": f"One event envelope, or a JSON array of 1 to {settings.max_events_per_request} envelopes "
        "(contract section 2). All are validated first; if any is invalid nothing is accepted.",
        "oneOf": [
            {"$ref": "#/components/schemas/Event"},
            {
                "title": "An array of events",
                "type": "array",
                "items": {"$ref": "#/components/schemas/Event"},
                "minItems": 1,
                "maxItems": settings.max_events_per_request,
            },
        ],
    }
    examples = event_examples()
    if not examples:
        return
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            content = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
            if content.get("schema", {}).get("$ref") == EVENT_BODY_REF:
                content.setdefault("examples", examples)


def _rebase(node: Any, names: dict[str, str]) -> Any:
    """References into the document's own ``$defs`` made references to the components."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if isinstance(value, str) and value.startswith("#/$defs/"):
                value = "#/components/schemas/" + names[value.removeprefix("#/$defs/")]
            out[key] = _rebase(value, names)
        return out
    if isinstance(node, list):
        return [_rebase(v, names) for v in node]
    return node


def event_examples(folder: Path = EVENT_EXAMPLES) -> dict[str, dict[str, Any]]:
    """One named example per file of ``events/examples/`` (``retail.sold.json`` → ``retail.sold``), and a
    batch of all of them."""
    if not folder.is_dir():
        return {}
    named: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("*.json")):
        event = json.loads(path.read_text(encoding="utf-8"))
        named[path.stem] = {"summary": f"{path.stem}: one event", "value": event}
    if named:
        named["batch"] = {
            "summary": "an array: every example above in one request",
            "value": [example["value"] for example in named.values()],
        }
    return named
