"""Sending one signed batch to a callback URL: name resolution, the address check at connect time, the POST.

Requests go through an ``httpcore`` connection pool whose network backend resolves the host itself, checks
every address with the subscription's :class:`~trace_service.delivery.urls.Policy` and connects to the address
it checked. TLS still verifies the certificate against the URL's host name (httpcore passes it as the server
name), so a name that starts resolving to a forbidden address between the subscription's creation and a
delivery is refused, and no second lookup can slip in between the check and the connect. Redirects are never
followed (httpcore does not follow them): a 3xx is a failed delivery.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import socket
import time
import typing
from collections.abc import Sequence
from dataclasses import dataclass

import httpcore

from trace_service import __version__
from trace_service.delivery.urls import IPAddress, Policy, Target, UrlRefused, parse

RESOLVE_TIMEOUT_SECONDS = 5.0  # a resolver that does not answer makes the name unresolvable, not a hung request
MAX_ANSWER_BYTES = 64 * 1024  # what is read of a receiver's answer; it is not kept, only drained
USER_AGENT = f"trace-service/{__version__} (webhooks)".encode()


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address of ``host`` in the resolver's order, without repeats; empty when it does not resolve."""
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return [literal]
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_SECONDS):
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, TimeoutError):
        return []
    seen: dict[IPAddress, None] = {}
    for info in infos:
        # The address of an IPv6 link-local answer may carry a zone ("fe80::1%eth0"), which ip_address refuses.
        text = str(info[4][0]).split("%", 1)[0]
        try:
            seen.setdefault(ipaddress.ip_address(text), None)
        except ValueError:
            continue
    return list(seen)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to addresses the policy allows, and only to the address it checked."""

    def __init__(self, policy: Policy, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self.policy = policy
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await resolve(host, port)
        self.policy.check(Target(scheme="", host=host.rstrip(".").lower(), port=port), addresses)
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(str(address), port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure or httpcore.ConnectError(f"{host} has no address")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("a callback is never a Unix socket")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


@dataclass(frozen=True)
class Answer:
    """What came of one attempt: the receiver's status, or why there was none."""

    status: int | None
    error: str | None
    duration_ms: int
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def _retry_after(headers: Sequence[tuple[bytes, bytes]]) -> float | None:
    for name, value in headers:
        if name.lower() == b"retry-after":
            text = value.decode("latin-1").strip()
            return float(text) if text.isdigit() else None
    return None


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Sender:
    """The connection pools of one deliver process: one for subscriptions under the address rules, one for
    those an admin allowed private addresses (so a connection made for one is never reused by the other)."""

    def __init__(self, policy: Policy, *, timeout: float, connections: int) -> None:
        self.timeout = timeout
        lenient = dataclasses.replace(policy, allow_private=True)
        self._pools = {
            allow: httpcore.AsyncConnectionPool(
                network_backend=GuardedBackend(p),
                max_connections=connections,
                max_keepalive_connections=connections,
                keepalive_expiry=30.0,
                retries=0,
            )
            for allow, p in ((False, policy), (True, lenient))
        }

    async def post(self, url: str, body: bytes, headers: list[tuple[bytes, bytes]], *, allow_private: bool) -> Answer:
        pool = self._pools[allow_private]
        try:
            parse(url)  # the stored URL is checked like a new one: it may predate a rule
        except UrlRefused as exc:
            return Answer(status=None, error=exc.message, duration_ms=0)
        started = time.monotonic()
        all_headers = [
            (b"content-type", b"application/json"),
            (b"user-agent", USER_AGENT),
            *headers,
        ]
        timeouts = {"connect": self.timeout, "read": self.timeout, "write": self.timeout, "pool": self.timeout}
        status: int | None = None
        error: str | None = None
        retry_after: float | None = None
        try:
            # The per-read timeouts alone would let a receiver that answers a byte at a time hold on for ever.
            async with asyncio.timeout(self.timeout):
                async with pool.stream(
                    "POST", url, headers=all_headers, content=body, extensions={"timeout": timeouts}
                ) as response:
                    status = response.status
                    retry_after = _retry_after(response.headers)
                    read = 0
                    async for chunk in response.aiter_stream():
                        read += len(chunk)
                        if read > MAX_ANSWER_BYTES:
                            break
        except UrlRefused as exc:
            status, error = None, exc.message
        except TimeoutError:
            error = f"no answer within {self.timeout:g} s" if status is None else None
        except httpcore.TimeoutException:
            error = f"no answer within {self.timeout:g} s"
        except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol, OSError) as exc:
            if status is None:
                error = _describe(exc)
        if status is not None and error is None and not 200 <= status < 300:
            error = f"HTTP {status}" + (" (redirects are not followed)" if 300 <= status < 400 else "")
        return Answer(
            status=status,
            error=error,
            duration_ms=int((time.monotonic() - started) * 1000),
            retry_after=retry_after,
        )

    async def close(self) -> None:
        for pool in self._pools.values():
            await pool.aclose()
