"""Readiness: every service's /readyz answers 200 and NATS accepts a TCP connection."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

from gateway.upstream import UpstreamError, Upstreams, UpstreamTimeout

NATS_DEFAULT_PORT = 4222


def nats_addresses(nats_url: str) -> list[tuple[str, int]]:
    """Host/port pairs from a NATS URL (`nats://h:4222`, or several separated by commas)."""

    addresses = []
    for item in nats_url.split(","):
        item = item.strip()
        if not item:
            continue
        if "://" not in item:
            item = "nats://" + item
        parts = urlsplit(item)
        if parts.hostname:
            addresses.append((parts.hostname, parts.port or NATS_DEFAULT_PORT))
    return addresses


async def check_nats(nats_url: str, timeout: float) -> str:
    addresses = nats_addresses(nats_url)
    if not addresses:
        return f"not ready: no server in {nats_url!r}"
    last = ""
    for host, port in addresses:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except (OSError, TimeoutError) as exc:
            last = f"not ready: {host}:{port} unreachable ({type(exc).__name__})"
            continue
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
        return "ready"
    return last


async def check_service(upstreams: Upstreams, service: str, timeout: float) -> str:
    try:
        response = await upstreams[service].request("GET", b"/readyz", b"accept: application/json\r\n", timeout=timeout)
    except UpstreamTimeout:
        return "not ready: timed out"
    except UpstreamError:
        return "not ready: unavailable"
    if response.status == 200:
        return "ready"
    return f"not ready: /readyz answered {response.status}"


async def readiness(
    upstreams: Upstreams, services: list[str], nats_url: str, timeout: float
) -> tuple[bool, dict[str, Any]]:
    checks = await asyncio.gather(
        *(check_service(upstreams, service, timeout) for service in services),
        check_nats(nats_url, timeout),
    )
    results = dict(zip([*services, "nats"], checks))
    ready = all(value == "ready" for value in results.values())
    return ready, {"status": "ready" if ready else "not ready", "checks": results}
