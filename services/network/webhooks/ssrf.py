"""Where a webhook may be delivered: never to our own network, unless allow-listed.

A URL's host is resolved and every address it resolves to must be public: private,
loopback, link-local, multicast, unspecified and reserved addresses (and IPv4 ones
mapped into IPv6) are refused unless the host name, or a CIDR holding the address, is in
`VALUECHAIN_NETWORK_WEBHOOK_ALLOW_HOSTS`. http:// is refused outside that allow-list.
The check runs when a subscription is made or its URL changed, and again before every
delivery (a host may resolve elsewhere by then: DNS rebinding); deliveries reuse a
resolution for `RESOLVE_TTL_S`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

RESOLVE_TTL_S = 10.0
RESOLVE_TIMEOUT_S = 5.0


class InvalidUrl(ValueError):
    """Not an absolute http(s) URL with a host."""


class UrlNotAllowed(ValueError):
    """A URL whose host is ours (private, loopback, ...) or http:// outside the allow-list."""


@dataclass(frozen=True)
class AllowList:
    hosts: frozenset[str] = frozenset()
    networks: tuple[Network, ...] = ()

    @classmethod
    def of(cls, entries: Iterable[str]) -> AllowList:
        hosts, networks = set(), []
        for entry in entries:
            entry = entry.strip().lower()
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry)
        return cls(frozenset(hosts), tuple(networks))

    def allows(self, host: str, address: Address | None = None) -> bool:
        if host.lower() in self.hosts:
            return True
        return address is not None and any(address in network for network in self.networks)


def blocked(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_unspecified
        or address.is_reserved
    )


def parse(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an absolute http(s) URL; InvalidUrl otherwise."""

    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidUrl(f"not a URL: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise InvalidUrl("not an http:// or https:// URL")
    host = parts.hostname
    if not host or any(ch.isspace() for ch in url):
        raise InvalidUrl("a URL with a host is needed")
    if parts.username or parts.password:
        raise InvalidUrl("credentials in the URL are not accepted")
    return parts.scheme, host, port or (443 if parts.scheme == "https" else 80)


async def resolve(host: str, port: int) -> list[Address]:
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_S)
    except (OSError, UnicodeError, ValueError, TimeoutError) as exc:
        raise InvalidUrl(f"the host {host} does not resolve") from exc
    return list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))


async def check(url: str, allow: AllowList) -> None:
    """Refuse `url` (InvalidUrl, UrlNotAllowed) unless it may be delivered to now."""

    scheme, host, port = parse(url)
    addresses = await resolve(host, port)
    listed = [allow.allows(host, address) for address in addresses]
    if scheme == "http" and not all(listed):
        raise UrlNotAllowed(f"http:// is refused for {host}: use https://")
    for address, ok in zip(addresses, listed):
        if blocked(address) and not ok:
            raise UrlNotAllowed(f"{host} resolves to {address}, a private or reserved address")


@dataclass
class Guard:
    """`check` for deliveries, each URL's verdict reused for RESOLVE_TTL_S."""

    allow: AllowList
    _verdicts: dict[str, tuple[float, str | None]] = field(default_factory=dict)

    async def refused(self, url: str) -> str | None:
        """Why a delivery to `url` is refused now, or None."""

        now = time.monotonic()
        cached = self._verdicts.get(url)
        if cached is not None and now - cached[0] < RESOLVE_TTL_S:
            return cached[1]
        try:
            await check(url, self.allow)
            verdict = None
        except (InvalidUrl, UrlNotAllowed) as exc:
            verdict = str(exc)
        self._verdicts[url] = (now, verdict)
        return verdict
