"""Personal data: the marks (shared/privacy) drive erasure with no code per field, on the real
database (SQLite, or PostgreSQL in CI's second run); and identify's erasure API through its
rules: unknown 404, merged 409, a second request the first one's report."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from sqlalchemy import Column, MetaData, String, Table, Text, insert, select

from shared.db.database import Database
from shared.db.uow import transaction
from shared.events.contracts import CATALOG, CustomerCreated, InteractionLogged
from shared.events.envelope import make_event
from shared.events.messaging import BUNDLE_EVENTS, messaging_tables, outbox_events
from shared.privacy.classification import ERASED, about_customers, personal, personal_fields
from shared.privacy.erasure import ErasedCustomers, erase_customer_data
from shared.privacy.scrub import scrub_event_json
from tests.services.identify.test_imports import run_import
from tests.services.test_lifecycle import _read_stream
from tests.support import make_database_url, wait_until

metadata = MetaData()
messaging = messaging_tables(metadata)
erased = ErasedCustomers(metadata)
# A table as a later aggregate would add it: only the marks say what erasure does.
notes = Table(
    "notes",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("customer_id", String(36), nullable=False),
    Column("category", String(20), nullable=False),
    Column("nickname", String(50), info=personal("name")),
    Column("body", Text, nullable=False, info=personal("free_text")),
    info=about_customers("notes agents keep on the customer"),
)
# Rows that are nothing but personal data go whole.
aliases = Table(
    "nicknames",
    metadata,
    Column("customer_id", String(36), primary_key=True),
    Column("nickname", String(50), primary_key=True, info=personal("name")),
    info=about_customers("what the customer likes to be called", erase="delete"),
)
# Personal, but no customer's: a customer's erasure leaves it.
contacts = Table(
    "contacts",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("email", String(50), info=personal("email")),
)

AT = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
async def db(tmp_path):
    url, drop = await make_database_url("privacy", tmp_path)
    database = Database.connect(url, service="privacy")
    database.info["messaging"] = messaging
    async with database.writer_engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield database
    await database.dispose()
    await drop()


def _created(customer_id: str, email: str, name: str) -> bytes:
    data = CustomerCreated(id=customer_id, email=email, name=name, created_at=AT).model_dump(mode="json")
    return make_event(
        service="identify", type="crm.identify.customer.created", data=data, subject=customer_id
    ).to_json()


def _logged(customer_id: str, summary: str) -> bytes:
    data = InteractionLogged(
        id="i-" + customer_id,
        customer_id=customer_id,
        channel="chat",
        direction="inbound",
        summary=summary,
        occurred_at=AT,
    ).model_dump(mode="json")
    return make_event(service="engage", type="crm.engage.interaction.logged", data=data, subject=customer_id).to_json()


def _dead_letter(raw: bytes) -> bytes:
    data = {
        "consumer": "engage-timeline",
        "event_id": orjson.loads(raw)["id"],
        "event_type": orjson.loads(raw)["type"],
        "error": f"failed on {raw.decode()}",
        "deliveries": 5,
        "failed_at": AT.isoformat(),
        "raw": raw.decode(),
    }
    return make_event(service="engage", type="crm.dlq.engage", data=data).to_json()


def test_every_personal_field_of_a_public_event_is_nullable():
    for subject, contract in CATALOG.items():
        schema = contract.model.model_json_schema()["properties"]
        for name in personal_fields(contract.model):
            # A map of personal values (customer.updated's `changes`) keeps its keys: its values are nullable.
            prop = schema[name].get("additionalProperties", schema[name])
            options = prop.get("anyOf", [prop])
            assert {"type": "null"} in options, f"{subject}.{name} is personal but not nullable"


def test_an_event_is_scrubbed_only_when_it_is_about_the_erased_customer():
    ada, bob = "c-ada", "c-bob"
    scrubbed = orjson.loads(scrub_event_json(_created(ada, "ada@example.com", "Ada"), {ada}))
    assert (scrubbed["data"]["email"], scrubbed["data"]["name"], scrubbed["data"]["id"]) == (None, None, ada)
    # A customer referred by the erased one is someone else's data.
    referred = CustomerCreated(id=bob, email="bob@example.com", referred_by=ada, created_at=AT).model_dump(mode="json")
    event = make_event(service="identify", type="crm.identify.customer.created", data=referred, subject=bob).to_json()
    assert scrub_event_json(event, {ada}) is None
    # Nothing personal left: no change. Not an event at all: no change.
    assert scrub_event_json(orjson.dumps(scrubbed), {ada}) is None
    assert scrub_event_json(b"not json", {ada}) is None
    # A dead letter carries the whole event: it is scrubbed, and the error that may quote it replaced.
    letter = orjson.loads(scrub_event_json(_dead_letter(_logged(ada, "Ada called")), {ada}))
    assert orjson.loads(letter["data"]["raw"])["data"]["summary"] is None
    assert letter["data"]["error"] == ERASED


async def test_erasure_follows_the_marks_through_tables_outbox_bundles_and_dead_letters(db, tmp_path):
    ada, twin, bob = "c-ada", "c-twin", "c-bob"
    bundle = [(f"e-{n}", _logged(ada if n % 2 else bob, f"bundle line {n} Ada")) for n in range(BUNDLE_EVENTS)]
    async with transaction(db.writer) as session:
        await session.execute(
            insert(notes),
            [
                {"id": "n1", "customer_id": ada, "category": "vip", "nickname": "Addie", "body": "Ada likes tea"},
                {"id": "n2", "customer_id": twin, "category": "b2b", "nickname": None, "body": "Twin note"},
                {"id": "n3", "customer_id": bob, "category": "vip", "nickname": "Bobby", "body": "Bob likes coffee"},
            ],
        )
        await session.execute(insert(contacts), [{"id": "k1", "email": "ada@example.com"}])
        await session.execute(
            insert(aliases),
            [{"customer_id": ada, "nickname": "Lady Lovelace"}, {"customer_id": bob, "nickname": "Bobster"}],
        )
        await session.execute(
            insert(messaging.outbox),
            [
                {
                    "event_id": "e-ada",
                    "subject": "crm.identify.customer.created",
                    "body": _created(ada, "a@x.io", "Ada"),
                },
                {
                    "event_id": "e-bob",
                    "subject": "crm.identify.customer.created",
                    "body": _created(bob, "b@x.io", "Bob"),
                },
                {
                    "event_id": bundle[0][0],
                    "subject": "crm.engage.interaction.logged",
                    "body": b"\n".join(eid.encode() + b" " + raw for eid, raw in bundle),
                },
            ],
        )
        await session.execute(
            insert(messaging.dead_letters),
            [
                {
                    "consumer": "x",
                    "event_id": "d1",
                    "subject": "s",
                    "body": _logged(twin, "Twin says hi"),
                    "error": "e",
                    "deliveries": 5,
                },
                {
                    "consumer": "x",
                    "event_id": "d2",
                    "subject": "s",
                    "body": _logged(bob, "Bob says hi"),
                    "error": "e",
                    "deliveries": 5,
                },
            ],
        )
    async with transaction(db.writer) as session:
        counts = await erase_customer_data(
            session, metadata=metadata, messaging=messaging, erased=erased, erasure_id="er-1", ids=[ada, twin]
        )
    assert counts == {"nicknames": 1, "notes": 2, "outbox": 2, "dead_letters": 1}
    async with db.writer() as session:
        rows = {row.id: row for row in (await session.execute(select(notes))).all()}
        assert (rows["n1"].nickname, rows["n1"].body, rows["n1"].category) == (None, ERASED, "vip")
        assert (rows["n2"].body, rows["n3"].nickname, rows["n3"].body) == (ERASED, "Bobby", "Bob likes coffee")
        assert (await session.execute(select(contacts.c.email))).scalar() == "ada@example.com"
        outbox = {row.event_id: row.body for row in (await session.execute(select(messaging.outbox))).all()}
        assert b"a@x.io" not in outbox["e-ada"] and b"b@x.io" in outbox["e-bob"]
        lines = outbox_events(bundle[0][0], outbox[bundle[0][0]])
        assert [eid for eid, _ in lines] == [eid for eid, _ in bundle]
        for n, (_, raw) in enumerate(lines):
            summary = orjson.loads(raw)["data"]["summary"]
            assert summary == (None if n % 2 else f"bundle line {n} Ada")
        letters = {row.event_id: row for row in (await session.execute(select(messaging.dead_letters))).all()}
        assert b"Twin says hi" not in letters["d1"].body and letters["d1"].error == ERASED
        assert b"Bob says hi" in letters["d2"].body
        assert await erased.among(session, {ada, twin, bob}) == {ada, twin}
    # Again: nothing left to erase.
    async with transaction(db.writer) as session:
        again = await erase_customer_data(
            session, metadata=metadata, messaging=messaging, erased=erased, erasure_id="er-1", ids=[ada, twin]
        )
    assert again == {"nicknames": 0, "notes": 0, "outbox": 0, "dead_letters": 0}
    if db.url.startswith("sqlite"):
        # secure_delete zeroed the old cells, and the WAL was checkpointed and truncated.
        path = db.url.split("///", 1)[1]
        wal = Path(path + "-wal")
        await wait_until(lambda: not wal.exists() or wal.stat().st_size == 0, what="the WAL truncated")
        data = b"".join(p.read_bytes() for p in tmp_path.glob("privacy.db*"))
        for gone in (b"Ada likes tea", b"Twin says hi", b"Addie", b"Lady Lovelace", b"a@x.io"):
            assert gone not in data, gone
        assert b"Bob likes coffee" in data and b"Bobster" in data


# --- identify's erasure API ---------------------------------------------------------------


async def test_erasing_an_unknown_or_merged_customer_and_erasing_twice(suite):
    identify = await suite.start("identify")
    client = identify.client
    ada = (
        await client.post(
            "/v1/customers", json={"email": "ada@example.com", "phone": "+14157771234", "external_id": "ada-77"}
        )
    ).json()
    # An import line that failed names her only by external id: it goes with her data.
    job = await run_import(
        client,
        "who,occurred_at,amount\nada-77,2026-02-01,not-a-number\nbob-12,2026-02-01,also-not\n",
        mapping={"who": "customer_external_id"},
        currency="usd",
    )
    assert job["rejected"] == 2
    twin = (await client.post("/v1/customers", json={"email": "ada2@example.com", "name": "Ada"})).json()
    merged = await client.post(f"/v1/customers/{ada['id']}/merge", json={"merge": [twin["id"]]})
    assert merged.status_code == 200, merged.text

    unknown = await client.post("/v1/customers/0192b1c4-0000-7000-8000-000000000000/erasure")
    assert (unknown.status_code, unknown.json()["error"]) == (404, "not_found")
    merged_away = await client.post(f"/v1/customers/{twin['id']}/erasure")
    assert (merged_away.status_code, merged_away.json()["error"]) == (409, "customer_merged")

    first = await client.post(f"/v1/customers/{ada['id']}/erasure")
    assert first.status_code == 202, first.text
    report = first.json()
    assert report["merged_ids"] == [twin["id"]] and report["complete"] is False
    assert [entry["service"] for entry in report["services"]] == ["identify", "engage", "network", "value", "lifecycle"]
    again = await client.post(f"/v1/customers/{ada['id']}/erasure")
    assert again.status_code == 200 and again.json()["id"] == report["id"]
    assert (await client.get("/v1/erasures/nope")).status_code == 404

    # Asked twice at once (PostgreSQL lets the two transactions overlap): one erasure, both
    # answers name it; the second waited for the first instead of failing on the unique id.
    bob = (await client.post("/v1/customers", json={"email": "bob@example.com"})).json()
    both = await asyncio.gather(*(client.post(f"/v1/customers/{bob['id']}/erasure") for _ in range(2)))
    assert sorted(answer.status_code for answer in both) == [200, 202], [answer.text for answer in both]
    assert both[0].json()["id"] == both[1].json()["id"]

    # identify's own report comes back through the stream.
    async def identify_reported():
        body = (await client.get(f"/v1/erasures/{report['id']}")).json()
        return body["services"][0]["applied_at"] and body

    body = await wait_until(identify_reported, what="identify's report")
    assert body["services"][0]["tables"]["customers"] == 2
    assert body["services"][0]["tables"]["import_rejections"] == 1
    errors = (await client.get(f"/v1/imports/{job['id']}/errors")).json()["items"]
    assert [error["raw"] for error in errors] == ["bob-12,2026-02-01,also-not"]
    assert body["complete"] is False  # the other services have not reported
    erased = await _read_stream(suite.nats.url, "crm.identify.customer.erased", 1)
    assert erased[0]["data"] == {
        "erasure_id": report["id"],
        "customer_id": ada["id"],
        "merged_ids": [twin["id"]],
        "requested_at": erased[0]["data"]["requested_at"],
    }
    # Her referral code points at her: it went with her data, and resolves to nobody now.
    assert ada["referral_code"] and (await client.get(f"/v1/customers/{ada['id']}")).json()["referral_code"] is None
    stale = await client.post(
        "/v1/customers", json={"email": "friend@example.com", "referral_code": ada["referral_code"]}
    )
    assert stale.status_code == 422 and "body.referral_code" in stale.text
    patched = await client.patch(f"/v1/customers/{ada['id']}", json={"name": "Ada again"})
    assert (patched.status_code, patched.json()["error"]) == (409, "customer_erased")
    # The same email again, any case: suppressed. Another person: not.
    back = (await client.post("/v1/customers", json={"email": "ADA@example.com"})).json()
    other = (await client.post("/v1/customers", json={"email": "someone@example.com", "phone": "+14157771234"})).json()
    fresh = (await client.post("/v1/customers", json={"email": "fresh@example.com"})).json()
    assert (back["suppressed"], other["suppressed"], fresh["suppressed"]) == (True, True, False)
