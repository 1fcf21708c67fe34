"""HTML rendering: one Jinja2 environment with autoescaping on, and the security headers of every page.

Codes and names come from outside (operators name themselves; codes arrive in URLs), so every value is
escaped by the template engine; nothing is marked safe. The Content-Security-Policy allows only the
service's own scripts and styles, so even a value that slipped through could not run inline script.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


@functools.cache
def environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every template, whatever its name
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(
    name: str, *, status: int = 200, cache: str = "no-cache", referrer: str = "no-referrer", **context: Any
) -> HTMLResponse:
    """``referrer``: the consumer's pages send none (a trace code in a URL is nobody else's business); the
    console uses ``same-origin`` so its forms carry an ``Origin`` the server can check."""
    body = environment().get_template(name).render(**context)
    headers = {**SECURITY_HEADERS, "Cache-Control": cache, "Referrer-Policy": referrer}
    return HTMLResponse(body, status_code=status, headers=headers)
