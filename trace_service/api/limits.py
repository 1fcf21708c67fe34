"""Pure ASGI middleware that bound what a request may make the API hold: its body and its headers.

* :class:`BodyLimit` refuses a body over the limit with 413. A declared ``Content-Length`` over the
  limit is refused before reading; a chunked body is counted as it is read, and the 413 is sent by the
  middleware itself the moment the count goes over. The application is then unwound with a private
  exception that only this middleware catches: whatever the code reading the body makes of an exception
  (FastAPI turns one raised while it reads a body into a 400), the client hears the 413.
* :class:`HeaderLimit` refuses requests whose headers together exceed the limit with 431. uvicorn's
  httptools parser has no such limit of its own (its h11 one is set by the ``api`` command).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trace_service.api.errors import error_response


class _BodyRefused(Exception):
    """Raised into the application after the 413 went out; never leaves :class:`BodyLimit`."""


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
        started = False
        refused = False

        async def limited_receive() -> Message:
            nonlocal seen, refused
            if refused:
                raise _BodyRefused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    refused = True
                    if started:
                        # An answer is already on its way (a stream reading its body late): nothing
                        # honest can be added to it, so the application just stops.
                        raise _BodyRefused
                    await self._refuse(scope, receive, send, close=False)
                    raise _BodyRefused
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the 413 is the answer; what the application says after it goes nowhere
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _BodyRefused:
            pass
        except Exception:
            # The application failed on its way out of the refused read (a handler of its own raising):
            # the 413 was sent, so that failure is not the client's answer.
            if not refused:
                raise

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, *, close: bool = True) -> None:
        # A declared length over the limit: the body is never read, and the connection is closed rather
        # than made to carry it. A chunked body found too long while streaming: the server discards the
        # rest, so the client (which usually reads only once it has sent everything) gets the answer and
        # the connection stays usable.
        response = error_response(
            413,
            "payload_too_large",
            f"the body is over the limit of {self.limit} bytes",
            headers={"Connection": "close"} if close else None,
        )
        await response(scope, receive, send)


class HeaderLimit:
    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Counted as on the wire: "name: value\r\n" per header.
        size = sum(len(name) + len(value) + 4 for name, value in scope.get("headers", ()))
        if size > self.limit:
            response = error_response(
                431,
                "headers_too_large",
                f"the request headers are over the limit of {self.limit} bytes",
                [{"size": size, "limit": self.limit}],
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
