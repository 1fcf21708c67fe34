"""A pure ASGI middleware that refuses request bodies over the configured limit with 413.

A declared ``Content-Length`` over the limit is refused before reading; a chunked body is counted
as it is read.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trace_service.api.errors import error_response
from trace_service.errors import PayloadTooLarge


class BodyLimit:
    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.limit:
                    await self._refuse(scope, receive, send)
                    return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    # Mapped to 413 by the error handlers, like every other domain error.
                    raise PayloadTooLarge(f"the body is over the limit of {self.limit} bytes")
            return message

        await self.app(scope, limited_receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413,
            "payload_too_large",
            f"the body is over the limit of {self.limit} bytes",
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)
