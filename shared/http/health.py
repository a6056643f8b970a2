"""Liveness (`/healthz`), readiness (`/readyz`) and metrics (`/metrics`) of a service.

Readiness names what is not ready: the database, NATS, each consumer (a stalled one
too, and one not provisioned: missing, or with other subjects); a retrying outbox
relay is reported but does not make the service unready, nor do its leases (what this
replica holds, what it stands by for: shared/db/leases.py).

NATS is asked, not only looked at: a PING must come back within NATS_ANSWER_S. A server
that is paused (a long GC stall, a SIGSTOP) keeps its TCP connection open, and nats-py
notices it only after two unanswered pings (about 10-15 s) before it moves to another
node of the cluster; until then the service is not ready, and says why.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text

from shared.events.bus import Bus
from shared.service.runtime import Runtime

NATS_ANSWER_S = 2.0


async def nats_check(bus: Bus) -> str:
    """`ok` when the connection answers a PING in time."""

    if not bus.is_connected or bus.nc is None:
        return "disconnected"
    try:
        await bus.nc.flush(timeout=NATS_ANSWER_S)  # type: ignore[arg-type]  # (nats-py annotates int)
    except Exception:  # noqa: BLE001 - no answer, or the connection went while asking
        return f"no answer within {NATS_ANSWER_S:g} s"
    return "ok"


# Reported, never failing readiness: events wait safely in the outbox, and a replica standing
# by (holding no lease) serves requests all the same.
INFORMATIVE = ("outbox_relay", "leases")


def leases_state(runtime: Runtime[Any]) -> str:
    """What this replica holds of the work one replica does at a time (shared/db/leases.py)."""

    leases = runtime.leases
    if leases.last_error is not None:
        return f"renewal failing: {leases.last_error}"
    held = sorted(name for name, lease in leases.leases.items() if lease.held)
    waiting = len(leases.leases) - len(held)
    return f"holds {len(held)}, stands by for {waiting}" if held else f"stands by for {waiting}"


def health_router() -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", response_model=None)  # the document has always said no more than JSON
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        runtime: Runtime[Any] = request.app.state.runtime
        checks: dict[str, str] = {}
        try:
            async with runtime.db.reader() as session:
                await asyncio.wait_for(session.execute(text("SELECT 1")), timeout=2)
            checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001
            checks["database"] = f"unreachable: {exc.__class__.__name__}"
        checks["nats"] = await nats_check(runtime.bus)
        for runner in runtime.consumers:
            checks[f"consumer:{runner.name}"] = "stalled" if runner.stalled else (runner.problem or "ok")
        checks["outbox_relay"] = "ok" if runtime.relay.last_error is None else f"retrying: {runtime.relay.last_error}"
        checks["leases"] = leases_state(runtime)
        ready = all(value == "ok" for key, value in checks.items() if key not in INFORMATIVE)
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": checks}, status_code=200 if ready else 503
        )

    @router.get("/metrics")
    async def metrics(request: Request) -> Response:
        runtime: Runtime[Any] = request.app.state.runtime
        try:
            runtime.metrics.outbox_pending.labels(runtime.settings.service).set(await runtime.relay.pending_count())
        except Exception:  # noqa: BLE001 - metrics must not fail on a busy database
            pass
        return Response(runtime.metrics.render(), media_type="text/plain; version=0.0.4")

    return router
