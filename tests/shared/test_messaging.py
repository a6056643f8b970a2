"""What emit() writes to the outbox is the event's one JSON form, byte for byte."""

from __future__ import annotations

import gc
from datetime import datetime, timedelta, timezone

from shared import context
from shared.events import CloudEvent
from shared.messaging import emit


class FakeSession:
    """emit() only touches session.info; the outbox write happens at commit."""

    def __init__(self):
        self.info = {"service": "value"}


def test_the_outbox_body_is_the_events_json_form():
    session = FakeSession()
    issued = datetime(2026, 11, 1, 10, 0, 0, tzinfo=timezone.utc)  # no microseconds
    token = context.correlation_id.set("corr-1")
    try:
        with_none = emit(session, "crm.value.offer.issued",
                         {"id": "o-1", "customer_id": "c-1", "kind": "welcome", "title": "Welcome — 10%",
                          "discount_percent": None, "expires_at": None, "issued_at": issued})
        full = emit(session, "crm.value.offer.issued",
                    {"id": "o-2", "customer_id": "c-1", "kind": "manual", "title": "x",
                     "discount_percent": "12.5", "expires_at": issued + timedelta(days=30, microseconds=5),
                     "issued_at": issued.astimezone(timezone(timedelta(hours=2)))},
                    subject="c-1")
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
