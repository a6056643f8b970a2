"""Two replicas of each service on one database and one nats-server (issue 17 §1): its relay,
each of its consumers and each of its schedules run in exactly one of them, and move to the
other when that one dies; an import job whose replica died is marked failed, one whose
replica lives is left alone."""

from __future__ import annotations

import pytest

from services.identify.imports import repository as jobs
from services.identify.imports import service as import_jobs
from shared.db.database import utcnow
from shared.db.uow import transaction
from shared.service.runtime import stop_runtime
from tests.support import wait_until

FAST = {"lease_ttl_s": 1.0, "lease_renew_s": 0.2}


def _held(handle) -> set[str]:
    return {name for name, lease in handle.runtime.leases.leases.items() if lease.held}


@pytest.mark.parametrize("service", ["identify", "engage", "network", "value", "lifecycle"])
async def test_each_piece_of_a_services_work_runs_in_one_replica_and_moves_when_it_dies(suite, service):
    first = await suite.start(service, **FAST)
    second = await suite.replica(first)
    wanted = set(first.runtime.leases.leases)
    # the relay, every consumer, and the schedules its start hooks launched
    assert {"relay", *(f"consumer:{runner.name}" for runner in first.runtime.consumers)} < wanted
    assert set(second.runtime.leases.leases) == wanted

    async def shared_out() -> bool:
        return _held(first) | _held(second) == wanted

    await wait_until(shared_out, what="every lease taken")
    assert not _held(first) & _held(second)  # nothing runs in both
    holders = await first.runtime.leases.holders(wanted)
    assert set(holders) == wanted and set(holders.values()) <= {
        first.runtime.leases.holder,
        second.runtime.leases.holder,
    }

    # The replica that took the relay dies without giving anything up: the other takes it all.
    dead, alive = (first, second) if "relay" in _held(first) else (second, first)
    dead.runtime.leases.release_on_stop = False
    await stop_runtime(dead.runtime)
    await wait_until(lambda: _held(alive) == wanted, timeout=10, what="the survivor holds every lease")


async def _running_job(handle, job_id: str) -> None:
    """An import job as start_import leaves it running in `handle`'s replica."""

    leases = handle.runtime.leases
    async with transaction(handle.runtime.db.writer) as session:
        await jobs.add_job(
            session,
            {
                "id": job_id,
                "status": "running",
                "file_format": "csv",
                "mapping": {},
                "create_customers": False,
                "rows_read": 0,
                "recorded": 0,
                "duplicates": 0,
                "rejected": 0,
                "customers_created": 0,
                "created_at": utcnow(),
            },
        )
        claimed = await leases.claim(session, jobs.job_lease(job_id))
    leases.adopt(jobs.job_lease(job_id), claimed)


async def _status(handle, job_id: str) -> dict:
    return (await handle.client.get(f"/v1/imports/{job_id}")).json()


async def test_an_import_job_whose_replica_died_is_marked_failed_and_a_live_ones_is_not(suite):
    first = await suite.start("identify", **FAST)
    second = await suite.replica(first)
    await _running_job(first, "in-first")
    await _running_job(second, "in-second")
    for handle in (first, second):  # both replicas' reapers find both jobs alive
        await import_jobs.fail_interrupted_imports(handle.runtime)
    assert (await _status(first, "in-first"))["status"] == "running"

    first.runtime.leases.release_on_stop = False  # killed: its job's lease runs out by itself
    await stop_runtime(first.runtime)

    async def failed() -> dict | None:
        job = await _status(second, "in-first")
        return job if job["status"] == "failed" else None

    job = await wait_until(failed, timeout=10, what="the reaper fails the dead replica's job")
    assert "replica running it stopped" in job["failure"] and "run it again" in job["failure"]
    assert (await _status(second, "in-second"))["status"] == "running"  # its replica lives
