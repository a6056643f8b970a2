"""Import jobs in a process of their own.

An import parses its file and records its batches in Python. In the API's process it
shared that process's interpreter lock with the requests and with the outbox relay,
which publishes the import's events while it runs: on SQLite, CDNOW's import ran about
1.2× faster with the relay paused (docs/benchmarks.md, "Stop 29"). So a job runs in a
worker process, and the relay publishes its events from the API's process on the
other core.

Workers are forked from a fork server (multiprocessing's `forkserver`) that imports
identify's code once: a fresh interpreter spends about 3 s of CPU on those imports on
the reference machine, and a fork of the warm server starts at once. The service starts
the server in the background at start-up (`warm`).

A worker runs `service.run_import`, the same code as an import in the API's process,
against the same database; every commit of events sends a byte to the API's process,
whose relay wakes and publishes them. The API's process holds the job's lease while the
worker runs. A stop terminates the worker: its open transaction is rolled back, and the
job is marked failed, as before. A worker whose API process died finds its pipe broken
at its next commit and exits; the reaper then fails the job once its lease runs out.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from multiprocessing import forkserver
from pathlib import Path
from typing import Any

from services.identify.imports import parsing

log = logging.getLogger("valuechain.identify.imports")

# identify's code, imported once by the server: the whole service, by name (the app's module
# imports every module a job may reach, such as the scoring's numerical libraries; this
# package does not import it). multiprocessing also runs the program's main module in every
# worker, unless it is a `__main__`, as `python -m uvicorn`'s is: a program run as
# `python -m bench.import_bench` pays its imports in each, ~0.3 s here.
_PRELOAD = ["services.identify.imports.worker", "services.identify.main"]
_CONTEXT = (
    multiprocessing.get_context("forkserver") if "forkserver" in multiprocessing.get_all_start_methods() else None
)
if _CONTEXT is not None:
    _CONTEXT.set_forkserver_preload(_PRELOAD)  # read when the server starts

STOP_GRACE_S = 5.0  # a worker terminated at a stop is killed if it has not exited by then


def used(settings) -> bool:
    """Whether import jobs run in workers: the settings ask for it (`import_worker`) and this
    platform can fork workers from a server (Linux and macOS can)."""

    return settings.import_worker and _CONTEXT is not None


async def warm() -> None:
    """Start the fork server now and wait until it has imported identify's code, so the
    first job does not wait for it."""

    if _CONTEXT is None:
        return
    try:
        await asyncio.to_thread(_fork_once)
    except Exception as exc:  # noqa: BLE001 - each job tries again, and fails with the reason
        log.warning("the import workers' fork server did not start", extra={"error": repr(exc)})


def _fork_once() -> None:
    # ensure_running() returns once the server is spawned; it answers a fork only once its
    # imports are done.
    assert _CONTEXT is not None, "warm() checked"
    forkserver.ensure_running()
    process = _CONTEXT.Process(target=_ready, name="import-worker-ready", daemon=True)
    process.start()
    process.join()


def _ready() -> None:
    """A worker with nothing to do: the fork server's first answer."""


async def run_in_worker(
    runtime, job_id: str, path: Path, options: parsing.ImportOptions, create_customers: bool
) -> None:
    """Run the job in a worker process and wait for it; wake the relay at its commits."""

    from services.identify.imports import service  # (service imports this module)

    assert _CONTEXT is not None, "run_in_worker needs used()"
    loop = asyncio.get_running_loop()
    receive, send = _CONTEXT.Pipe(duplex=False)
    job = {
        "id": job_id,
        "database_url": runtime.db.url,
        "path": str(path),
        "options": options,
        "create_customers": create_customers,
    }
    process = _CONTEXT.Process(target=_main, args=(job, runtime.settings, send), name=f"import-{job_id}", daemon=True)
    # Started on a thread: it waits for the fork server if that is still importing.
    starting = asyncio.ensure_future(asyncio.to_thread(process.start))
    exited: asyncio.Future[None] = loop.create_future()

    def on_exit() -> None:
        if not exited.done():
            exited.set_result(None)

    try:
        await asyncio.shield(starting)
        send.close()  # the worker's end: once it exits, reading ours meets the end of the pipe
        loop.add_reader(process.sentinel, on_exit)
        loop.add_reader(receive.fileno(), _wake_relay, loop, receive, runtime.relay)
        await exited
    except asyncio.CancelledError:
        await asyncio.shield(_stop(process, starting))
        await asyncio.shield(service.finish(runtime.db, job_id, "failed", service.INTERRUPTED))
        raise
    finally:
        send.close()
        if process.pid is not None:
            loop.remove_reader(process.sentinel)
        if not receive.closed:
            loop.remove_reader(receive.fileno())
            receive.close()
        path.unlink(missing_ok=True)  # noqa: ASYNC240 - a local temp file; the worker removes it on its own paths
        runtime.relay.notify()  # the events of its last commits
    process.join()
    if process.exitcode != 0:  # it died before it could say how the job ended
        failure = f"the import's worker process exited with code {process.exitcode}; run it again (it is idempotent)"
        log.error("import worker failed", extra={"fields": {"import_id": job_id, "exitcode": process.exitcode}})
        await service.finish(runtime.db, job_id, "failed", failure, if_running=True)


def _wake_relay(loop: asyncio.AbstractEventLoop, receive, relay) -> None:
    try:
        while receive.poll():
            receive.recv_bytes()
            relay.notify()
    except (EOFError, OSError):  # the worker exited
        loop.remove_reader(receive.fileno())
        receive.close()


async def _stop(process, starting: asyncio.Future[None]) -> None:
    """Terminate the worker (its open transaction is rolled back), and kill it if it lingers."""

    try:
        await starting
    except Exception:  # noqa: BLE001 - it never started
        return
    process.terminate()
    await asyncio.to_thread(process.join, STOP_GRACE_S)
    if process.exitcode is None:
        process.kill()
        await asyncio.to_thread(process.join)


# --- in the worker ----------------------------------------------------------------------


def _main(job: dict[str, Any], settings, send) -> None:
    """The worker's life: the job, then exit."""

    from shared.observability.logs import configure_logging
    from shared.settings import set_current

    configure_logging("identify", settings.log_level)
    set_current(settings)
    try:
        asyncio.run(_run(job, settings, send))
    finally:
        send.close()


async def _run(job: dict[str, Any], settings, send) -> None:
    from services.identify.imports import service
    from services.identify.models import messaging
    from shared.db.database import Database

    db = Database.connect(job["database_url"], service="identify", pool_size=2, max_overflow=0)

    def committed_events() -> None:
        try:
            send.send_bytes(b"e")
        except OSError:  # the API's process is gone, and the job's lease with it: stop here
            log.error("import worker: the API process is gone; stopping", extra={"fields": {"import_id": job["id"]}})
            os._exit(3)

    db.info.update({"messaging": messaging, "notify": committed_events, "public_base_url": settings.public_base_url})
    try:
        await service.run_import(db, job["id"], Path(job["path"]), job["options"], job["create_customers"])
    finally:
        await db.dispose()
