"""The audit log (issue 12, section 4), against the real gateway on uvicorn in front of
stand-in services, on SQLite and (with VALUECHAIN_TEST_POSTGRES_URL) PostgreSQL: writes
recorded with who, what and the outcome; the list and its filters; the chain's check,
with rows tampered with directly in the database; one chain across two gateways and a
restart."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.audit.chain import GENESIS, chain_hash
from gateway.audit.writer import annotate
from gateway.main import create_app
from gateway.routes import ROUTES, RouteTable, r
from tests.gateway.conftest import API_KEY, AUTH, client_of, gateway_settings, serve


def identify_stand_in() -> FastAPI:
    """identify answering writes the way the real one does: 201s naming what they made."""

    app = FastAPI()
    made = iter(range(1, 10_000))

    @app.post("/v1/customers")
    async def create_customer():
        return JSONResponse({"id": f"cus-{next(made)}", "name": "not recorded"}, status_code=201)

    @app.post("/v1/transactions")
    async def record_transaction():
        number = next(made)
        return JSONResponse({"ok": True}, status_code=201, headers={"location": f"/v1/transactions/txn-{number}"})

    @app.patch("/v1/customers/{customer_id}")
    async def update_customer(customer_id: str):
        if customer_id == "bad":
            return JSONResponse({"error": "validation_error", "detail": []}, status_code=422)
        return {"id": customer_id}

    return app


@pytest.fixture(scope="module")
async def identify():
    async with serve(identify_stand_in()) as url:
        yield url


@pytest.fixture
async def gateways(stand_ins, nats_stub, identify, database, dead_url, tmp_path):
    """Start gateways on the one test database: `await start()` -> (client, app)."""

    async with contextlib.AsyncExitStack() as stack:

        async def start(stack: contextlib.AsyncExitStack = stack):
            settings = gateway_settings(
                stand_ins,
                nats_stub,
                tmp_path,
                identify_url=identify,
                network_url=dead_url,  # writes to network fail: 502
                database_url=database,
                audit_flush_s=0.01,
            )
            app = create_app(settings, admin_key=API_KEY)
            url = await stack.enter_async_context(serve(app))
            client = await stack.enter_async_context(client_of(url, headers=AUTH, timeout=10.0))
            return client, app

        yield start


async def entries(client: httpx.AsyncClient, app, **params) -> list[dict]:
    await app.front.audit.flush()
    response = await client.get("/v1/audit", params=params)
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def test_every_write_is_recorded_with_who_what_when_and_the_outcome(gateways):
    client, app = await gateways()
    before = datetime.now(UTC)
    ids = {"x-request-id": "req-audit-1", "x-correlation-id": "corr-audit-1"}
    assert (await client.post("/v1/customers", json={"name": "Ada"}, headers=ids)).status_code == 201
    assert (await client.post("/v1/transactions", json={})).status_code == 201
    assert (await client.patch("/v1/customers/bad", json={})).status_code == 422
    assert (await client.post("/v1/offers/off-1/redeem", json={})).status_code == 200
    assert (await client.post("/v1/stakeholders", json={})).status_code == 502
    # Not writes, or not anyone's: not recorded.
    assert (await client.get("/v1/offers/off-1")).status_code == 200
    assert (await client.post("/v1/customers", headers={"Authorization": "Bearer wrong"})).status_code == 401

    items = await entries(client, app)
    assert [(e["method"], e["route"], e["status"], e["resources"]) for e in items] == [
        ("POST", "/v1/stakeholders", 502, []),
        ("POST", "/v1/offers/{id}/redeem", 200, ["off-1"]),
        ("PATCH", "/v1/customers/{id}", 422, ["bad"]),
        ("POST", "/v1/transactions", 201, ["txn-2"]),  # from the Location
        ("POST", "/v1/customers", 201, ["cus-1"]),  # from the 201's id
    ]
    first = items[-1]
    assert first["seq"] == 1 and first["prev_hash"] == GENESIS
    assert (first["actor_id"], first["actor_kind"], first["role"]) == ("bootstrap-admin", "bootstrap", "admin")
    assert (first["request_id"], first["correlation_id"]) == ("req-audit-1", "corr-audit-1")
    assert first["path"] == "/v1/customers" and first["detail"] is None
    assert before <= datetime.fromisoformat(first["at"]) <= datetime.now(UTC)
    assert "Ada" not in str(items)  # bodies are not kept


async def test_a_write_refused_for_want_of_a_scope_is_recorded_with_who_tried(gateways):
    client, app = await gateways()
    made = await client.post("/v1/api-keys", json={"name": "Rita (readonly)", "role": "readonly"})
    assert made.status_code == 201, made.text
    reader = {"Authorization": f"Bearer {made.json()['key']}"}
    refused = await client.post("/v1/customers", json={"name": "Ada"}, headers=reader)
    assert refused.status_code == 403 and refused.json()["error"] == "insufficient_scope"
    assert (await client.get("/v1/offers/off-1", headers=reader)).status_code == 200  # a read: not recorded

    latest, key_made = (await entries(client, app))[:2]
    assert (latest["method"], latest["route"], latest["status"]) == ("POST", "/v1/customers", 403)
    assert (latest["actor_id"], latest["role"]) == (made.json()["id"], "readonly")
    assert (key_made["route"], key_made["status"]) == ("/v1/api-keys", 201)
    # The handler names the new key (no path holds its id yet), with its name and role.
    assert key_made["resources"] == [made.json()["id"]]
    assert key_made["detail"] == {"name": "Rita (readonly)", "role": "readonly"}


async def test_the_gateways_own_writes_are_recorded_with_what_their_handler_adds(gateways):
    client, app = await gateways()
    # A write route of the gateway's own, as the API-key routes are: the handler annotates.
    app.front.table = RouteTable((*ROUTES, r("POST", "/v1/things/{id}/rotate", None, scope="keys:admin")))

    async def rotate(id: str, request: Request):
        annotate(request.scope, resources=["key-old"], action="rotate", role="agent")
        return JSONResponse({"id": "key-new"}, status_code=201, headers={"location": "/v1/things/key-new"})

    app.add_api_route("/v1/things/{id}/rotate", rotate, methods=["POST"])
    assert (await client.post("/v1/things/key-1/rotate")).status_code == 201

    (entry,) = await entries(client, app)
    assert entry["route"] == "/v1/things/{id}/rotate"
    assert entry["resources"] == ["key-1", "key-new", "key-old"]
    assert entry["detail"] == {"action": "rotate", "role": "agent"}


async def test_the_list_filters_by_actor_resource_and_time_and_pages_by_cursor(gateways):
    client, app = await gateways()
    for _ in range(3):
        await client.post("/v1/customers", json={})
    await client.post("/v1/offers/off-9/redeem", json={})
    (second,) = (await entries(client, app))[-2]["resources"]
    await client.patch(f"/v1/customers/{second}", json={})
    everything = await entries(client, app)
    assert len(everything) == 5

    assert [e["seq"] for e in await entries(client, app, resource=second)] == [5, 2]
    assert [e["seq"] for e in await entries(client, app, resource="off-9")] == [4]
    assert len(await entries(client, app, actor="bootstrap-admin")) == 5
    assert await entries(client, app, actor="key_nobody") == []
    third = datetime.fromisoformat(everything[2]["at"])
    assert [e["seq"] for e in await entries(client, app, **{"from": third.isoformat()})] == [5, 4, 3]
    assert [e["seq"] for e in await entries(client, app, to=third.isoformat())] == [2, 1]
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert await entries(client, app, **{"from": later}) == []

    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/v1/audit", params=params)).json()
        seen += [e["seq"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [5, 4, 3, 2, 1]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "yesterday"}, "query.from"),
        ({"to": "2026-13-01T00:00:00Z"}, "query.to"),
        ({"from": "2026-12-01T00:00:00"}, "query.from"),  # no time zone
        ({"from": "2026-12-02T00:00:00Z", "to": "2026-12-01T00:00:00Z"}, "query.to"),
        ({"cursor": "not-ours"}, "query.cursor"),
        ({"limit": "0"}, "query.limit"),
    ],
)
async def test_bad_list_parameters_are_422_naming_the_field(gateways, params, field):
    client, _app = await gateways()
    response = await client.get("/v1/audit", params=params)
    assert response.status_code == 422, response.text
    assert [error["field"] for error in response.json()["detail"]] == [field]


async def test_unknown_parameters_and_no_key_are_refused_and_nothing_changes_entries(gateways):
    client, _app = await gateways()
    response = await client.get("/v1/audit", params={"actr": "x"})
    assert response.status_code == 422
    assert (await client.get("/v1/audit", headers={"Authorization": "Bearer wrong"})).status_code == 401
    assert (await client.get("/v1/audit/verify", headers={"Authorization": ""})).status_code == 401
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert (await client.request(method, "/v1/audit")).status_code == 405
        assert (await client.request(method, "/v1/audit/verify")).status_code == 405


async def _tamper(url: str, *statements: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            for statement in statements:
                await connection.execute(text(statement))
    finally:
        await engine.dispose()


async def _rehash(url: str, seq: int) -> None:
    """What a careful forger does after editing entry `seq`: give it a matching hash."""

    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            row = (await connection.execute(text("SELECT * FROM audit_entries WHERE seq = :s"), {"s": seq})).one()
            entry = dict(row._mapping)
            entry["resources"] = ["forged"]
            if isinstance(entry["at"], str):  # SQLite hands text back
                entry["at"] = datetime.fromisoformat(entry["at"])
            if isinstance(entry["detail"], str):  # JSON as text, without the column's type
                entry["detail"] = json.loads(entry["detail"])
            forged = chain_hash(entry["prev_hash"], entry)
            await connection.execute(
                text("UPDATE audit_entries SET resources = :r, hash = :h WHERE seq = :s"),
                {"r": '["forged"]', "h": forged, "s": seq},
            )
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    ("tamper", "seq", "reason"),
    [
        (["UPDATE audit_entries SET status = 201 WHERE seq = 3"], 3, "entry 3 was changed"),
        (["UPDATE audit_entries SET actor_id = 'someone-else' WHERE seq = 5"], 5, "entry 5 was changed"),
        (["DELETE FROM audit_entries WHERE seq = 2"], 2, "entry 2 is missing"),
        (  # reorder: entries 2 and 3 swap places
            [
                "UPDATE audit_entries SET seq = 100 WHERE seq = 2",
                "UPDATE audit_entries SET seq = 2 WHERE seq = 3",
                "UPDATE audit_entries SET seq = 3 WHERE seq = 100",
            ],
            2,
            "entry 2 was changed",
        ),
        ("rehash 3", 4, "entry 4 does not follow entry 3"),
    ],
)
async def test_verify_finds_rows_changed_removed_or_moved_in_the_database(gateways, database, tamper, seq, reason):
    client, app = await gateways()
    for _ in range(3):
        await client.patch("/v1/customers/cus-1", json={})
        await client.patch("/v1/customers/bad", json={})
    await app.front.audit.flush()
    check = (await client.get("/v1/audit/verify")).json()
    assert check["ok"] is True and check["count"] == 6 and check["broken"] is None
    head = check["head"]
    assert head["seq"] == 6 and head["hash"] == (await entries(client, app))[0]["hash"]

    if tamper == "rehash 3":
        await _rehash(database, 3)
    else:
        await _tamper(database, *tamper)

    check = (await client.get("/v1/audit/verify")).json()
    assert check["ok"] is False and check["head"] is None
    assert check["broken"]["seq"] == seq and check["broken"]["reason"].startswith(reason), check
    assert check["count"] == seq - 1


async def test_a_kept_head_shows_removed_newest_entries_and_a_rewritten_chain(gateways, database):
    client, app = await gateways()
    for _ in range(4):
        await client.post("/v1/customers", json={})
    await app.front.audit.flush()
    head = (await client.get("/v1/audit/verify")).json()["head"]
    anchor = {"anchor_seq": head["seq"], "anchor_hash": head["hash"]}
    assert (await client.get("/v1/audit/verify", params=anchor)).json()["ok"] is True

    # The newest entry removed: the rest still chains, only the kept head tells.
    await _tamper(database, "DELETE FROM audit_entries WHERE seq = 4")
    assert (await client.get("/v1/audit/verify")).json()["ok"] is True
    check = (await client.get("/v1/audit/verify", params=anchor)).json()
    assert check["ok"] is False and check["broken"]["seq"] == 4 and "chain ends at 3" in check["broken"]["reason"]

    # Entry 4 written anew (a rewrite from there on): it chains, but is not the one kept.
    await client.post("/v1/customers", json={})
    await app.front.audit.flush()
    assert (await client.get("/v1/audit/verify")).json()["ok"] is True
    check = (await client.get("/v1/audit/verify", params=anchor)).json()
    assert check["broken"] == {"seq": 4, "reason": "entry 4 is not the one anchored: the chain was rewritten"}

    response = await client.get("/v1/audit/verify", params={"anchor_seq": 4})
    assert response.status_code == 422 and response.json()["detail"][0]["field"] == "query.anchor_hash"


async def test_two_gateways_and_a_restart_write_one_chain(stand_ins, nats_stub, identify, database, tmp_path):
    """Two gateways (each with its own connections, as two processes have) append at once,
    a transaction per entry, interleaved; one stops with entries still queued, which its
    stop writes; a third starts on the same database and goes on with the same chain."""

    async def gateway(stack: contextlib.AsyncExitStack, name: str):
        var = tmp_path / name
        var.mkdir()
        # audit_flush_s=60: nothing is written before a test's flush or the gateway's stop.
        settings = gateway_settings(
            stand_ins, nats_stub, var, identify_url=identify, database_url=database, audit_flush_s=60.0, audit_batch=1
        )
        app = create_app(settings, admin_key=API_KEY)
        url = await stack.enter_async_context(serve(app))
        client = await stack.enter_async_context(httpx.AsyncClient(base_url=url, headers=AUTH))
        return client, app

    async def writes(client: httpx.AsyncClient, count: int) -> None:
        for _ in range(count):
            assert (await client.patch("/v1/customers/cus-7", json={})).status_code == 200

    async with contextlib.AsyncExitStack() as first:
        (one, one_app), (two, two_app) = await gateway(first, "one"), await gateway(first, "two")
        await asyncio.gather(writes(one, 30), writes(two, 30))
        await asyncio.gather(one_app.front.audit.flush(), two_app.front.audit.flush())
        await writes(two, 7)  # still queued when the gateway stops
    async with contextlib.AsyncExitStack() as second:
        three, three_app = await gateway(second, "three")
        await writes(three, 3)
        await three_app.front.audit.flush()
        check = (await three.get("/v1/audit/verify")).json()
        items = await entries(three, three_app, limit=200)

    assert check["ok"] is True and check["count"] == 70, check
    assert [e["seq"] for e in items] == list(range(70, 0, -1))


async def test_the_head_is_logged_every_n_entries_to_be_kept_elsewhere(
    stand_ins, nats_stub, identify, database, tmp_path
):
    settings = gateway_settings(
        stand_ins, nats_stub, tmp_path, identify_url=identify, database_url=database, audit_head_every=2
    )
    app = create_app(settings, admin_key=API_KEY)  # configures logging: the handler comes after
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("gateway.audit").addHandler(handler)
    try:
        async with serve(app) as url, httpx.AsyncClient(base_url=url, headers=AUTH) as client:
            for _ in range(5):
                await client.patch("/v1/customers/cus-3", json={})
                await app.front.audit.flush()
            items = await entries(client, app)
    finally:
        logging.getLogger("gateway.audit").removeHandler(handler)
    logged = [record.fields for record in records if record.getMessage() == "audit chain head"]
    hashes = {entry["seq"]: entry["hash"] for entry in items}
    assert logged == [{"seq": 2, "hash": hashes[2]}, {"seq": 4, "hash": hashes[4]}]
