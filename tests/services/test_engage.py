"""engage against a real nats-server and real databases: interactions, and the customer
timeline built from identify's, network's and (synthetic) lifecycle and value events."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import nats
import pytest

from services.engage.service import TIMELINE_SUBJECTS, timeline_entries
from shared.events.contracts import CATALOG
from shared.events.envelope import make_event
from tests.support import wait_until

# --- helpers ------------------------------------------------------------------------


async def stream_events(nats_url: str, subject: str) -> list[dict]:
    """Every event stored in the CRM stream on `subject` (an ephemeral consumer reads them)."""

    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe(subject, stream="CRM")
        events: list[dict] = []
        try:
            while True:
                msgs = await sub.fetch(100, timeout=0.5)
                events.extend(json.loads(m.data) for m in msgs)
                for m in msgs:
                    await m.ack()
        except (TimeoutError, nats.errors.TimeoutError):  # nats-py raises either
            pass
        return events
    finally:
        await nc.close()


async def start(suite, name: str):
    """Start a service and touch its database once before any event reaches it.

    Works around a race in shared/db/database.py: the first reader and the first writer
    connection both switch a fresh SQLite file to WAL, and when they do it at the
    same moment one of them fails with "database is locked".
    """

    handle = await suite.start(name)
    ready = await handle.client.get("/readyz")
    assert ready.status_code == 200, ready.text
    return handle


def catalog_event(service: str, type: str, data: dict, subject: str):
    """A CloudEvent whose payload passes the catalog, as the producing service would emit it."""

    contract = CATALOG[type]
    payload = contract.model.model_validate(data).model_dump(mode="json")
    return make_event(service=service, type=type, data=payload, subject=subject, dataschema=contract.dataschema)


async def publish(nats_url: str, event, msg_id: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        ack = await nc.jetstream().publish(event.type, event.to_json(), headers={"Nats-Msg-Id": msg_id})
        assert not ack.duplicate
    finally:
        await nc.close()


async def create_customer(identify, **body) -> dict:
    response = await identify.client.post("/v1/customers", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def known_to_engage(engage, customer_id: str) -> None:
    async def known():
        return (await engage.client.get("/v1/interactions", params={"customer_id": customer_id})).status_code == 200

    await wait_until(known, what=f"engage to learn customer {customer_id}")


async def duplicates_skipped(engage, consumer: str) -> float:
    text = (await engage.client.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith("valuechain_events_duplicate_total{") and f'consumer="{consumer}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


# --- interactions -----------------------------------------------------------------------


async def test_log_and_read_interactions(suite):
    identify = await start(suite, "identify")
    engage = await start(suite, "engage")
    customer = await create_customer(identify, email="grace@example.com", name="Grace")
    await known_to_engage(engage, customer["id"])

    before = datetime.now(UTC)
    response = await engage.client.post(
        "/v1/interactions",
        json={"customer_id": customer["id"], "channel": "phone", "direction": "outbound", "summary": "  Called back  "},
    )
    assert response.status_code == 201, response.text
    first = response.json()
    assert first["customer_id"] == customer["id"]
    assert (first["channel"], first["direction"], first["summary"]) == ("phone", "outbound", "Called back")
    occurred = datetime.fromisoformat(first["occurred_at"])
    assert before - timedelta(seconds=1) <= occurred <= datetime.now(UTC) + timedelta(seconds=1)
    assert first["occurred_at"] == first["logged_at"]

    response = await engage.client.get(f"/v1/interactions/{first['id']}")
    assert response.status_code == 200
    assert response.json() == first

    earlier = await engage.client.post(
        "/v1/interactions",
        json={
            "customer_id": customer["id"],
            "channel": "in_person",
            "direction": "inbound",
            "summary": "Visited the shop",
            "occurred_at": "2024-05-01T10:00:00+02:00",
        },
    )
    assert earlier.status_code == 201, earlier.text
    second = earlier.json()
    assert datetime.fromisoformat(second["occurred_at"]) == datetime(2024, 5, 1, 8, tzinfo=UTC)

    listing = await engage.client.get("/v1/interactions", params={"customer_id": customer["id"], "limit": 1})
    assert listing.status_code == 200
    page = listing.json()
    assert [i["id"] for i in page["items"]] == [first["id"]]  # newest first
    rest = await engage.client.get(
        "/v1/interactions", params={"customer_id": customer["id"], "limit": 1, "cursor": page["next_cursor"]}
    )
    assert [i["id"] for i in rest.json()["items"]] == [second["id"]]
    assert rest.json()["next_cursor"] is None

    missing = await engage.client.get("/v1/interactions/01890000-0000-7000-8000-000000000000")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    assert (await engage.client.get("/v1/interactions", params={"customer_id": "nobody"})).status_code == 404

    async def both_logged():
        events = await stream_events(suite.nats.url, "crm.engage.interaction.logged")
        return events if len(events) >= 2 else None

    events = await wait_until(both_logged, what="both interaction events on JetStream")
    logged = {e["data"]["id"]: e for e in events}
    assert set(logged) == {first["id"], second["id"]}
    assert logged[first["id"]]["subject"] == customer["id"]
    assert logged[first["id"]]["data"] == {
        "id": first["id"],
        "customer_id": customer["id"],
        "channel": "phone",
        "direction": "outbound",
        "summary": "Called back",
        "occurred_at": logged[first["id"]]["data"]["occurred_at"],
    }
    assert datetime.fromisoformat(logged[first["id"]]["data"]["occurred_at"]) == occurred


@pytest.fixture(scope="module")
async def lin_known_to_engage(module_suite):
    """identify and engage started once for the refusals below (they write nothing), and Lin,
    a customer engage knows."""

    identify = await start(module_suite, "identify")
    engage = await start(module_suite, "engage")
    customer = await create_customer(identify, email="lin@example.com")
    await known_to_engage(engage, customer["id"])
    return engage, customer


@pytest.mark.parametrize(
    "change, field",
    [
        ({"channel": "fax"}, "body.channel"),
        ({"direction": "sideways"}, "body.direction"),
        ({"summary": "   "}, "body.summary"),
        ({"summary": ""}, "body.summary"),
        ({"summary": "x" * 2001}, "body.summary"),
        ({"summary": "Called\x00back"}, "body.summary"),
        ({"summary": "Called\x1b[2Jback"}, "body.summary"),
        ({"summary": "Called \u202eback"}, "body.summary"),
        ({"customer_id": "a\x00b"}, "body.customer_id"),
        ({"occurred_at": "2024-05-01T10:00:00"}, "body.occurred_at"),
        ({"priority": "high"}, "body.priority"),
        ({"customer_id": None}, "body.customer_id"),
    ],
)
async def test_invalid_interactions_are_refused(lin_known_to_engage, change, field):
    engage, customer = lin_known_to_engage
    body = {"customer_id": customer["id"], "channel": "email", "direction": "inbound", "summary": "Hello"}
    body.update(change)

    response = await engage.client.post("/v1/interactions", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error"
    assert field in [error["field"] for error in response.json()["detail"]]


async def test_an_interaction_with_an_unknown_customer_is_refused(suite):
    engage = await start(suite, "engage")
    response = await engage.client.post(
        "/v1/interactions",
        json={"customer_id": "no-such-customer", "channel": "email", "direction": "inbound", "summary": "Hi"},
    )
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "validation_error"
    assert body["detail"][0]["field"] == "body.customer_id"
    assert "no-such-customer" in body["detail"][0]["message"]
    malformed = await engage.client.post(
        "/v1/interactions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 400


# --- the timeline -----------------------------------------------------------------------------


async def test_the_timeline_gathers_every_event_about_a_customer(suite):
    identify = await start(suite, "identify")
    engage = await start(suite, "engage")
    network = await start(suite, "network")
    now = datetime.now(UTC)

    ada = await create_customer(identify, email="ada@example.com", name="Ada")
    bob = await create_customer(identify, email="bob@example.com", referred_by=ada["id"])

    async def referral_recorded():
        response = await network.client.get(f"/v1/customers/{ada['id']}/referrals")
        return response.status_code == 200 and response.json()["items"]

    await wait_until(referral_recorded, what="network to record Bob's referral")
    patched = await identify.client.patch(f"/v1/customers/{ada['id']}", json={"name": "Ada L."})
    assert patched.status_code == 200
    purchase = await identify.client.post(
        "/v1/transactions",
        json={
            "customer_id": ada["id"],
            "amount": "12.5",
            "currency": "usd",
            "occurred_at": iso(now - timedelta(days=2)),
        },
    )
    assert purchase.status_code == 201, purchase.text
    await known_to_engage(engage, ada["id"])
    long_summary = "Asked about delivery times " + "and more " * 40
    interaction = await engage.client.post(
        "/v1/interactions",
        json={
            "customer_id": ada["id"],
            "channel": "email",
            "direction": "inbound",
            "summary": long_summary,
            "occurred_at": iso(now - timedelta(days=1)),
        },
    )
    assert interaction.status_code == 201

    # Events of services not running here, as they would publish them; the stage change
    # goes out twice (a producer retrying after the duplicate window): same event id,
    # different Nats-Msg-Id, so JetStream stores both and engage must apply it once.
    stage = catalog_event(
        "lifecycle",
        "crm.lifecycle.stage.changed",
        {
            "customer_id": ada["id"],
            "from_stage": "prospect",
            "to_stage": "new",
            "at": now + timedelta(hours=1),
            "cause_event_id": "c0ffee00-0000-4000-8000-000000000000",
        },
        ada["id"],
    )
    offer = catalog_event(
        "value",
        "crm.value.offer.issued",
        {
            "id": "0f0f0f0f-0000-7000-8000-000000000001",
            "customer_id": ada["id"],
            "kind": "welcome",
            "title": "Welcome gift",
            "discount_percent": "10",
            "issued_at": now - timedelta(days=3),
        },
        ada["id"],
    )
    await publish(suite.nats.url, stage, stage.id)
    await publish(suite.nats.url, offer, offer.id)
    await publish(suite.nats.url, stage, f"{stage.id}-again")

    async def full_timeline():
        response = await engage.client.get(f"/v1/customers/{ada['id']}/timeline")
        if response.status_code != 200:
            return None
        items = response.json()["items"]
        return items if len(items) >= 7 else None

    items = await wait_until(full_timeline, what="Ada's timeline")
    await wait_until(lambda: duplicates_skipped(engage, "engage-timeline"), what="the repeated stage change skipped")
    response = await engage.client.get(f"/v1/customers/{ada['id']}/timeline")
    items = response.json()["items"]
    assert response.json()["next_cursor"] is None

    assert [item["type"] for item in items] == [
        "crm.lifecycle.stage.changed",  # now + 1h
        "crm.identify.customer.updated",  # after Bob was created
        "crm.network.referral.recorded",  # recorded by network after Bob was created
        "crm.identify.customer.created",
        "crm.engage.interaction.logged",  # a day ago
        "crm.identify.transaction.recorded",  # two days ago
        "crm.value.offer.issued",  # three days ago
    ]
    by_type = {item["type"]: item for item in items}
    assert len({item["event_id"] for item in items}) == 7
    assert by_type["crm.lifecycle.stage.changed"]["event_id"] == stage.id
    assert by_type["crm.value.offer.issued"]["event_id"] == offer.id
    assert datetime.fromisoformat(by_type["crm.lifecycle.stage.changed"]["time"]) == datetime.fromisoformat(
        stage.data["at"]
    )
    assert datetime.fromisoformat(by_type["crm.identify.transaction.recorded"]["time"]) == datetime.fromisoformat(
        iso(now - timedelta(days=2))
    )
    referral_time = datetime.fromisoformat(by_type["crm.network.referral.recorded"]["time"])
    assert datetime.fromisoformat(bob["created_at"]) <= referral_time <= datetime.now(UTC)
    assert by_type["crm.lifecycle.stage.changed"]["summary"] == "Stage prospect → new"
    assert by_type["crm.identify.customer.updated"]["summary"] == "Updated name"
    assert by_type["crm.network.referral.recorded"]["summary"] == f"Referred customer {bob['id']}"
    assert by_type["crm.identify.customer.created"]["summary"] == "Customer created: Ada"
    assert by_type["crm.identify.transaction.recorded"]["summary"] == "Purchase of 12.50 USD"
    assert by_type["crm.value.offer.issued"]["summary"] == "Offer issued: Welcome gift (10% off)"
    logged = by_type["crm.engage.interaction.logged"]["summary"]
    assert logged.startswith("Inbound email: Asked about delivery times and more")
    assert logged.endswith("…") and len(logged) < 160

    # The referral is on both timelines, under the same event.
    async def bobs_timeline():
        response = await engage.client.get(f"/v1/customers/{bob['id']}/timeline")
        items = response.json()["items"] if response.status_code == 200 else []
        return items if len(items) == 2 else None

    bobs = await wait_until(bobs_timeline, what="Bob's timeline")
    assert [item["type"] for item in bobs] == ["crm.network.referral.recorded", "crm.identify.customer.created"]
    assert bobs[0]["summary"] == f"Referred by customer {ada['id']}"
    assert bobs[0]["event_id"] == by_type["crm.network.referral.recorded"]["event_id"]
    assert bobs[1]["summary"] == "Customer created: bob@example.com"

    # Pages of 3, newest first, cursor on (time, event id): the same entries in the same order.
    paged, cursor, pages = [], None, 0
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        response = await engage.client.get(f"/v1/customers/{ada['id']}/timeline", params=params)
        assert response.status_code == 200
        page = response.json()
        paged += page["items"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert paged == items

    unknown = await engage.client.get("/v1/customers/nobody-at-all/timeline")
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "not_found"
    bad_cursor = await engage.client.get(f"/v1/customers/{ada['id']}/timeline", params={"cursor": "garbage!"})
    assert bad_cursor.status_code == 422
    assert bad_cursor.json()["detail"][0]["field"] == "query.cursor"
    assert (await engage.client.get(f"/v1/customers/{ada['id']}/timeline", params={"limit": 0})).status_code == 422


async def test_a_customer_engage_knows_has_a_timeline_even_before_its_first_entry(suite):
    identify = await start(suite, "identify")
    engage = await start(suite, "engage")
    customer = await create_customer(identify, external_id="crm-42")

    async def listed():
        response = await engage.client.get(f"/v1/customers/{customer['id']}/timeline")
        return response.json() if response.status_code == 200 and response.json()["items"] else None

    page = await wait_until(listed, what="the customer's timeline")
    assert [(i["type"], i["summary"]) for i in page["items"]] == [
        ("crm.identify.customer.created", "Customer created: crm-42")
    ]


# --- the summaries, one per subject ----------------------------------------------------------


def test_every_subject_that_names_a_customer_makes_a_timeline_entry():
    at = datetime(2024, 5, 1, 10, tzinfo=UTC)
    cases = {
        "crm.identify.customer.created": ({"id": "c1", "created_at": at}, "Customer created"),
        "crm.identify.customer.updated": (
            {"id": "c1", "changes": {"phone": "1", "email": "a@b.c"}, "updated_at": at},
            "Updated email, phone",
        ),
        "crm.identify.transaction.recorded": (
            {
                "id": "t",
                "customer_id": "c1",
                "amount": "3.125",
                "currency": "EUR",
                "occurred_at": at,
                "purchase_count": 2,
                "reporting_amount": "3.4375",
                "reporting_currency": "USD",
            },
            "Purchase of 3.125 EUR",
        ),
        "crm.identify.transaction.refunded": (
            {
                "refund_id": "r",
                "transaction_id": "t",
                "customer_id": "c1",
                "amount": "1.5",
                "currency": "EUR",
                "reporting_amount": "1.65",
                "reporting_currency": "USD",
                "reason": "Scratched\nlid",
                "occurred_at": at,
            },
            "Refund of 1.50 EUR: Scratched lid",
        ),
        "crm.identify.transaction.voided": (
            {
                "transaction_id": "t",
                "customer_id": "c1",
                "amount": "3.125",
                "currency": "EUR",
                "reason": "entered twice",
                "voided_at": at,
                "purchase_count": 1,
            },
            "Purchase of 3.125 EUR voided: entered twice",
        ),
        "crm.identify.customer.erased": (
            {"erasure_id": "e", "customer_id": "c1", "merged_ids": ["c0"], "requested_at": at},
            "Personal data erased",
        ),
        "crm.lifecycle.stage.changed": (
            {"customer_id": "c1", "from_stage": None, "to_stage": "prospect", "at": at, "cause_event_id": "e"},
            "Entered stage prospect",
        ),
        "crm.lifecycle.loyalty.points_changed": (
            {"entry_id": "l", "customer_id": "c1", "kind": "earned", "points": 150, "balance": 200, "at": at},
            "Loyalty points earned: +150 (balance 200)",
        ),
        "crm.lifecycle.loyalty.tier_changed": (
            {"customer_id": "c1", "from_tier": "silver", "to_tier": "gold", "at": at},
            "Loyalty tier silver → gold",
        ),
        "crm.lifecycle.ticket.created": (
            {"ticket_id": "t1", "customer_id": "c1", "priority": "high", "subject": "Parcel\nbroken", "created_at": at},
            "Ticket opened: Parcel broken",
        ),
        "crm.lifecycle.ticket.solved": (
            {"ticket_id": "t1", "customer_id": "c1", "channel": "email", "solved_at": at},
            "Ticket t1 solved",
        ),
        "crm.lifecycle.ticket.sla_breached": (
            {"ticket_id": "t1", "customer_id": "c1", "target": "first_response", "due_at": at, "breached_at": at},
            "Ticket t1 missed its first response target",
        ),
        "crm.lifecycle.playbook.entered": (
            {
                "playbook_id": "p",
                "playbook_name": "Win back",
                "customer_id": "c1",
                "group": "treatment",
                "entered_at": at,
                "outreach": True,
                "outreach_queue": "retention",
                "stage": "churned",
            },
            "Entered playbook Win back (outreach: retention)",
        ),
        "crm.lifecycle.churn_risk.changed": (
            {"customer_id": "c1", "risk": 0.724, "band": "high", "from_band": "medium", "at": at},
            "Churn risk high (0.72)",
        ),
        "crm.engage.interaction.logged": (
            {
                "id": "i",
                "customer_id": "c1",
                "channel": "in_person",
                "direction": "outbound",
                "summary": "Met\n up",
                "occurred_at": at,
            },
            "Outbound in person: Met up",
        ),
        "crm.value.offer.issued": (
            {"id": "o", "customer_id": "c1", "kind": "manual", "title": "Spring sale", "issued_at": at},
            "Offer issued: Spring sale",
        ),
        "crm.value.offer.redeemed": (
            {"id": "o", "customer_id": "c1", "kind": "welcome", "redeemed_at": at},
            "Offer redeemed: welcome",
        ),
        "crm.engage.consent.changed": (
            {
                "id": "k",
                "customer_id": "c1",
                "purpose": "marketing",
                "channel": "in_person",
                "granted": False,
                "legal_basis": "consent",
                "source": "api",
                "changed_at": at,
            },
            "Withdrew marketing consent on in person",
        ),
        "crm.engage.message.sent": (
            {"id": "m", "customer_id": "c1", "channel": "email", "purpose": "service", "subject": "Hi", "sent_at": at},
            "Sent email: Hi",
        ),
        "crm.engage.message.failed": (
            {"id": "m", "customer_id": "c1", "channel": "email", "status": "bounced", "failed_at": at},
            "Email bounced",
        ),
        "crm.engage.message.received": (
            {"id": "m", "customer_id": "c1", "channel": "in_person", "received_at": at},
            "Received in person",
        ),
        "crm.engage.conversation.closed": (
            {"id": "v", "customer_id": "c1", "channel": "chat", "resolution_seconds": 60.0, "closed_at": at},
            "Conversation on chat closed",
        ),
        "crm.engage.feedback.received": (
            {"response_id": "r", "survey_id": "s", "customer_id": "c1", "nps": 9, "ces": 2, "received_at": at},
            "Answered a survey: NPS 9, CES 2",
        ),
        "crm.value.idea.shipped": (
            {
                "idea_id": "i",
                "customer_id": "c1",
                "title": "Dark mode",
                "product_area": "app",
                "votes": 3,
                "shipped_at": at,
            },
            "Their idea shipped: Dark mode",
        ),
        "crm.value.idea.submitted": (
            {
                "idea_id": "i",
                "customer_id": "c1",
                "title": "Dark\nmode",
                "product_area": "app",
                "source": "link",
                "submitted_at": at,
            },
            "Proposed an idea (app): Dark mode",
        ),
        "crm.value.idea.voted": (
            {"idea_id": "i", "customer_id": "c1", "product_area": "app", "source": "staff", "voted_at": at},
            "Voted for an idea (app)",
        ),
        "crm.value.idea.commented": (
            {
                "comment_id": "k",
                "idea_id": "i",
                "customer_id": "c1",
                "body": "Yes,\nplease",
                "product_area": "app",
                "source": "link",
                "commented_at": at,
            },
            "Commented on an idea (app): Yes, please",
        ),
        "crm.value.idea.status_changed": (
            {
                "idea_id": "i",
                "customer_id": "c1",
                "title": "Dark mode",
                "product_area": "app",
                "from_status": "new",
                "to_status": "under_review",
                "votes": 2,
                "notified": 3,
                "changed_at": at,
            },
            "Their idea is now under review: Dark mode",
        ),
        "crm.engage.community.post.created": (
            {
                "post_id": "p",
                "community_id": "k",
                "thread_id": "t",
                "author_customer_id": "c1",
                "title": "Best\n lens?",
                "created_at": at,
            },
            "Replied to a community thread: Best lens?",
        ),
        "crm.network.referral.rewarded": (
            {
                "referral_id": "r",
                "referrer_id": "c1",
                "referred_id": "c2",
                "points": 500,
                "transaction_id": "t",
                "rewarded_at": at,
            },
            "Rewarded with 500 points for referring customer c2",
        ),
        "crm.network.relation.started": (
            {
                "relation_id": "r",
                "customer_id": "c1",
                "stakeholder_id": "s",
                "stakeholder_kind": "employee",
                "relation": "account_manager_of",
                "started_at": at,
                "changed_by": "key_1",
            },
            "Account manager: employee s",
        ),
        "crm.network.relation.ended": (
            {
                "relation_id": "r",
                "customer_id": "c1",
                "stakeholder_id": "s",
                "stakeholder_kind": "partner",
                "relation": "introduced",
                "started_at": at,
                "ended_at": at,
                "reason": "ended",
            },
            "No longer introduced by: partner s",
        ),
    }
    assert set(cases) | {"crm.network.referral.recorded"} == set(TIMELINE_SUBJECTS)
    for subject, (data, summary) in cases.items():
        event = catalog_event("x", subject, data, "c1")
        [entry] = timeline_entries(CATALOG[subject].read(event))
        assert entry == {"customer_id": "c1", "event_id": event.id, "type": subject, "time": at, "summary": summary}

    referral = catalog_event(
        "network",
        "crm.network.referral.recorded",
        {"id": "r", "referrer_id": "c1", "referred_id": "c2", "recorded_at": at},
        "c1",
    )
    entries = timeline_entries(CATALOG[referral.type].read(referral))
    assert [(e["customer_id"], e["summary"], e["time"]) for e in entries] == [
        ("c1", "Referred customer c2", at),
        ("c2", "Referred by customer c1", at),
    ]
