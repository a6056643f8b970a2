"""Import jobs: a file of transactions recorded in the background, batch by batch.

The upload is copied to a temporary file by chunks (never held whole in memory),
checked against its options (format, mapping, header), and a job row is committed
before the 202. A worker process (worker.py; a task of this process with
`VALUECHAIN_IDENTIFY_IMPORT_WORKER=false`) then reads the file in batches of `BATCH_ROWS`
rows; each batch is one database transaction that records its rows through
`record_transactions` (the path of the API), stores its rejected lines and adds to the
job's counters, so progress is exact and what a batch did is never half done. A job
runs in the replica that took its request, which holds the lease `import:<id>`
(shared/db/leases.py) while it runs: a job interrupted by a stop is marked failed at the
stop, and one whose replica died (its lease ran out) is marked failed by the reaper that
one replica runs; jobs are not resumed. Running the import again is safe because
transactions are idempotent by external id.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import orjson
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.identify.customers import referral_codes
from services.identify.customers.service import new_referral_codes
from services.identify.imports import parsing, repository, worker
from services.identify.transactions.service import record_transactions
from shared.db.database import is_sqlite, utcnow
from shared.db.ids import uuid7, uuid7_many
from shared.db.sqlite_inline import statements_on_threads
from shared.db.uow import transaction
from shared.events.messaging import emit_many
from shared.http.errors import AppError, InvalidRequest, NotFound, field_error
from shared.http.validation import currency_code

log = logging.getLogger("valuechain.identify.imports")

BATCH_ROWS = 5000
SQLITE_WAL_PAGES = 1000  # SQLite's default wal_autocheckpoint, which the service keeps
READ_ROWS = 100  # rows read between two turns of the event loop (~1 ms)
ERRORS_SHOWN = 100  # rejected lines GET /v1/imports/{id} shows; the rest are paged
UPLOAD_CHUNK = 1 << 20
INTERRUPTED = (
    "interrupted: the identify replica running it stopped before the import finished; run it again (it is idempotent)"
)


class MalformedJson(AppError):
    status_code = 400
    error = "malformed_json"


def options_from_form(
    *,
    filename: str | None,
    head: bytes,
    mapping: str | None,
    file_format: str | None,
    delimiter: str | None,
    columns: str | None,
    date_format: str | None,
    currency: str | None,
) -> parsing.ImportOptions:
    """The form's options, checked (the header is checked against them later)."""

    options = parsing.ImportOptions()
    if mapping:
        try:
            decoded = orjson.loads(mapping)
        except orjson.JSONDecodeError as exc:
            raise MalformedJson([{"field": "mapping", "message": f"not JSON: {exc}", "type": "json_invalid"}]) from exc
        try:
            options.mapping = parsing.check_mapping(decoded)
        except parsing.OptionsError as exc:
            raise field_error(exc.field, exc.message) from exc
    if file_format and file_format not in parsing.FORMATS:
        raise field_error("format", f"must be one of {', '.join(parsing.FORMATS)}")
    options.file_format = file_format or parsing.guess_format(filename, head)
    if delimiter:
        if delimiter in ("\\t", "tab"):
            delimiter = "\t"
        if delimiter != parsing.WHITESPACE and len(delimiter) != 1:
            raise field_error("delimiter", f"one character, `tab` or `{parsing.WHITESPACE}`")
        options.delimiter = delimiter
    if columns:
        options.columns = [name.strip() for name in columns.split(",")]
    if date_format:
        if "%" not in date_format:
            raise field_error("date_format", "a strptime format such as %d/%m/%Y")
        options.date_format = date_format
    if currency:
        try:
            options.currency = currency_code(currency)
        except ValueError as exc:
            raise field_error("currency", str(exc)) from exc
    return options


async def spool(upload) -> tuple[Path, bytes]:
    """Copy an upload to a temporary file by chunks; return it and its first bytes."""

    fd, name = tempfile.mkstemp(prefix="valuechain-import-", suffix=".upload")
    head = b""
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := await upload.read(UPLOAD_CHUNK):
                if not head:
                    head = chunk[:4096]
                out.write(chunk)
    except BaseException:
        os.unlink(name)
        raise
    return Path(name), head


async def start_import(
    *, runtime, path: Path, filename: str | None, options: parsing.ImportOptions, create_customers: bool
) -> dict:
    """Check the spooled file's header, commit the job, start its task; the file is the job's now."""

    try:
        header = parsing.Reader(path, options).header()
    except parsing.OptionsError as exc:
        path.unlink(missing_ok=True)  # noqa: ASYNC240 - a local temp file, on the error path
        raise field_error(exc.field, exc.message) from exc
    except UnicodeDecodeError as exc:
        path.unlink(missing_ok=True)  # noqa: ASYNC240 - a local temp file, on the error path
        raise InvalidRequest(
            [{"field": "file", "message": "the file is not UTF-8 text", "type": "value_error"}]
        ) from exc
    job_id = uuid7()
    async with transaction(runtime.db.writer) as session:
        await repository.add_job(
            session,
            {
                "id": job_id,
                "status": "running",
                "filename": (filename or "")[:300] or None,
                "file_format": options.file_format,
                "mapping": options.mapping,
                "create_customers": create_customers,
                "rows_read": 0,
                "recorded": 0,
                "duplicates": 0,
                "rejected": 0,
                "customers_created": 0,
                "created_at": utcnow(),
            },
        )
        claimed = await runtime.leases.claim(session, repository.job_lease(job_id))
    runtime.leases.adopt(repository.job_lease(job_id), claimed)
    task = asyncio.create_task(
        runtime.leases.run_leased(
            repository.job_lease(job_id),
            lambda: run_job(runtime, job_id, path, options, create_customers),
            standby=False,  # a job whose lease ran out is failed by the reaper, not run twice
        ),
        name=f"import-{job_id}",
    )
    runtime.tasks.append(task)  # cancelled (and the job marked failed) when the service stops
    task.add_done_callback(lambda done: done in runtime.tasks and runtime.tasks.remove(done))
    return {"id": job_id, "status": "running", "format": options.file_format, "ignored_columns": header.ignored}


async def run_job(runtime, job_id: str, path: Path, options: parsing.ImportOptions, create_customers: bool) -> None:
    """Run the job in a worker process (worker.py), or here when the settings say so or the
    platform cannot fork workers (`worker.used`)."""

    if not worker.used(runtime.settings):
        await run_import(runtime.db, job_id, path, options, create_customers)
        return
    try:
        await worker.run_in_worker(runtime, job_id, path, options, create_customers)
    except Exception as exc:  # the worker could not be started: the job reports it
        log.exception("import worker failed", extra={"fields": {"import_id": job_id}})
        await finish(runtime.db, job_id, "failed", f"{exc.__class__.__name__}: {exc}"[:2000], if_running=True)


async def warm_workers(runtime) -> None:
    """Start-up hook: start the server import workers are forked from, in the background."""

    if worker.used(runtime.settings):
        runtime.tasks.append(asyncio.create_task(worker.warm(), name="import-worker-server"))


async def run_import(db, job_id: str, path: Path, options: parsing.ImportOptions, create_customers: bool) -> None:
    statements_on_threads()  # on SQLite: its large statements must not hold up the API or the reading
    customers: dict[str, str] = {}  # external id → customer id, filled as batches commit
    reading: asyncio.Task[list[parsing.Row]] | None = None
    try:
        rows = parsing.Reader(path, options).rows()
        reading = asyncio.create_task(_read_batch(rows))
        async with _fewer_checkpoints(db):
            while batch := await reading:
                current = reading
                for attempt in (1, 2):
                    try:
                        async with transaction(db.writer) as session:
                            found = await record_batch(
                                session, job_id, batch, customers, create_customers, retry=attempt == 2
                            )
                            # The next batch is read while this one commits: SQLite's thread
                            # writes the pages then and needs neither the event loop nor the
                            # GIL. (Read during the batch's statements instead, it took the GIL
                            # from their executemany, which wants it back for every row.)
                            if reading is current:  # (not by an attempt whose commit failed)
                                reading = asyncio.create_task(_read_batch(rows))
                        break
                    except IntegrityError:
                        # Another writer recorded one of these external ids (or created one of these
                        # customers, or drew one of these referral codes) between our check and our
                        # insert: the retry sees it as existing.
                        if attempt == 2:
                            raise
                customers.update(found)
        await finish(db, job_id, "done", None)  # its commit checkpoints what the import left
    except asyncio.CancelledError:
        await asyncio.shield(finish(db, job_id, "failed", INTERRUPTED))
        raise
    except Exception as exc:  # the job reports it; the service carries on
        log.exception("import failed", extra={"fields": {"import_id": job_id}})
        await finish(db, job_id, "failed", f"{exc.__class__.__name__}: {exc}"[:2000])
    finally:
        if reading is not None:
            reading.cancel()
        path.unlink(missing_ok=True)  # noqa: ASYNC240 - a local temp file, on the error path


# SQLite copies the WAL into the database file (a checkpoint) at the commit that finds it
# over `wal_autocheckpoint` pages, 1000 by default. A batch's random keys (derived external
# ids, referral codes, dates) touch most pages of their indexes, so each batch's commit
# rewrote some 5,000 pages and checkpointed all of them again (commits were a quarter of
# an import's time on SQLite). While imports run the writer checkpoints at IMPORT_WAL_PAGES
# instead (a WAL of at most 64 MiB), so a page rewritten by several batches is copied once
# per checkpoint, not per batch (time in commits -17%, docs/benchmarks.md); the default is
# back before the job is marked done, and that commit checkpoints the rest.
IMPORT_WAL_PAGES = 16384
_importing: Counter[str] = Counter()  # database URL → imports running on it in this process


@asynccontextmanager
async def _fewer_checkpoints(db) -> AsyncIterator[None]:
    if not is_sqlite(db.url):
        yield
        return
    if not _importing[db.url]:
        await _wal_autocheckpoint(db, IMPORT_WAL_PAGES)
    _importing[db.url] += 1
    try:
        yield
    finally:
        _importing[db.url] -= 1
        if not _importing[db.url]:
            await asyncio.shield(_wal_autocheckpoint(db, SQLITE_WAL_PAGES))


async def _wal_autocheckpoint(db, pages: int) -> None:
    """Set the writer's (the pool's one connection's) checkpoint threshold."""

    async with db.writer_engine.connect() as conn:
        await conn.exec_driver_sql(f"PRAGMA wal_autocheckpoint={pages}")


async def _read_batch(rows: Iterator[parsing.Row]) -> list[parsing.Row]:
    """The next BATCH_ROWS rows (fewer at the end), read READ_ROWS at a time with the event
    loop served in between, so the batch being written is not held up by more than a
    slice of reading when its statement returns."""

    batch: list[parsing.Row] = []
    while len(batch) < BATCH_ROWS and (
        rows_read := list(itertools.islice(rows, min(READ_ROWS, BATCH_ROWS - len(batch))))
    ):
        batch += rows_read
        await asyncio.sleep(0)
    return batch


async def finish(db, job_id: str, status: str, failure: str | None, *, if_running: bool = False) -> None:
    """End the job with `status`; `if_running`: only if nothing has ended it yet."""

    async with transaction(db.writer) as session:
        await repository.finish_job(session, job_id, status=status, failure=failure, at=utcnow(), if_running=if_running)


async def record_batch(
    session: AsyncSession,
    job_id: str,
    batch: list[parsing.Row],
    customers: dict[str, str],
    create_customers: bool,
    *,
    retry: bool = False,
) -> dict[str, str]:
    """Record one batch of rows and its progress; return the customers it looked up or made.
    `retry`: the batch's first attempt met a clash with another writer (see run_import)."""

    counts = dict.fromkeys(repository.COUNTERS, 0)
    counts["rows_read"] = len(batch)
    rejected: list[dict] = []

    def reject(row: parsing.Row, reason: str) -> None:
        rejected.append({"import_id": job_id, "line": row.line, "reason": reason, "raw": row.raw})

    good: list[tuple[parsing.Row, str, parsing.ImportedTransaction]] = []
    for row in batch:
        if row.reason is None:
            assert row.customer_external_id is not None and row.item is not None, "a row not rejected has both"
            good.append((row, row.customer_external_id, row.item))
        else:
            reject(row, row.reason)
    unknown = {external_id for _, external_id, _ in good} - customers.keys()
    found = await repository.customers_by_external_id(session, unknown)
    missing = sorted(unknown - found.keys())
    created: list[str] = []
    if missing and create_customers:
        created = await _create_customers(session, missing, checked_codes=retry)
        counts["customers_created"] = len(created)
        found.update(zip(missing, created))

    recordable: list[tuple[parsing.Row, parsing.ImportedTransaction]] = []
    for row, external_id, item in good:
        customer_id = customers.get(external_id) or found.get(external_id)
        if customer_id is None:
            reject(
                row,
                f"no customer with external id {external_id!r} (send create_customers=true "
                "to create customers the file names)",
            )
        else:
            item.customer_id = customer_id
            recordable.append((row, item))
    outcomes = await record_transactions(session=session, items=[item for _, item in recordable], new_customers=created)
    for (row, _), outcome in zip(recordable, outcomes):
        if outcome.status == "created":
            counts["recorded"] += 1
        elif outcome.status == "duplicate":
            counts["duplicates"] += 1
        else:
            assert outcome.message is not None, "an error says what is wrong"
            reject(row, outcome.message)
    counts["rejected"] = len(rejected)
    await repository.add_rejections(session, rejected)
    await repository.add_progress(session, job_id, counts)
    return found


async def _create_customers(session: AsyncSession, external_ids: list[str], *, checked_codes: bool) -> list[str]:
    """Create customers known only by external id; return their ids, in the same order.

    Their referral codes are checked against the stored ones only when `checked_codes`
    (a retry): a code has 40 random bits, so one clashes with a million held codes once
    in a million, and the column's unique index turns that into an IntegrityError that
    retries the batch. The check cost an import a query per thousand new customers
    (~5% of its time on SQLite, measured with the rest)."""

    now = utcnow()
    ids = uuid7_many(len(external_ids))
    codes = await new_referral_codes(session, len(ids)) if checked_codes else referral_codes.distinct_codes(len(ids))
    await repository.add_customers(
        session, [(id_, external_id, code, 0, now, now) for id_, external_id, code in zip(ids, external_ids, codes)]
    )
    emit_many(
        session,
        "crm.identify.customer.created",
        [
            {"id": id_, "external_id": external_id, "referral_code": code, "created_at": now}
            for id_, external_id, code in zip(ids, external_ids, codes)
        ],
        ids,
    )
    return ids


# --- reading jobs -----------------------------------------------------------------


def _job_out(job) -> dict:
    out = dict(job)
    out["format"] = out.pop("file_format")
    return out


async def get_import(*, session: AsyncSession, job_id: str) -> dict:
    job = await repository.get_job(session, job_id)
    if job is None:
        raise NotFound(f"no import with id {job_id}")
    out = _job_out(job)
    errors = await repository.rejections(session, job_id, after_line=None, limit=ERRORS_SHOWN)
    out.update(errors=errors, errors_total=job["rejected"], errors_truncated=job["rejected"] > len(errors))
    return out


async def list_imports(*, session: AsyncSession, before_id: str | None, limit: int) -> list[dict]:
    return [_job_out(job) for job in await repository.list_jobs(session, before_id=before_id, limit=limit)]


async def list_rejections(*, session: AsyncSession, job_id: str, after_line: int | None, limit: int) -> list:
    if await repository.get_job(session, job_id) is None:
        raise NotFound(f"no import with id {job_id}")
    return await repository.rejections(session, job_id, after_line=after_line, limit=limit)


async def fail_interrupted_imports(runtime) -> None:
    """Fail the jobs still `running` whose replica is gone (jobs run in the replica that took
    them, holding the lease `import:<id>`; a replica killed or stopped leaves it to expire)."""

    async with transaction(runtime.db.writer) as session:
        failed = await repository.fail_running_jobs(
            session, failure=INTERRUPTED, at=utcnow(), leases=runtime.leases.table, grace_s=runtime.leases.ttl_s
        )
    if failed:
        log.warning("marked interrupted imports failed", extra={"fields": {"imports": failed}})


async def reap_interrupted_imports(runtime) -> None:
    """Start-up hook: one replica looks for interrupted jobs every lease TTL (at once, too)."""

    async def reap() -> None:
        while True:
            try:
                await fail_interrupted_imports(runtime)
            except Exception as exc:  # noqa: BLE001 - the next turn tries again
                log.warning("looking for interrupted imports failed", extra={"error": repr(exc)})
            await asyncio.sleep(runtime.leases.ttl_s)

    runtime.start_leased("import-reaper", reap)
