"""A customer's data export (GDPR Art. 15/20): a job the gateway runs.

`POST /v1/customers/{id}/exports` asks identify first (404 for an unknown customer),
then gathers what every service holds about the customer from its internal
`GET /internal/customers/{id}/personal-data` (shared/privacy/export.py) over internal HTTP,
so no personal data goes on the bus for it. The job finishes as one JSON document: per
service, per table, the rows and why they are kept. `GET /v1/exports/{id}` says how far it
is; `GET /v1/exports/{id}/download` hands the document over once (then 410), and the
document is dropped.

Jobs are kept by an `ExportStore`. The one here keeps them in the process's memory (a job
is lost when the gateway restarts, and one replica cannot serve another's job): the seam
for the gateway's own database (issue 12's `VALUECHAIN_GATEWAY_DATABASE_URL`), where
export jobs belong, is this protocol.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol
from urllib.parse import quote

import orjson
from fastapi import FastAPI, Request, status
from fastapi.responses import Response
from pydantic import BaseModel, Field

from gateway.deps import caller
from gateway.proxy import SCOPE_CORRELATION_ID, SCOPE_REQUEST_ID
from gateway.settings import SERVICES
from gateway.upstream import UpstreamError, UpstreamResponse, Upstreams
from shared.db.ids import uuid7
from shared.http.errors import AppError, Conflict, NotFound

log = logging.getLogger("gateway.exports")

PERSONAL_DATA = "/internal/customers/{id}/personal-data"
Status = Literal["running", "done", "failed", "downloaded"]


class ExportOut(BaseModel):
    id: str
    customer_id: str
    status: Status = Field(description="running, done (ready to download), failed, or downloaded (once)")
    requested_at: datetime
    finished_at: datetime | None = None
    failure: str | None = None
    requested_by: str | None = Field(None, description="Who asked (the key or JWT subject); they or an admin download")


@dataclass
class ExportJob:
    id: str
    customer_id: str
    requested_at: datetime
    requested_by: str | None = None
    status: Status = "running"
    finished_at: datetime | None = None
    failure: str | None = None
    document: bytes | None = field(default=None, repr=False)

    def out(self) -> dict[str, Any]:
        return ExportOut.model_validate(self, from_attributes=True).model_dump()


class ExportStore(Protocol):
    async def add(self, job: ExportJob) -> None: ...
    async def get(self, export_id: str) -> ExportJob | None: ...
    async def finish(self, export_id: str, document: bytes) -> None: ...
    async def fail(self, export_id: str, reason: str) -> None: ...
    async def take(self, export_id: str) -> bytes | None:
        """The document, once: afterwards the job reads `downloaded` and the document is gone."""
        ...


class MemoryExportStore:
    def __init__(self) -> None:
        self.jobs: dict[str, ExportJob] = {}

    async def add(self, job: ExportJob) -> None:
        self.jobs[job.id] = job

    async def get(self, export_id: str) -> ExportJob | None:
        return self.jobs.get(export_id)

    async def finish(self, export_id: str, document: bytes) -> None:
        job = self.jobs[export_id]
        job.status, job.document, job.finished_at = "done", document, datetime.now(UTC)

    async def fail(self, export_id: str, reason: str) -> None:
        job = self.jobs[export_id]
        job.status, job.failure, job.finished_at = "failed", reason, datetime.now(UTC)

    async def take(self, export_id: str) -> bytes | None:
        job = self.jobs.get(export_id)
        if job is None or job.status != "done":
            return None
        document, job.document, job.status = job.document, None, "downloaded"
        return document


class UnknownCustomer(Exception):
    pass


class Gone(AppError):
    status_code = 410
    error = "gone"


async def _personal_data(
    upstreams: Upstreams, service: str, customer_id: str, headers: bytes, timeout: float
) -> UpstreamResponse:
    target = PERSONAL_DATA.replace("{id}", quote(customer_id, safe="")).encode("ascii")
    return await upstreams[service].request("GET", target, headers, timeout=timeout)


async def start_export(
    store: ExportStore,
    upstreams: Upstreams,
    customer_id: str,
    *,
    requested_by: str | None,
    headers: bytes,
    timeout: float,
    tasks: set[asyncio.Task[None]],
) -> ExportJob:
    """Check the customer with identify, record the job, and gather the rest in the background."""

    first = await _personal_data(upstreams, "identify", customer_id, headers, timeout)
    if first.status == 404:
        raise UnknownCustomer(customer_id)
    job = ExportJob(uuid7(), customer_id, datetime.now(UTC), requested_by)
    await store.add(job)

    async def gather() -> None:
        try:
            document = await _gather(upstreams, job, first.body if first.status == 200 else None, headers, timeout)
        except Exception as exc:  # noqa: BLE001 - the job says it failed
            log.warning("export failed", extra={"fields": {"export_id": job.id, "error": type(exc).__name__}})
            await store.fail(job.id, "a service could not be read; ask again")
            return
        await store.finish(job.id, document)

    task = asyncio.create_task(gather(), name=f"export-{job.id}")
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    return job


async def _gather(
    upstreams: Upstreams, job: ExportJob, identify: bytes | None, headers: bytes, timeout: float
) -> bytes:
    services: dict[str, Any] = {}
    for service in SERVICES:
        if service == "identify" and identify is not None:
            body = identify
        else:
            try:
                response = await _personal_data(upstreams, service, job.customer_id, headers, timeout)
            except UpstreamError as exc:
                raise RuntimeError(f"{service} unavailable") from exc
            if response.status != 200:
                raise RuntimeError(f"{service} answered {response.status}")
            body = response.body
        answer = orjson.loads(body)
        services[service] = {"customer_ids": answer["customer_ids"], "tables": answer["tables"]}
    document = {
        "export_id": job.id,
        "customer_id": job.customer_id,
        "requested_at": job.requested_at,
        "generated_at": datetime.now(UTC),
        "services": services,
    }
    return orjson.dumps(document)


def install_exports(
    app: FastAPI, upstreams_or_503: Callable[[], Upstreams], *, timeout: float, store: ExportStore | None = None
) -> None:
    """The export routes on the gateway's own app (the route table marks them the gateway's)."""

    jobs: ExportStore = store or MemoryExportStore()
    tasks: set[asyncio.Task[None]] = set()
    app.state.exports = jobs

    def checked(request: Request) -> bytes:
        scope = request.scope
        caller(request)  # only reachable through the front, which resolves the caller
        return (
            f"accept: application/json\r\nx-request-id: {scope.get(SCOPE_REQUEST_ID) or ''}\r\n"
            f"x-correlation-id: {scope.get(SCOPE_CORRELATION_ID) or ''}\r\n"
        ).encode("latin-1")

    @app.post(
        "/v1/customers/{customer_id}/exports",
        tags=["gateway"],
        status_code=status.HTTP_202_ACCEPTED,
        summary="Export what every service holds about a customer (GDPR Art. 15/20), as a job",
        response_model=ExportOut,
        responses={404: {"description": "No such customer"}},
    )
    async def create_export(customer_id: str, request: Request) -> dict[str, Any]:
        headers = checked(request)
        try:
            job = await start_export(
                jobs, upstreams_or_503(), customer_id, requested_by=None, headers=headers, timeout=timeout, tasks=tasks
            )
        except UnknownCustomer:
            raise NotFound(f"no customer with id {customer_id}") from None
        return job.out()

    @app.get("/v1/exports/{export_id}", tags=["gateway"], summary="An export job's status", response_model=ExportOut)
    async def get_export(export_id: str, request: Request) -> dict[str, Any]:
        checked(request)
        job = await jobs.get(export_id)
        if job is None:
            raise NotFound(f"no export with id {export_id}")
        return job.out()

    @app.get(
        "/v1/exports/{export_id}/download",
        tags=["gateway"],
        summary="The finished export, once: per service and table, the rows held and why",
        responses={409: {"description": "Not finished yet"}, 410: {"description": "Already downloaded"}},
    )
    async def download_export(export_id: str, request: Request) -> Response:
        checked(request)
        job = await jobs.get(export_id)
        if job is None:
            raise NotFound(f"no export with id {export_id}")
        document = await jobs.take(export_id)
        if document is None:
            if job.status == "downloaded":
                raise Gone(f"export {export_id} was downloaded already (an export is handed over once)")
            raise Conflict(f"export {export_id} is {job.status}", error="export_not_ready")
        return Response(
            document,
            media_type="application/json",
            headers={
                "content-disposition": f'attachment; filename="export-{export_id}.json"',
                "cache-control": "no-store",
            },
        )
