"""SLA due times in business time, against times worked out by hand.

The calendar: Europe/Berlin, Monday to Friday 09:00–17:00 local time, Berlin's public holidays
(Good Friday 3 April 2026, Easter Monday 6 April 2026) and a holiday of its own (10 March 2026).
Berlin is UTC+1 until the clocks go forward on Sunday 29 March 2026, UTC+2 after.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest

from services.lifecycle.tickets import sla
from services.lifecycle.tickets.calendar import AROUND_THE_CLOCK, BusinessHours
from services.lifecycle.tickets.models import Ticket

BERLIN = BusinessHours(
    time_zone="Europe/Berlin",
    working_days=frozenset(range(5)),
    start=time(9),
    end=time(17),
    country="DE",
    subdivision="BE",
    holidays=frozenset({date(2026, 3, 10)}),
)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "minutes", "due", "why"),
    [
        # Fri 6 Mar 16:00 CET: 60 min on Friday, the weekend skipped, 60 on Monday 9 Mar from 09:00 CET.
        (utc(2026, 3, 6, 15, 0), 120, utc(2026, 3, 9, 9, 0), "over a weekend"),
        # Sat 7 Mar: nothing until Monday 09:00 CET (08:00 UTC), then 30 min.
        (utc(2026, 3, 7, 12, 0), 30, utc(2026, 3, 9, 8, 30), "starting on a weekend"),
        # Mon 9 Mar 16:30 CET: 30 min on Monday, Tue 10 Mar is the calendar's own holiday, Wed 09:30 CET.
        (utc(2026, 3, 9, 15, 30), 60, utc(2026, 3, 11, 8, 30), "over a holiday of its own"),
        # Thu 2 Apr 16:00 CEST: 60 min, then Good Friday, the weekend, Easter Monday; Tue 7 Apr 10:00 CEST.
        (utc(2026, 4, 2, 14, 0), 120, utc(2026, 4, 7, 8, 0), "over Easter's public holidays"),
        # Fri 27 Mar 16:00 CET: 60 min; the clocks go forward on Sunday; Mon 30 Mar 10:00 CEST = 08:00 UTC
        # (it would be 09:00 UTC had the offset stayed).
        (utc(2026, 3, 27, 15, 0), 120, utc(2026, 3, 30, 8, 0), "over the change to summer time"),
        # Exactly a working day: Monday 09:00 to 17:00 CET.
        (utc(2026, 3, 2, 8, 0), 480, utc(2026, 3, 2, 16, 0), "a whole day ends at closing time"),
    ],
)
def test_due_times_count_only_business_hours(start, minutes, due, why):
    assert BERLIN.add(start, minutes) == due, why
    assert BERLIN.minutes_between(start, due) == minutes, why


def test_a_pending_ticket_pauses_its_timers():
    # Opened Mon 2 Mar 09:00 CET with 480 business minutes to resolve; pending from 13:00 CET
    # (240 min run) until Tue 3 Mar 11:00 CET: the pause is Mon 13–17 + Tue 9–11 = 360 business
    # minutes. The 240 minutes left run from Tue 11:00 CET: due Tue 15:00 CET = 14:00 UTC.
    ticket = Ticket(
        status="new",
        created_at=utc(2026, 3, 2, 8, 0),
        first_response_minutes=None,
        resolution_minutes=480.0,
        paused_minutes=0.0,
        paused_since=None,
        first_response_at=None,
        solved_at=None,
        first_response_breached_at=None,
        resolution_breached_at=None,
    )
    sla.refresh(ticket, BERLIN)
    assert ticket.resolution_due_at == utc(2026, 3, 2, 16, 0)
    ticket.status = "pending"
    sla.pause(ticket, utc(2026, 3, 2, 12, 0))
    sla.refresh(ticket, BERLIN)
    assert ticket.resolution_due_at is None and ticket.next_due_at is None
    sla.resume(ticket, BERLIN, utc(2026, 3, 3, 10, 0))
    ticket.status = "open"
    sla.refresh(ticket, BERLIN)
    assert ticket.paused_minutes == 360
    assert ticket.resolution_due_at == utc(2026, 3, 3, 14, 0)
    assert sla.newly_breached(ticket, utc(2026, 3, 3, 13, 59)) == []
    assert sla.newly_breached(ticket, utc(2026, 3, 3, 14, 0)) == [("resolution", utc(2026, 3, 3, 14, 0))]


def test_without_a_calendar_every_minute_counts():
    assert AROUND_THE_CLOCK.add(utc(2026, 3, 7, 23, 0), 120) == utc(2026, 3, 8, 1, 0)


def test_key_customers_get_the_tighter_targets():
    policy = type("Policy", (), {})()
    policy.targets = [
        {"priority": "high", "customer_kind": None, "first_response_minutes": 60, "resolution_minutes": 480},
        {"priority": "high", "customer_kind": "high_value", "first_response_minutes": 15, "resolution_minutes": 120},
    ]
    assert sla.targets_for(policy, "high", []) == (60, 480)
    assert sla.targets_for(policy, "high", ["high_value", "cost_absorber"]) == (15, 120)
    assert sla.targets_for(policy, "low", []) == (None, None)
    assert sla.targets_for(None, "high", []) == (None, None)
