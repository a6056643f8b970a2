"""A customer's data export (GDPR Art. 15/20): a job the gateway runs, kept in its database.

`POST /v1/customers/{id}/exports` asks identify first (404 for an unknown customer),
then gathers what every service holds about the customer from its internal
`GET /internal/customers/{id}/personal-data` (shared/privacy/export.py) over internal HTTP,
so no personal data goes on the bus for it. The job finishes as one JSON document: per
service, per table, the rows and why they are kept. `GET /v1/exports/{id}` says how far it
is; `GET /v1/exports/{id}/download` hands the document over once (then 410).

Jobs live in the gateway's database (`export_jobs`, gateway/store.py), so a finished job
survives a restart and any replica serves it. Only whoever asked (the same principal id)
or an admin sees a job; anyone else gets the 404 of a job that does not exist. The
document is personal data at rest until it is downloaded: the download takes it and
drops it in one transaction (a conditional UPDATE claims it, so of two concurrent
downloads one gets it and the other a 410; on SQLite, whose pages are zeroed when freed
(`secure_delete`), the WAL is checkpointed and truncated after it, as after an erasure),
and a document not fetched within `export_retention_s` is deleted (status `expired`) by a
sweep at start, every `export_sweep_s`, on each new job and when the job is read; an
expired one is never handed over.

A job is gathered by the process that started it, within a deadline. At a clean stop the
process marks its unfinished jobs failed; after a crash, a job still `running` past its
deadline (plus a minute of clock slack between replicas) is marked failed by the next
sweep of any gateway, the one at start included. Either way the client asks again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import quote

import orjson
from fastapi import FastAPI, Request, status
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy import Index, LargeBinary, String, Text, select, update
from sqlalchemy.orm import Mapped, mapped_column

from gateway.audit.writer import annotate
from gateway.deps import caller, store
from gateway.principal import Principal
from gateway.proxy import SCOPE_CORRELATION_ID, SCOPE_REQUEST_ID
from gateway.settings import SERVICES
from gateway.store import Base
from gateway.upstream import UpstreamError, UpstreamResponse, Upstreams
from shared.db.database import Database, UTCDateTime
from shared.db.ids import uuid7
from shared.http.errors import AppError, Conflict, NotFound
from shared.privacy.erasure import checkpoint_after_commit

log = logging.getLogger("gateway.exports")

PERSONAL_DATA = "/internal/customers/{id}/personal-data"
Status = Literal["running", "done", "failed", "downloaded", "expired", "erased"]
STOPPED = "the gateway stopped before the export finished; ask again"
UNREADABLE = "a service could not be read; ask again"
_CLOCK_SLACK = timedelta(minutes=1)


class ExportJob(Base):
    __tablename__ = "export_jobs"
    __table_args__ = (Index("ix_export_jobs_status_created_at", "status", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(200))
    requested_by: Mapped[str] = mapped_column(String(200))  # the principal's id (gateway/principal.py)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    downloaded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failure: Mapped[str | None] = mapped_column(Text)
    # The finished document, until it is downloaded or expires: personal data at rest.
    document: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)


class ExportOut(BaseModel):
    id: str
    customer_id: str
    status: Status = Field(
        description="running, done (ready to download), failed, downloaded (handed over once), "
        "expired (not fetched within the retention; the document is deleted), "
        "or erased (the customer was erased before it was downloaded; the document is deleted)"
    )
    requested_at: datetime
    finished_at: datetime | None = None
    downloaded_at: datetime | None = None
    failure: str | None = None
    requested_by: str = Field(description="Who asked (the key id or jwt:<sub>); only they or an admin see the job")


class Gone(AppError):
    status_code = 410
    error = "gone"


class UnknownCustomer(Exception):
    pass


def now() -> datetime:
    return datetime.now(UTC)


class ExportJobs:
    """The export jobs of one gateway process: its database rows, and the gathering tasks it runs."""

    def __init__(self, *, timeout: float, retention_s: float, sweep_s: float):
        self.timeout = timeout
        self.retention = timedelta(seconds=retention_s)
        self.sweep_s = sweep_s
        # Five services one after another, each within the timeout, and a margin: gathering
        # is cut off there (asyncio.timeout), so a job running longer has no process behind it.
        self.deadline = timeout * (len(SERVICES) + 1)
        self.store: Database | None = None
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self._sweeper: asyncio.Task[None] | None = None

    # -- lifespan ------------------------------------------------------------

    async def start(self, database: Database) -> None:
        self.store = database
        await self._sweep_logged()  # the gateway starts (and proxies) even with its database away
        self._sweeper = asyncio.create_task(self._sweep_every(), name="export-sweep")

    async def stop(self) -> None:
        """Stop the sweep, and mark the jobs this process was still gathering failed."""

        tasks = list(self.tasks.values())
        for task in [*tasks, *([self._sweeper] if self._sweeper else [])]:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._sweeper is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        if self.tasks and self.store is not None:
            try:
                await self._fail(list(self.tasks), STOPPED)
            except Exception:  # the database is away: the next start's sweep fails them
                log.exception("export jobs left running at stop", extra={"fields": {"jobs": len(self.tasks)}})
        self.tasks.clear()
        self.store = None

    async def _sweep_every(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_s)
            await self._sweep_logged()

    async def _sweep_logged(self) -> None:
        try:
            await self.sweep()
        except Exception:  # the database is away: the next round tries again
            log.exception("export sweep failed")

    def _db(self) -> Database:
        assert self.store is not None, "export jobs used before the gateway started"
        return self.store

    # -- the rows --------------------------------------------------------------

    async def sweep(self) -> None:
        """Delete documents not fetched within the retention; fail jobs no process is gathering."""

        at = now()
        async with self._db().writer() as session, session.begin():
            expired = await session.execute(
                update(ExportJob)
                .where(ExportJob.status == "done", ExportJob.finished_at < at - self.retention)
                .values(status="expired", document=None)
            )
            if expired.rowcount:  # type: ignore[attr-defined]
                checkpoint_after_commit(session)  # SQLite's WAL still holds the documents' pages
            abandoned = await session.execute(
                update(ExportJob)
                .where(
                    ExportJob.status == "running",
                    ExportJob.created_at < at - timedelta(seconds=self.deadline) - _CLOCK_SLACK,
                    ExportJob.id.not_in(list(self.tasks)),
                )
                .values(status="failed", failure=STOPPED, finished_at=at)
            )
        if expired.rowcount or abandoned.rowcount:  # type: ignore[attr-defined]
            log.info(
                "export sweep",
                extra={"fields": {"expired": expired.rowcount, "abandoned": abandoned.rowcount}},  # type: ignore[attr-defined]
            )

    async def get(self, export_id: str, principal: Principal) -> ExportJob:
        """The job, if this caller may see it: whoever asked, or an admin. Else 404, as for no job."""

        async with self._db().reader() as session:
            job = await session.get(ExportJob, export_id)
        if job is None or not (principal.role == "admin" or job.requested_by == principal.id):
            raise NotFound(f"no export with id {export_id}")
        if job.status == "done" and job.finished_at is not None and job.finished_at < now() - self.retention:
            await self.sweep()  # past the retention: deleted now, not at the next round
            job.status = "expired"
        return job

    async def forget_customers(self, customer_ids: list[str]) -> int:
        """An erasure reached the customers: their pending export documents go too, and a job
        still gathering never stores one (`_finish` finishes only a running job)."""

        async with self._db().writer() as session, session.begin():
            erased = await session.execute(
                update(ExportJob)
                .where(ExportJob.customer_id.in_(customer_ids), ExportJob.status.in_(("running", "done")))
                .values(status="erased", document=None, finished_at=now())
            )
            if erased.rowcount:  # type: ignore[attr-defined]
                checkpoint_after_commit(session)  # SQLite's WAL still holds the documents' pages
        return int(erased.rowcount)  # type: ignore[attr-defined]

    async def after_erasure(self, answer: bytes) -> None:
        """The front calls this with identify's 2xx answer to `POST /v1/customers/{id}/erasure`,
        before passing it on: the erasure report names the customer and the ids merged into it."""

        try:
            report = orjson.loads(answer)
            customer_ids = [report["customer_id"], *report.get("merged_ids", ())]
            forgotten = await self.forget_customers([str(c) for c in customer_ids])
        except Exception:  # identify erased: the client hears so; the retention sweep deletes these later
            log.exception("deleting an erased customer's export documents failed")
            return
        if forgotten:
            log.info("export documents of an erased customer deleted", extra={"fields": {"jobs": forgotten}})

    async def _finish(self, export_id: str, **values: Any) -> None:
        async with self._db().writer() as session, session.begin():
            await session.execute(
                update(ExportJob)
                .where(ExportJob.id == export_id, ExportJob.status == "running")
                .values(finished_at=now(), **values)
            )

    async def _fail(self, export_ids: list[str], reason: str) -> None:
        async with self._db().writer() as session, session.begin():
            await session.execute(
                update(ExportJob)
                .where(ExportJob.id.in_(export_ids), ExportJob.status == "running")
                .values(status="failed", failure=reason, finished_at=now())
            )

    async def take(self, export_id: str) -> bytes | None:
        """The document, once and within the retention: read and dropped in one transaction.

        The UPDATE's condition is the claim: a second download waits for the first's
        commit (PostgreSQL re-checks the row; SQLite has one writer) and matches nothing."""

        async with self._db().writer() as session, session.begin():
            document = await session.scalar(select(ExportJob.document).where(ExportJob.id == export_id))
            at = now()
            claimed = await session.execute(
                update(ExportJob)
                .where(
                    ExportJob.id == export_id,
                    ExportJob.status == "done",
                    ExportJob.finished_at >= at - self.retention,
                )
                .values(status="downloaded", document=None, downloaded_at=at)
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                return None
            checkpoint_after_commit(session)  # SQLite's WAL still holds the document's pages
        return document

    # -- gathering -------------------------------------------------------------

    async def begin(self, upstreams: Upstreams, customer_id: str, principal: Principal, headers: bytes) -> ExportJob:
        """Check the customer with identify, record the job, and gather the rest in the background."""

        first = await _personal_data(upstreams, "identify", customer_id, headers, self.timeout)
        if first.status == 404:
            raise UnknownCustomer(customer_id)
        job = ExportJob(
            id=uuid7(), customer_id=customer_id, requested_by=principal.id, status="running", created_at=now()
        )
        async with self._db().writer() as session, session.begin():
            session.add(job)
        await self._sweep_logged()  # besides the periodic one: documents past the retention go now

        async def gather() -> None:
            try:
                async with asyncio.timeout(self.deadline):
                    identify = first.body if first.status == 200 else None
                    document = await _gather(upstreams, job, identify, headers, self.timeout)
            except Exception as exc:  # noqa: BLE001 - the job says it failed
                log.warning("export failed", extra={"fields": {"export_id": job.id, "error": type(exc).__name__}})
                await self._fail([job.id], UNREADABLE)
            else:
                await self._finish(job.id, status="done", document=document)
            self.tasks.pop(job.id, None)

        self.tasks[job.id] = asyncio.create_task(gather(), name=f"export-{job.id}")
        return job


def out(job: ExportJob) -> dict[str, Any]:
    return ExportOut(
        id=job.id,
        customer_id=job.customer_id,
        status=job.status,  # type: ignore[arg-type]
        requested_at=job.created_at,
        finished_at=job.finished_at,
        downloaded_at=job.downloaded_at,
        failure=job.failure,
        requested_by=job.requested_by,
    ).model_dump()


async def _personal_data(
    upstreams: Upstreams, service: str, customer_id: str, headers: bytes, timeout: float
) -> UpstreamResponse:
    target = PERSONAL_DATA.replace("{id}", quote(customer_id, safe="")).encode("ascii")
    return await upstreams[service].request("GET", target, headers, timeout=timeout)


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
        "requested_at": job.created_at,
        "generated_at": now(),
        "services": services,
    }
    return orjson.dumps(document)


def install_exports(
    app: FastAPI, upstreams_or_503: Callable[[], Upstreams], *, timeout: float, retention_s: float, sweep_s: float
) -> ExportJobs:
    """The export routes on the gateway's own app (the route table marks them the gateway's).
    The lifespan starts the returned jobs on the gateway's database and stops them."""

    jobs = app.state.exports = ExportJobs(timeout=timeout, retention_s=retention_s, sweep_s=sweep_s)

    def forwarded(request: Request) -> bytes:
        scope = request.scope
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
        principal = caller(request)
        store(request)  # 503 before the gateway has started
        try:
            job = await jobs.begin(upstreams_or_503(), customer_id, principal, forwarded(request))
        except UnknownCustomer:
            raise NotFound(f"no customer with id {customer_id}") from None
        annotate(request.scope, resources=[customer_id, job.id])
        return out(job)

    @app.get(
        "/v1/exports/{export_id}",
        tags=["gateway"],
        summary="An export job's status (whoever asked for it, or an admin)",
        response_model=ExportOut,
    )
    async def get_export(export_id: str, request: Request) -> dict[str, Any]:
        principal = caller(request)
        store(request)
        return out(await jobs.get(export_id, principal))

    @app.get(
        "/v1/exports/{export_id}/download",
        tags=["gateway"],
        summary="The finished export, once (whoever asked for it, or an admin): per service and table, "
        "the rows held and why",
        responses={
            409: {"description": "Not finished yet, or failed"},
            410: {"description": "Already downloaded, or expired"},
        },
    )
    async def download_export(export_id: str, request: Request) -> Response:
        principal = caller(request)
        store(request)
        job = await jobs.get(export_id, principal)
        document = await jobs.take(export_id)
        if document is None:
            job = await jobs.get(export_id, principal)
            if job.status == "downloaded":
                raise Gone(f"export {export_id} was downloaded already (an export is handed over once)")
            if job.status == "expired":
                raise Gone(f"export {export_id} expired: it was not downloaded within the retention; ask again")
            if job.status == "erased":
                raise Gone(f"export {export_id} was deleted: its customer was erased")
            raise Conflict(f"export {export_id} is {job.status}", error="export_not_ready")
        _record_download(request, job)
        return Response(
            document,
            media_type="application/json",
            headers={
                "content-disposition": f'attachment; filename="export-{export_id}.json"',
                "cache-control": "no-store",
            },
        )

    return jobs


def _record_download(request: Request, job: ExportJob) -> None:
    """The hand-over of a customer's data is recorded in the audit log like a write: the
    front records only writes, so the handler queues the entry itself."""

    front = getattr(request.app, "front", None)
    audit = getattr(front, "audit", None)
    if audit is None:
        return
    scope = request.scope
    path = scope.get("raw_path", b"").decode("latin-1") or scope["path"]
    route = front.table.match("GET", path).route  # type: ignore[union-attr]
    if route is None:
        return
    annotate(scope, resources=[job.customer_id], action="download")
    audit.record(
        scope,
        route,
        path,
        200,
        (scope.get(SCOPE_REQUEST_ID) or "").encode("latin-1"),
        (scope.get(SCOPE_CORRELATION_ID) or "").encode("latin-1"),
    )
