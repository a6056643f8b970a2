"""Readiness: every service's /readyz answers 200 and NATS lets the gateway's user in."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import nats

from gateway.upstream import UpstreamError, Upstreams, UpstreamTimeout
from shared.nats_auth import MissingCredentials, NatsCredentials

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


async def check_nats(nats_url: str, timeout: float, credentials: Callable[[], NatsCredentials]) -> str:
    """Connect as the gateway's NATS user and leave: a server that is up but refuses the
    gateway's credentials is not ready either."""

    addresses = nats_addresses(nats_url)
    if not addresses:
        return f"not ready: no server in {nats_url!r}"
    try:
        options = credentials().connect_options()
    except (MissingCredentials, ValueError) as exc:
        return f"not ready: {exc}"

    async def quiet(exc: Exception) -> None:
        return None

    # One server at a time (a cluster's nodes): a paused node accepts the connection but never
    # answers, and nats-py gives up on the whole list at that first silent server.
    each = timeout / len(addresses)
    problem = "not ready: unreachable"
    for host, port in addresses:
        try:
            nc = await asyncio.wait_for(
                nats.connect(
                    servers=[f"nats://{host}:{port}"],
                    connect_timeout=each,
                    allow_reconnect=False,
                    max_reconnect_attempts=1,  # (0 is "no limit" to nats-py)
                    reconnect_time_wait=0,
                    error_cb=quiet,
                    **options,
                ),
                each,
            )
        except Exception as exc:  # noqa: BLE001 - whatever it is, this server is not usable
            if "authorization violation" in str(exc).lower():
                return "not ready: NATS refused the gateway's credentials"
            problem = f"not ready: unreachable ({type(exc).__name__})"
            continue
        await nc.close()
        return "ready"
    return problem


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
    upstreams: Upstreams,
    services: list[str],
    nats_url: str,
    timeout: float,
    nats_credentials: Callable[[], NatsCredentials],
) -> tuple[bool, dict[str, Any]]:
    checks = await asyncio.gather(
        *(check_service(upstreams, service, timeout) for service in services),
        check_nats(nats_url, timeout, nats_credentials),
    )
    results = dict(zip([*services, "nats"], checks))
    ready = all(value == "ready" for value in results.values())
    return ready, {"status": "ready" if ready else "not ready", "checks": results}
