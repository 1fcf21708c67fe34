"""Which callback URLs the service may call. Pure: no I/O (the caller resolves names).

A callback URL must be ``http`` or ``https``, carry no credentials, and name a host. Every address its host
resolves to must be a public or private unicast address: loopback, link-local (``169.254/16``, ``fe80::/10``,
where cloud metadata services answer), unspecified, multicast, broadcast and the known metadata addresses
are refused, because a subscription must not turn the deliverer into a way of reaching what only the
machine itself can reach. Private networks (``10/8``, ``192.168/16``, ``fc00::/7``) are allowed: the
departments' systems sit on the government's private network. An admin lifts the address rules for one
subscription (``allow_private``), a deployment for whole networks (``TRACE_WEBHOOK_ALLOWED_NETWORKS``);
nothing lifts the refusal of the service itself (``TRACE_PUBLIC_BASE_URL``'s host and port) or of the networks a
deployment denies (``TRACE_WEBHOOK_DENIED_NETWORKS``: its own database and broker on a private network).

The same rules are applied again at delivery time to the address actually connected to
(:mod:`trace_service.delivery.transport`), since a name may resolve elsewhere by then.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_URL_LENGTH = 2000

# Cloud metadata services outside the link-local range: Alibaba Cloud (100.100.100.200, in the carrier-grade
# NAT range) and AWS over IPv6 (fd00:ec2::254, a unique-local address).
METADATA = (ipaddress.ip_address("100.100.100.200"), ipaddress.ip_address("fd00:ec2::254"))
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_BROADCAST = ipaddress.ip_address("255.255.255.255")


class UrlRefused(ValueError):
    """A callback URL the service will not call; ``code`` is the error code of the 422."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Target:
    """What a callback URL points at: scheme, host (lower case, no trailing dot) and port."""

    scheme: str
    host: str
    port: int

    @property
    def literal(self) -> IPAddress | None:
        """The host as an IP address when it is written as one."""
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None


def _split(url: str) -> SplitResult:
    try:
        return urlsplit(url)
    except ValueError as exc:
        raise UrlRefused("url_invalid", f"the URL cannot be parsed: {exc}") from None


def parse(url: str) -> Target:
    """The target of a callback URL, or :class:`UrlRefused` for one that is not a plain http(s) URL."""
    if len(url) > MAX_URL_LENGTH:
        raise UrlRefused("url_invalid", f"the URL is longer than {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 0x20 for c in url):
        raise UrlRefused("url_invalid", "the URL contains white space or control characters")
    parts = _split(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UrlRefused("url_not_http", "the callback URL must be http:// or https://")
    if "@" in parts.netloc:
        # Credentials in a URL end up in logs and in the subscription as shown to staff.
        raise UrlRefused("url_has_credentials", "the callback URL must not carry a user name or password")
    if parts.fragment:
        raise UrlRefused("url_invalid", "the callback URL must not have a fragment (#...)")
    try:
        host, port = parts.hostname, parts.port
    except ValueError as exc:  # a port that is not a number or out of range
        raise UrlRefused("url_invalid", f"the URL's port is not valid: {exc}") from None
    if not host:
        raise UrlRefused("url_invalid", "the callback URL has no host")
    host = host.rstrip(".").lower()
    if not host:
        raise UrlRefused("url_invalid", "the callback URL has no host")
    return Target(scheme=scheme, host=host, port=port or (443 if scheme == "https" else 80))


def normalise(address: IPAddress) -> IPAddress:
    """An IPv4 address written as IPv6 (``::ffff:127.0.0.1``) is judged as the IPv4 address it is."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:
            return mapped
    return address


def refusal(address: IPAddress) -> str | None:
    """Why the deliverer must not connect to this address (a short reason), or None when it may."""
    a = normalise(address)
    if a.is_loopback:
        return "loopback"
    if a.is_unspecified or (isinstance(a, ipaddress.IPv4Address) and a in _THIS_NETWORK):
        return "unspecified"
    if a.is_link_local:
        return "link-local (cloud metadata lives there)"
    if a.is_multicast:
        return "multicast"
    if a == _BROADCAST:
        return "broadcast"
    if a in METADATA:
        return "a cloud metadata service"
    return None


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """The allowed networks of the settings; ValueError names one that is not a network."""
    out = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(value, strict=False))
        except ValueError:
            message = f"TRACE_WEBHOOK_ALLOWED/DENIED_NETWORKS: {value!r} is not a network (e.g. 10.20.0.0/16)"
            raise ValueError(message) from None
    return tuple(out)


def _within(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    return any(address.version == n.version and address in n for n in networks)


@dataclass(frozen=True)
class Policy:
    """The address rules in force for one subscription."""

    allow_private: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()
    denied_networks: tuple[IPNetwork, ...] = ()
    # The service itself: its public host name, the addresses it resolves to, and its port.
    self_host: str = ""
    self_addresses: frozenset[IPAddress] = frozenset()
    self_port: int = 0

    def check_address(self, address: IPAddress, port: int) -> None:
        """:class:`UrlRefused` when the deliverer must not connect to ``address:port``."""
        a = normalise(address)
        if port == self.self_port and a in self.self_addresses:
            raise UrlRefused("url_is_self", f"{a} port {port} is this service itself")
        if _within(a, self.denied_networks):
            raise UrlRefused(
                "url_private_address", f"the callback URL resolves to {a}, in a network this service refuses"
            )
        reason = refusal(a)
        if reason is None or self.allow_private:
            return
        if _within(a, self.allowed_networks):
            return
        raise UrlRefused(
            "url_private_address",
            f"the callback URL resolves to {a}, which is {reason}; only an admin may allow that (allow_private)",
        )

    def check(self, target: Target, addresses: Sequence[IPAddress]) -> None:
        """Check a target and every address its host resolved to."""
        if target.host == self.self_host and target.port == self.self_port:
            raise UrlRefused("url_is_self", "the callback URL is this service itself (TRACE_PUBLIC_BASE_URL)")
        if not addresses:
            raise UrlRefused("url_unresolvable", f"the host {target.host} does not resolve")
        for address in addresses:
            self.check_address(address, target.port)


def self_target(public_base_url: str) -> Target:
    """The service's own host and port, from ``TRACE_PUBLIC_BASE_URL``."""
    return parse(public_base_url)
