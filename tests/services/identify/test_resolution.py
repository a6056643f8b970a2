"""Identity resolution in identify: match keys, duplicate candidates, merges (real NATS, real database)."""

from __future__ import annotations

import sqlite3

import pytest
from alembic import command
from sqlalchemy import func, insert, select

from services.identify.customers.normalize import edit_distance, email_match_key, name_key, phone_key
from services.identify.models import (
    Customer,
    CustomerNameToken,
    CustomerScore,
    PurchaseSummary,
    ReferralSeen,
    Transaction,
)
from shared.db.migrations import alembic_config, upgrade
from shared.events.envelope import make_event
from tests.services.test_lifecycle import _handled, _no_pending, _publish, _read_stream
from tests.support import wait_until

# --- normalisation -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        (" Ada.Lovelace+news@GoogleMail.com ", "adalovelace@gmail.com"),
        ("a.d.a@gmail.com", "ada@gmail.com"),
        ("Ada+crm@Example.COM", "ada@example.com"),
        ("ada.lovelace@example.com", "ada.lovelace@example.com"),  # dots matter outside Google
        ("+tag@example.com", "+tag@example.com"),  # nothing before the tag: kept whole
        (None, None),
        ("", None),
    ],
)
def test_email_match_keys(raw, key):
    assert email_match_key(raw) == key


@pytest.mark.parametrize(
    ("raw", "region", "key"),
    [
        ("(415) 555-2671", "US", "+14155552671"),
        ("+1 415 555 2671", "US", "+14155552671"),
        ("1-415-555-2671", "US", "+14155552671"),
        ("415.555.2671", "US", "+14155552671"),
        ("+44 20 7946 0958", "US", "+442079460958"),
        ("0044 20 7946 0958", "US", "+442079460958"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("+1 415 555 2671", "GB", "+14155552671"),  # a country code wins over the region
        ("12345", "US", None),
        ("not a phone", "US", None),
        (None, "US", None),
    ],
)
def test_phone_keys_are_e164_or_none(raw, region, key):
    assert phone_key(raw, region) == key


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Zoë Lovelace", "zoe  LOVELACE"),
        ("Lovelace, Ada", "ada lovelace"),
        ("José Müller", "MULLER jose"),
        ("Ada O'Brien", "obrien ada"),
    ],
)
def test_name_keys_fold_accents_case_punctuation_and_order(a, b):
    assert name_key(a) == name_key(b)


def test_name_key_and_edit_distance():
    assert name_key("  ") is None and name_key(None) is None
    assert name_key("Jean-Luc Picard") == "jeanluc picard"
    assert edit_distance(name_key("Jon Smith"), name_key("John Smith"), 2) == 1
    assert edit_distance("ada lovelace", "ada lovelase", 2) == 1
    assert edit_distance("ada", "bob", 1) == 2  # stops past the limit


def test_the_backfill_revision_fills_keys_of_existing_customers(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'identify.db'}"
    upgrade("identify", url, "e4ad0c9fa6f6")  # the revision before the backfill
    with sqlite3.connect(tmp_path / "identify.db") as db:
        db.execute(
            "INSERT INTO customers (id, email, email_key, name, phone, purchase_count, created_at, updated_at) "
            "VALUES ('old-1', 'A.da+x@gmail.com', 'a.da+x@gmail.com', 'Lovelace, Ada', '(415) 555-2671', 0, "
            "'2026-01-01 00:00:00', '2026-01-01 00:00:00')"
        )
    upgrade("identify", url)
    with sqlite3.connect(tmp_path / "identify.db") as db:
        keys = db.execute("SELECT email_match_key, phone_key, name_key FROM customers WHERE id = 'old-1'").fetchone()
        tokens = db.execute(
            "SELECT token FROM customer_name_tokens WHERE customer_id = 'old-1' ORDER BY token"
        ).fetchall()
    assert keys == ("ada@gmail.com", "+14155552671", "ada lovelace")
    assert tokens == [("ada",), ("lovelace",)]
    command.check(alembic_config("identify", url))


# --- helpers -------------------------------------------------------------------------


async def _create(client, **body) -> dict:
    response = await client.post("/v1/customers", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def _buy(client, customer_id: str, n: int, amount: str = "10.00") -> dict:
    response = await client.post(
        "/v1/transactions",
        json={
            "customer_id": customer_id,
            "amount": amount,
            "currency": "USD",
            "occurred_at": f"2026-01-{n:02d}T10:00:00Z",
            "external_id": f"{customer_id}-{n}",
        },
    )
    assert response.status_code == 201, response.text
    return response.json()


async def _duplicates(client, customer_id: str) -> list[dict]:
    response = await client.get(f"/v1/customers/{customer_id}/duplicates")
    assert response.status_code == 200, response.text
    return response.json()["items"]


# --- keys on create and update ---------------------------------------------------------


async def test_create_and_update_fill_the_match_keys(suite):
    identify = await suite.start("identify")
    ada = await _create(identify.client, email="Ada.Lovelace+crm@gmail.com", phone="(415) 555-2671", name="Zoë Ada")
    assert ada["phone"] == "(415) 555-2671" and ada["phone_e164"] == "+14155552671"
    assert ada["merged_into"] is None and ada["merged_at"] is None
    invalid = await _create(identify.client, email="x@example.com", phone="12345")
    assert invalid["phone"] == "12345" and invalid["phone_e164"] is None  # the raw phone is kept

    patched = await identify.client.patch(
        f"/v1/customers/{ada['id']}", json={"phone": "+44 20 7946 0958", "name": "Ada King"}
    )
    assert patched.status_code == 200 and patched.json()["phone_e164"] == "+442079460958"
    async with identify.runtime.db.reader() as session:
        row = (await session.execute(select(Customer).where(Customer.id == ada["id"]))).scalar_one()
        tokens = (
            (
                await session.execute(
                    select(CustomerNameToken.token).where(CustomerNameToken.customer_id == ada["id"]).order_by("token")
                )
            )
            .scalars()
            .all()
        )
    assert (row.email_match_key, row.phone_key, row.name_key) == ("adalovelace@gmail.com", "+442079460958", "ada king")
    assert tokens == ["ada", "king"]


# --- duplicates --------------------------------------------------------------------------


async def test_duplicates_come_with_scores_and_reasons_best_first(suite):
    identify = await suite.start("identify")
    ada = await _create(identify.client, email="ada.lovelace@gmail.com", phone="+1 415 555 2671", name="Ada Lovelace")
    twin = await _create(
        identify.client, email="adalovelace+shop@googlemail.com", phone="(415) 555-2671", name="Ada Lovelase"
    )
    namesake = await _create(identify.client, email="ada@elsewhere.org", name="Lovelace, Ada")
    same_phone = await _create(identify.client, external_id="crm-7", phone="415 555 2671", name="Bob King")
    await _create(identify.client, email="someone@example.com", name="Ada Byron")  # shares a token, too far off
    await _create(identify.client, email="carol@example.com", name="Carol Jones")

    items = await _duplicates(identify.client, ada["id"])
    assert [(i["customer"]["id"], i["score"], i["reasons"]) for i in items] == [
        (twin["id"], 0.916, ["same email after normalisation", "same phone (E.164)", "similar name (distance 1)"]),
        (same_phone["id"], 0.6, ["same phone (E.164)"]),
        (namesake["id"], 0.4, ["same name"]),
    ]
    assert items[0]["customer"]["email"] == "adalovelace+shop@googlemail.com"

    # A typo in one token is found through the other token.
    jon = await _create(identify.client, email="jon@example.com", name="Jon Smith")
    john = await _create(identify.client, email="john@example.net", name="John Smith")
    assert [(i["customer"]["id"], i["reasons"]) for i in await _duplicates(identify.client, jon["id"])] == [
        (john["id"], ["similar name (distance 1)"])
    ]

    alone = await _create(identify.client, email="nobody-like-me@example.com")
    assert await _duplicates(identify.client, alone["id"]) == []
    missing = await identify.client.get("/v1/customers/nope/duplicates")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"

    # Merged customers are never candidates.
    merged = await identify.client.post(f"/v1/customers/{ada['id']}/merge", json={"merge": [twin["id"]]})
    assert merged.status_code == 200, merged.text
    assert [i["customer"]["id"] for i in await _duplicates(identify.client, ada["id"])] == [
        same_phone["id"],
        namesake["id"],
    ]
    assert twin["id"] not in [i["customer"]["id"] for i in await _duplicates(identify.client, namesake["id"])]


# --- merging -----------------------------------------------------------------------------


async def test_a_merge_follows_the_survivorship_rules_and_emits_one_event(suite):
    identify = await suite.start("identify")
    client = identify.client
    referrer = await _create(client, email="referrer@example.com")
    older = await _create(
        client,
        external_id="shop-1",
        email="ada.l@gmail.com",
        name="Ada Lovelace",
        phone="(415) 555-2671",
        referred_by=referrer["id"],
    )
    newer = await _create(client, email="ada.lovelace@work.example", name="A. Lovelace", phone="+44 20 7946 0958")
    survivor = await _create(client, email="ada@example.com")
    friend = await _create(client, email="friend@example.com", referred_by=older["id"])
    await _buy(client, survivor["id"], 1, "5.00")
    await _buy(client, older["id"], 2, "7.50")
    await _buy(client, older["id"], 3, "2.50")
    await _buy(client, newer["id"], 4, "1.00")
    async with identify.runtime.db.writer() as session:
        await session.execute(insert(CustomerScore).values(customer_id=older["id"], segment="champions", kinds=[]))
        await session.commit()

    response = await client.post(f"/v1/customers/{survivor['id']}/merge", json={"merge": [newer["id"], older["id"]]})
    assert response.status_code == 200, response.text
    body = response.json()
    # The survivor keeps its id and email; empty fields come from the oldest merged customer first.
    assert body["id"] == survivor["id"] and body["email"] == "ada@example.com"
    assert (body["name"], body["phone"], body["external_id"]) == ("Ada Lovelace", "(415) 555-2671", "shop-1")
    assert body["phone_e164"] == "+14155552671"
    assert body["referred_by"] == referrer["id"]
    assert body["purchase_count"] == 4 and body["merged_into"] is None

    # Merged customers stay readable and point at the survivor; the moved external_id left them,
    # the email the survivor already had a value for stayed.
    for merged in (older, newer):
        again = (await client.get(f"/v1/customers/{merged['id']}")).json()
        assert again["merged_into"] == survivor["id"] and again["merged_at"] is not None
        assert again["purchase_count"] == 0
    older_now = (await client.get(f"/v1/customers/{older['id']}")).json()
    assert older_now["external_id"] is None and older_now["email"] == "ada.l@gmail.com"
    assert (await client.get(f"/v1/customers/{friend['id']}")).json()["referred_by"] == survivor["id"]

    transactions = (await client.get(f"/v1/customers/{survivor['id']}/transactions")).json()["items"]
    assert sorted(t["amount"] for t in transactions) == ["1", "2.5", "5", "7.5"]
    assert (await client.get(f"/v1/customers/{older['id']}/transactions")).json()["items"] == []
    async with identify.runtime.db.reader() as session:
        summaries = {
            row.customer_id: (row.purchases, row.total_spend)
            for row in (await session.execute(select(PurchaseSummary))).scalars()
        }
        scores = (await session.execute(select(func.count()).select_from(CustomerScore))).scalar()
        left = (
            await session.execute(
                select(func.count())
                .select_from(Transaction)
                .where(Transaction.customer_id.in_([older["id"], newer["id"]]))
            )
        ).scalar()
    assert summaries == {survivor["id"]: (4, pytest.approx(16))}
    assert scores == 0 and left == 0

    # The list shows customers that stand on their own.
    listed = [c["id"] for c in (await client.get("/v1/customers")).json()["items"]]
    assert survivor["id"] in listed and older["id"] not in listed and newer["id"] not in listed

    # A merged customer takes no new data: 409 naming the survivor.
    patched = await client.patch(f"/v1/customers/{older['id']}", json={"name": "Someone"})
    assert patched.status_code == 409 and survivor["id"] in patched.json()["detail"]
    bought = await client.post(
        "/v1/transactions",
        json={"customer_id": newer["id"], "amount": "1", "currency": "USD", "occurred_at": "2026-02-01T00:00:00Z"},
    )
    assert bought.status_code == 409 and bought.json()["error"] == "customer_merged"
    assert survivor["id"] in bought.json()["detail"]

    await wait_until(lambda: _no_pending(identify), what="identify's outbox published")
    (event,) = await _read_stream(suite.nats.url, "crm.identify.customer.merged", 1, settle=True)
    assert event["subject"] == survivor["id"]
    assert event["data"]["survivor_id"] == survivor["id"]
    assert event["data"]["merged_ids"] == [older["id"], newer["id"]]  # oldest first
    assert event["data"]["purchase_count"] == 4
    updates = await _read_stream(suite.nats.url, "crm.identify.customer.updated", 1, settle=True)
    assert updates[0]["data"]["changes"] == {
        "name": "Ada Lovelace",
        "phone": "(415) 555-2671",
        "external_id": "shop-1",
        "referred_by": referrer["id"],
    }


async def test_merge_errors(suite):
    identify = await suite.start("identify")
    client = identify.client
    a, b, c = [await _create(client, email=f"{n}@example.com") for n in "abc"]

    async def merge(survivor_id, body):
        return await client.post(f"/v1/customers/{survivor_id}/merge", json=body)

    itself = await merge(a["id"], {"merge": [a["id"]]})
    assert itself.status_code == 422 and itself.json()["detail"][0]["field"] == "body.merge"
    twice = await merge(a["id"], {"merge": [b["id"], b["id"]]})
    assert twice.status_code == 422
    assert (await merge(a["id"], {"merge": []})).status_code == 422
    too_many = await merge(a["id"], {"merge": [f"id-{i}" for i in range(51)]})
    assert too_many.status_code == 422 and too_many.json()["detail"][0]["field"] == "body.merge"
    assert (await merge(a["id"], {"merge": [b["id"]], "survivor_id": a["id"]})).status_code == 422
    unknown_survivor = await merge("nobody", {"merge": [b["id"]]})
    assert unknown_survivor.status_code == 404 and "nobody" in unknown_survivor.json()["detail"]
    unknown_merged = await merge(a["id"], {"merge": [b["id"], "ghost"]})
    assert unknown_merged.status_code == 404 and "ghost" in unknown_merged.json()["detail"]

    assert (await merge(b["id"], {"merge": [a["id"]]})).status_code == 200
    again = await merge(c["id"], {"merge": [a["id"]]})
    assert again.status_code == 409 and b["id"] in again.json()["detail"]
    into_merged = await merge(a["id"], {"merge": [c["id"]]})
    assert into_merged.status_code == 409 and b["id"] in into_merged.json()["detail"]

    # Merging a survivor on: customers merged into it follow to the new survivor.
    assert (await merge(c["id"], {"merge": [b["id"]]})).status_code == 200
    assert (await client.get(f"/v1/customers/{a['id']}")).json()["merged_into"] == c["id"]
    # Failed merges left no event behind: two merges, two events.
    await wait_until(lambda: _no_pending(identify), what="identify's outbox published")
    events = await _read_stream(suite.nats.url, "crm.identify.customer.merged", 2, settle=True)
    assert [(e["data"]["survivor_id"], e["data"]["merged_ids"]) for e in events] == [
        (b["id"], [a["id"]]),
        (c["id"], [b["id"]]),
    ]


async def test_a_referral_announced_before_a_merge_and_read_after_it_counts_for_the_survivor(suite):
    identify = await suite.start("identify")
    client = identify.client
    survivor = await _create(client, email="survivor@example.com")
    merged = await _create(client, email="merged@example.com")
    friend = await _create(client, email="friend@example.com")
    response = await client.post(f"/v1/customers/{survivor['id']}/merge", json={"merge": [merged["id"]]})
    assert response.status_code == 200, response.text

    # network recorded these before it applied the merge: one names the merged customer
    # as referrer, the other became a self-referral of the survivor.
    late = [
        make_event(
            service="network",
            type="crm.network.referral.recorded",
            data={
                "id": "r-late",
                "referrer_id": merged["id"],
                "referred_id": friend["id"],
                "recorded_at": "2026-01-01T00:00:00Z",
            },
            subject=friend["id"],
        ),
        make_event(
            service="network",
            type="crm.network.referral.recorded",
            data={
                "id": "r-self",
                "referrer_id": merged["id"],
                "referred_id": survivor["id"],
                "recorded_at": "2026-01-01T00:00:00Z",
            },
            subject=survivor["id"],
        ),
    ]
    for event in late:
        await _publish(suite.nats.url, event)

    async def seen():
        async with identify.runtime.db.reader() as session:
            rows = (
                await session.execute(select(ReferralSeen.id, ReferralSeen.referrer_id, ReferralSeen.referred_id))
            ).all()
        handled = await _handled(identify, late[-1].id)
        return [tuple(row) for row in rows] if handled else None

    assert await wait_until(seen, what="the late referrals applied") == [("r-late", survivor["id"], friend["id"])]
