"""Readiness: every service has a replica whose /readyz answers 200, and NATS lets the
gateway's user in; and the rotation of a service's replicas, kept by the same check."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import nats

from gateway.upstream import ReplicaSet, ServicePool, UpstreamConnectFailed, UpstreamError, Upstreams, UpstreamTimeout
from shared.nats_auth import MissingCredentials, NatsCredentials

NATS_DEFAULT_PORT = 4222
log = logging.getLogger("gateway.rotation")


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


async def check_replica(pool: ServicePool, timeout: float) -> tuple[str, bool]:
    """One replica's /readyz, asked straight (with the internal secret every request carries):
    "ready" or why not, and whether its connection was refused."""

    try:
        response = await pool.request("GET", b"/readyz", b"accept: application/json\r\n", timeout=timeout)
    except UpstreamTimeout:
        return "not ready: timed out", False
    except UpstreamError as exc:
        return "not ready: unavailable", isinstance(exc, UpstreamConnectFailed)
    if response.status == 200:
        return "ready", False
    return f"not ready: /readyz answered {response.status}", False


async def check_replicas(upstreams: Upstreams, service: str, timeout: float) -> list[str]:
    """Every replica of the service checked at once; a service with several replicas takes
    the results for its rotation (ReplicaSet.checked)."""

    pools = upstreams.replicas(service)
    checked = await asyncio.gather(*(check_replica(pool, timeout) for pool in pools))
    upstream = upstreams[service]
    if isinstance(upstream, ReplicaSet):
        for pool, (result, refused) in zip(pools, checked):
            upstream.checked(pool, result, refused=refused)
    return [result for result, _ in checked]


async def readiness(
    upstreams: Upstreams,
    services: list[str],
    nats_url: str,
    timeout: float,
    nats_credentials: Callable[[], NatsCredentials],
) -> tuple[bool, dict[str, Any]]:
    """Ready when every service has at least one ready replica and NATS lets the gateway in.

    `checks` has one line per service ("ready", or why its replica is not: with several,
    the first one's reason when none is ready) and NATS; `replicas` says per service how
    many are healthy of how many, and names those that are not with the reason."""

    per_service, nats_check = await asyncio.gather(
        asyncio.gather(*(check_replicas(upstreams, service, timeout) for service in services)),
        check_nats(nats_url, timeout, nats_credentials),
    )
    checks: dict[str, str] = {}
    replicas: dict[str, dict[str, Any]] = {}
    for service, results in zip(services, per_service):
        healthy = sum(result == "ready" for result in results)
        checks[service] = "ready" if healthy else results[0]
        entry: dict[str, Any] = {"healthy": healthy, "total": len(results)}
        down = {
            pool.base_url: result for pool, result in zip(upstreams.replicas(service), results) if result != "ready"
        }
        if down:
            entry["not_ready"] = down
        replicas[service] = entry
    checks["nats"] = nats_check
    ready = all(value == "ready" for value in checks.values())
    return ready, {"status": "ready" if ready else "not ready", "checks": checks, "replicas": replicas}


class RotationKeeper:
    """Checks every replica of each service with several, `interval` seconds after the last
    round ended (each check bounded by `timeout`), and
    takes them out of the rotation or puts them back (ReplicaSet.set_health). A replica
    whose connection is refused leaves at once (ReplicaSet); this is how it comes back.
    Services with one replica are not checked here: there is no rotation to keep."""

    def __init__(self, upstreams: Upstreams, *, interval: float, timeout: float):
        self.upstreams = upstreams
        self.interval = interval
        self.timeout = timeout
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        sets = self.upstreams.replica_sets()
        for replica_set in sets:
            replica_set.on_change = _log_change
        if sets and self._task is None:
            self._task = asyncio.create_task(self._run(sets), name="gateway-rotation")

    async def _run(self, sets: list[ReplicaSet]) -> None:
        while True:
            try:
                await asyncio.gather(*(check_replicas(self.upstreams, s.service, self.timeout) for s in sets))
            except Exception:  # logged; the next round tries again
                log.exception("checking the replicas failed")
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _log_change(pool: ServicePool, healthy: bool) -> None:
    fields = {"service": pool.service, "replica": pool.base_url, "reason": pool.health}
    if healthy:
        log.info("replica back in rotation", extra={"fields": fields})
    else:
        log.warning("replica out of rotation", extra={"fields": fields})
