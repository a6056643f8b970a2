"""What emit() writes to the outbox is the event's one JSON form, byte for byte."""

from __future__ import annotations

import gc
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from shared.events.contracts import CATALOG
from shared.events.envelope import CloudEvent
from shared.events.messaging import emit, emit_many, payload_in_contract_order
from shared.observability import context


class FakeSession:
    """emit() only touches session.info; the outbox write happens at commit."""

    def __init__(self):
        self.info = {"service": "value"}


def test_the_outbox_body_is_the_events_json_form():
    session = FakeSession()
    issued = datetime(2026, 11, 1, 10, 0, 0, tzinfo=UTC)  # no microseconds
    token = context.correlation_id.set("corr-1")
    try:
        with_none = emit(
            session,
            "crm.value.offer.issued",
            {
                "id": "o-1",
                "customer_id": "c-1",
                "kind": "welcome",
                "title": "Welcome — 10%",
                "discount_percent": None,
                "expires_at": None,
                "issued_at": issued,
            },
        )
        full = emit(
            session,
            "crm.value.offer.issued",
            {
                "id": "o-2",
                "customer_id": "c-1",
                "kind": "manual",
                "title": "x",
                "discount_percent": "12.5",
                "expires_at": issued + timedelta(days=30, microseconds=5),
                "issued_at": issued.astimezone(timezone(timedelta(hours=2))),
            },
            subject="c-1",
        )
    finally:
        context.correlation_id.reset(token)
    rows = session.info["pending_events"]
    for event, row in zip((with_none, full), rows):
        assert row["body"] == event.to_json()
        assert row["body"] == CloudEvent.from_json(row["body"]).to_json()
        assert row["event_id"] == event.id and row["created_at"] == event.time
    decoded = CloudEvent.from_json(rows[0]["body"])
    assert decoded.subject is None and "subject" not in rows[0]["body"].decode()
    assert decoded.data["discount_percent"] is None  # None inside the data is kept
    assert decoded.correlationid == "corr-1"


async def test_a_running_service_keeps_its_start_up_objects_out_of_the_collector(suite):
    await suite.start("lifecycle")
    assert gc.get_freeze_count() > 0


def test_emit_many_writes_the_same_outbox_rows_as_emit():
    at = datetime(2026, 11, 1, 10, 0, 0, 120000, tzinfo=UTC)
    payloads = [
        {
            "id": "t-1",
            "customer_id": "c-1",
            "amount": "12.5",
            "currency": "EUR",
            "occurred_at": at,
            "external_id": "x-1",
            "purchase_count": 3,
            "margin": None,
            "cost": "1.25",
        },
        # omitted optional fields get the contract's defaults, as model_dump() writes them
        {
            "id": "t-2",
            "customer_id": "c-2",
            "amount": "-3",
            "currency": "USD",
            "purchase_count": 1,
            "occurred_at": at.astimezone(timezone(timedelta(hours=-5))).replace(microsecond=0),
        },
    ]
    one, many = FakeSession(), FakeSession()
    token = context.correlation_id.set("corr-9")
    try:
        for payload, subject in zip(payloads, ('c-"1"\u00e9', None)):
            emit(one, "crm.identify.transaction.recorded", payload, subject=subject)
        ids = emit_many(many, "crm.identify.transaction.recorded", payloads, ['c-"1"\u00e9', None])
        created = emit_many(
            many, "crm.identify.customer.created", [{"id": "c-3", "external_id": "e-3", "created_at": at}], ["c-3"]
        )
        emit(one, "crm.identify.customer.created", {"id": "c-3", "external_id": "e-3", "created_at": at}, subject="c-3")
    finally:
        context.correlation_id.reset(token)
    expected_rows, rows = one.info["pending_events"], many.info["pending_events"]
    assert [row["event_id"] for row in rows] == ids + created and len(set(ids)) == 2
    for expected, row in zip(expected_rows, rows, strict=True):
        event, made = CloudEvent.from_json(expected["body"]), CloudEvent.from_json(row["body"])
        # ids and times are each event's own; everything else is the same bytes
        body = (
            expected["body"]
            .replace(event.id.encode(), made.id.encode())
            .replace(
                orjson.dumps(event.time, option=orjson.OPT_UTC_Z)[1:-1],
                orjson.dumps(made.time, option=orjson.OPT_UTC_Z)[1:-1],
            )
        )
        assert row["body"] == body
        assert row["subject"] == expected["subject"] and row["created_at"] == made.time
        assert made.to_json() == row["body"]
    assert CloudEvent.from_json(rows[1]["body"]).subject is None


def test_a_payload_in_the_contracts_order_is_taken_as_it_is_and_written_as_emit_writes_it():
    at = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
    template = payload_in_contract_order(
        "crm.value.offer.issued", {"kind": "percent_off", "title": "10%", "issued_at": at}
    )
    assert list(template) == list(CATALOG["crm.value.offer.issued"].model.model_fields)
    assert (template["id"], template["points"], template["discount_percent"]) == (None, None, None)
    payload = template.copy()
    payload["id"], payload["customer_id"], payload["coupon_code"] = "o-1", "c-1", "ABC"
    one, many = FakeSession(), FakeSession()
    emit(one, "crm.value.offer.issued", payload, subject="c-1")
    (event_id,) = emit_many(many, "crm.value.offer.issued", [payload], ["c-1"])
    expected, made = one.info["pending_events"][0], many.info["pending_events"][0]
    event = CloudEvent.from_json(expected["body"])
    body = made["body"].replace(event_id.encode(), event.id.encode())
    made_time = CloudEvent.from_json(made["body"]).time
    body = body.replace(
        orjson.dumps(made_time, option=orjson.OPT_UTC_Z)[1:-1], orjson.dumps(event.time, option=orjson.OPT_UTC_Z)[1:-1]
    )
    assert body == expected["body"]
    with pytest.raises(ValueError, match="no fields"):
        payload_in_contract_order("crm.value.offer.issued", {"surprise": 1})


def test_emit_many_refuses_payloads_that_do_not_fit_the_contract():
    session = FakeSession()
    good = {"id": "c-1", "created_at": datetime(2026, 1, 1, tzinfo=UTC)}
    with pytest.raises(ValueError):
        emit_many(session, "crm.identify.customer.created", [good, {**good, "surprise": 1}], ["c-1", "c-1"])
    with pytest.raises(ValueError):
        emit_many(session, "crm.identify.customer.created", [good, {"id": "c-2"}], ["c-1", "c-2"])
    with pytest.raises(ValueError):
        emit_many(session, "crm.identify.customer.created", [good], [])


def test_emit_many_writes_the_causation_and_the_event_id_as_correlation_as_emit_does():
    at = datetime(2026, 11, 1, 10, 0, 0, tzinfo=UTC)
    payload = {"id": "c-3", "external_id": "e-3", "created_at": at}
    one, many = FakeSession(), FakeSession()
    token = context.causation_id.set("cause-1")  # no correlation id: each event's own id
    try:
        emit(one, "crm.identify.customer.created", payload, subject="c-3")
        (event_id,) = emit_many(many, "crm.identify.customer.created", [payload], ["c-3"])
    finally:
        context.causation_id.reset(token)
    expected, made = CloudEvent.from_json(one.info["pending_events"][0]["body"]), many.info["pending_events"][0]
    assert CloudEvent.from_json(made["body"]).correlationid == event_id
    body = (
        one.info["pending_events"][0]["body"]
        .replace(expected.id.encode(), event_id.encode())
        .replace(
            orjson.dumps(expected.time, option=orjson.OPT_UTC_Z)[1:-1],
            orjson.dumps(made["created_at"], option=orjson.OPT_UTC_Z)[1:-1],
        )
    )
    assert made["body"] == body and b'"causationid":"cause-1"' in body
