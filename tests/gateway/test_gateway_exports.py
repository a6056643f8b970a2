"""A customer's data export (issue 12, section 5) kept in the gateway's own database:
against the real gateway on uvicorn in front of the stand-in services, on SQLite and (with
VALUECHAIN_TEST_POSTGRES_URL) PostgreSQL. A job survives a restart; only whoever asked or
an admin sees it; the document is handed over once, also to two concurrent downloads
through two gateways; a job a stopped or crashed gateway left running is failed; a
document not fetched within the retention is deleted; creation and download are audited."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import make_url

from gateway.exports import STOPPED, UNREADABLE, ExportJob
from gateway.main import create_app
from shared.db.database import Database
from tests.gateway.conftest import API_KEY, AUTH, client_of, gateway_settings, serve
from tests.support import wait_until


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def rows(database):
    """The gateway's database, opened directly (as an operator, or a crashed gateway, left it)."""

    db = Database.connect(database, service="gateway")
    yield db
    await db.dispose()


class Gateway:
    def __init__(self, client: httpx.AsyncClient, app, stack: contextlib.AsyncExitStack):
        self.client, self.app, self.stack = client, app, stack

    async def stop(self) -> None:
        await self.stack.aclose()


@pytest.fixture
async def gateways(stand_ins, nats_stub, database, tmp_path):
    """Start gateways on the one test database: `await start()` -> Gateway (stop it to restart)."""

    started: list[Gateway] = []

    async def start(**overrides) -> Gateway:
        stack = contextlib.AsyncExitStack()
        settings = gateway_settings(
            stand_ins, nats_stub, tmp_path, database_url=database, audit_flush_s=0.01, **overrides
        )
        app = create_app(settings, admin_key=API_KEY)
        url = await stack.enter_async_context(serve(app))
        client = await stack.enter_async_context(client_of(url, timeout=10.0))
        started.append(Gateway(client, app, stack))
        return started[-1]

    yield start
    for gateway in reversed(started):
        await gateway.stop()


async def make_key(gw: Gateway, role: str = "agent") -> tuple[str, str]:
    """A key made through the API: (its id, its token)."""

    response = await gw.client.post("/v1/api-keys", json={"name": f"{role} key", "role": role}, headers=AUTH)
    assert response.status_code == 201, response.text
    body = response.json()
    return body["id"], body["key"]


async def finished(gw: Gateway, export_id: str, headers: dict[str, str]) -> dict:
    async def done():
        body = (await gw.client.get(f"/v1/exports/{export_id}", headers=headers)).json()
        return body if body["status"] != "running" else None

    return await wait_until(done, what="the export job")


async def export(gw: Gateway, customer_id: str, headers: dict[str, str]) -> dict:
    response = await gw.client.post(f"/v1/customers/{customer_id}/exports", headers=headers)
    assert response.status_code == 202, response.text
    return response.json()


async def test_a_finished_export_survives_a_restart_and_is_handed_over_once(gateways, rows):
    first = await gateways()
    key_id, token = await make_key(first)
    job = await export(first, "cus-restart", bearer(token))
    assert (job["status"], job["customer_id"], job["requested_by"]) == ("running", "cus-restart", key_id)
    assert (await finished(first, job["id"], bearer(token)))["status"] == "done"
    await first.stop()

    second = await gateways()
    download = await second.client.get(f"/v1/exports/{job['id']}/download", headers=bearer(token))
    assert download.status_code == 200, download.text
    assert download.headers["cache-control"] == "no-store"
    document = download.json()
    assert (document["export_id"], document["customer_id"]) == (job["id"], "cus-restart")
    assert set(document["services"]) == {"identify", "engage", "network", "value", "lifecycle"}
    assert document["services"]["engage"]["tables"][0]["rows"][0]["note"] == "engage holds this"

    again = await second.client.get(f"/v1/exports/{job['id']}/download", headers=bearer(token))
    assert again.status_code == 410 and again.json()["error"] == "gone"
    status = (await second.client.get(f"/v1/exports/{job['id']}", headers=bearer(token))).json()
    assert status["status"] == "downloaded" and status["downloaded_at"] is not None
    async with rows.reader() as session:  # the document is gone from the database, the row stays
        stored = (await session.execute(select(ExportJob.status, ExportJob.document))).one()
    assert tuple(stored) == ("downloaded", None)
    if rows.url.startswith("sqlite"):  # ... and from the file and its WAL (free pages zeroed, WAL truncated)
        files = [
            path for path in Path(make_url(rows.url).database).parent.iterdir() if path.name.startswith("gateway.db")
        ]

        def held() -> list[str]:
            return [path.name for path in files if path.exists() and b"holds this" in path.read_bytes()]

        await wait_until(lambda: not held(), what="the document's bytes to leave the gateway's database files")


async def test_only_whoever_asked_or_an_admin_sees_a_job_anyone_else_gets_404(gateways):
    gw = await gateways()
    _, asker = await make_key(gw)
    _, other = await make_key(gw)
    job = await export(gw, "cus-mine", bearer(asker))
    assert (await finished(gw, job["id"], bearer(asker)))["status"] == "done"

    nobody = "0192b1c4-0000-7000-8000-000000000000"
    for path in (f"/v1/exports/{job['id']}", f"/v1/exports/{job['id']}/download"):
        refused = await gw.client.get(path, headers=bearer(other))
        unknown = await gw.client.get(path.replace(job["id"], nobody), headers=bearer(other))
        assert refused.status_code == unknown.status_code == 404
        assert refused.json()["error"] == unknown.json()["error"] == "not_found"
    # The admin (here the bootstrap key) sees and may download anyone's.
    assert (await gw.client.get(f"/v1/exports/{job['id']}", headers=AUTH)).json()["status"] == "done"
    assert (await gw.client.get(f"/v1/exports/{job['id']}/download", headers=AUTH)).status_code == 200
    assert (await gw.client.get(f"/v1/exports/{job['id']}/download", headers=bearer(asker))).status_code == 410

    # An admin's job is not an agent's to see.
    admins = await export(gw, "cus-admin", AUTH)
    assert (await gw.client.get(f"/v1/exports/{admins['id']}", headers=bearer(asker))).status_code == 404


async def test_two_concurrent_downloads_through_two_gateways_get_the_document_once(gateways):
    first, second = await gateways(), await gateways()
    _, token = await make_key(first)
    for round in range(3):
        job = await export(first, f"cus-race-{round}", bearer(token))
        await finished(first, job["id"], bearer(token))
        path = f"/v1/exports/{job['id']}/download"
        answers = await asyncio.gather(
            *(gw.client.get(path, headers=bearer(token)) for gw in (first, second, first, second))
        )
        assert sorted(answer.status_code for answer in answers) == [200, 410, 410, 410]
        (document,) = [answer.json() for answer in answers if answer.status_code == 200]
        assert document["export_id"] == job["id"]


async def test_creation_and_download_are_in_the_audit_log_naming_customer_and_export(gateways):
    gw = await gateways()
    key_id, token = await make_key(gw)
    job = await export(gw, "cus-audited", bearer(token))
    await finished(gw, job["id"], bearer(token))
    assert (await gw.client.get(f"/v1/exports/{job['id']}/download", headers=bearer(token))).status_code == 200
    await gw.client.get(f"/v1/exports/{job['id']}", headers=bearer(token))  # a status read is not recorded

    await gw.app.front.audit.flush()
    items = (await gw.client.get("/v1/audit", params={"resource": job["id"]}, headers=AUTH)).json()["items"]
    assert [(e["method"], e["route"], e["status"], e["actor_id"]) for e in items] == [
        ("GET", "/v1/exports/{id}/download", 200, key_id),
        ("POST", "/v1/customers/{id}/exports", 202, key_id),
    ]
    download, created = items
    assert set(created["resources"]) == {"cus-audited", job["id"]}
    assert set(download["resources"]) == {"cus-audited", job["id"]} and download["detail"] == {"action": "download"}
    assert (await gw.client.get("/v1/audit/verify", headers=AUTH)).json()["ok"] is True


async def test_an_unknown_customer_is_404_and_a_failing_service_fails_the_job(gateways, rows):
    gw = await gateways()
    unknown = await gw.client.post("/v1/customers/missing/exports", headers=AUTH)
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
    async with rows.reader() as session:
        assert (await session.execute(select(ExportJob.id))).all() == []

    job = await export(gw, "broken", AUTH)
    failed = await finished(gw, job["id"], AUTH)
    assert (failed["status"], failed["failure"]) == ("failed", UNREADABLE)
    download = await gw.client.get(f"/v1/exports/{job['id']}/download", headers=AUTH)
    assert download.status_code == 409 and download.json()["error"] == "export_not_ready"


async def test_a_job_running_when_the_gateway_stops_is_failed(gateways, stand_ins):
    engage = stand_ins["engage"]
    engage.personal_data_gate = asyncio.Event()  # identify answers, engage does not yet
    try:
        first = await gateways()
        job = await export(first, "cus-stopped", AUTH)
        assert (await first.client.get(f"/v1/exports/{job['id']}", headers=AUTH)).json()["status"] == "running"
        await first.stop()
    finally:
        engage.personal_data_gate.set()
        engage.personal_data_gate = None

    second = await gateways()
    status = (await second.client.get(f"/v1/exports/{job['id']}", headers=AUTH)).json()
    assert (status["status"], status["failure"]) == ("failed", STOPPED)


async def test_the_start_fails_jobs_a_crash_left_running_and_deletes_documents_past_the_retention(gateways, rows):
    long_ago = datetime.now(UTC) - timedelta(days=8)
    recent = datetime.now(UTC) - timedelta(seconds=1)
    async with rows.writer() as session, session.begin():
        session.add_all(
            [
                ExportJob(
                    id="crashed", customer_id="c", requested_by="bootstrap-admin", status="running", created_at=long_ago
                ),
                # Another gateway may still be gathering this one: left alone.
                ExportJob(
                    id="young", customer_id="c", requested_by="bootstrap-admin", status="running", created_at=recent
                ),
                ExportJob(
                    id="stale",
                    customer_id="c",
                    requested_by="bootstrap-admin",
                    status="done",
                    created_at=long_ago,
                    finished_at=long_ago,
                    document=b'{"personal": "data"}',
                ),
            ]
        )
    gw = await gateways()

    async def status(export_id: str) -> dict:
        return (await gw.client.get(f"/v1/exports/{export_id}", headers=AUTH)).json()

    assert ((await status("crashed"))["status"], (await status("crashed"))["failure"]) == ("failed", STOPPED)
    assert (await status("young"))["status"] == "running"
    assert (await status("stale"))["status"] == "expired"
    download = await gw.client.get("/v1/exports/stale/download", headers=AUTH)
    assert download.status_code == 410 and "expired" in download.json()["detail"]
    async with rows.reader() as session:
        assert (await session.scalar(select(ExportJob.document).where(ExportJob.id == "stale"))) is None


async def test_a_document_past_the_retention_is_never_handed_over_and_is_deleted_on_access(gateways, rows):
    gw = await gateways()
    job = await export(gw, "cus-late", AUTH)
    await finished(gw, job["id"], AUTH)
    async with rows.writer() as session, session.begin():  # as if it finished 8 days ago (retention: 7)
        await session.execute(
            update(ExportJob).where(ExportJob.id == job["id"]).values(finished_at=datetime.now(UTC) - timedelta(days=8))
        )
    download = await gw.client.get(f"/v1/exports/{job['id']}/download", headers=AUTH)
    assert download.status_code == 410 and "expired" in download.json()["detail"]
    async with rows.reader() as session:
        stored = (await session.execute(select(ExportJob.status, ExportJob.document))).one()
    assert tuple(stored) == ("expired", None)


async def test_reading_the_status_past_the_retention_deletes_the_document(gateways, rows):
    gw = await gateways()
    job = await export(gw, "cus-late-status", AUTH)
    await finished(gw, job["id"], AUTH)
    async with rows.writer() as session, session.begin():
        await session.execute(
            update(ExportJob).where(ExportJob.id == job["id"]).values(finished_at=datetime.now(UTC) - timedelta(days=8))
        )
    assert (await gw.client.get(f"/v1/exports/{job['id']}", headers=AUTH)).json()["status"] == "expired"
    async with rows.reader() as session:
        stored = (await session.execute(select(ExportJob.status, ExportJob.document))).one()
    assert tuple(stored) == ("expired", None)


async def test_an_erasure_deletes_the_customers_export_documents_not_yet_downloaded(gateways, rows):
    # identify as it answers an erasure: the report names the customer and the ids merged into it.
    from fastapi import FastAPI

    identify = FastAPI()

    @identify.get("/internal/customers/{customer_id}/personal-data")
    async def personal_data(customer_id: str):
        table = {"table": "customers", "purpose": "a test", "personal": ["email"], "rows": [{"email": "zed@x.test"}]}
        return {"service": "identify", "customer_id": customer_id, "customer_ids": [customer_id], "tables": [table]}

    @identify.post("/v1/customers/{customer_id}/erasure", status_code=202)
    async def erase(customer_id: str):
        return {"id": "era-1", "customer_id": customer_id, "merged_ids": [f"{customer_id}-twin"], "complete": False}

    async with serve(identify) as identify_url:
        gw = await gateways(identify_url=identify_url)
        jobs = {c: await export(gw, c, AUTH) for c in ("cus-zed", "cus-zed-twin", "cus-other")}
        for job in jobs.values():
            assert (await finished(gw, job["id"], AUTH))["status"] == "done"

        erased = await gw.client.post("/v1/customers/cus-zed/erasure", headers=AUTH)
        assert erased.status_code == 202, erased.text
        for customer in ("cus-zed", "cus-zed-twin"):  # the survivor's and its merged twin's
            export_id = jobs[customer]["id"]
            assert (await gw.client.get(f"/v1/exports/{export_id}", headers=AUTH)).json()["status"] == "erased"
            gone = await gw.client.get(f"/v1/exports/{export_id}/download", headers=AUTH)
            assert gone.status_code == 410 and "erased" in gone.json()["detail"]
        other = await gw.client.get(f"/v1/exports/{jobs['cus-other']['id']}/download", headers=AUTH)
        assert other.status_code == 200  # another customer's is untouched
    async with rows.reader() as session:
        kept = dict((await session.execute(select(ExportJob.customer_id, ExportJob.document))).all())
    assert kept["cus-zed"] is None and kept["cus-zed-twin"] is None
