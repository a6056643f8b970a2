"""SLA timers of one ticket, in business time.

A ticket's targets (business minutes to the first response and to resolution) are fixed from
its policy when it opens or its priority changes: the policy's target for the priority, or a
tighter one for a kind of strategically significant customer the customer is (identify's kinds,
in lifecycle's customer profiles). The timers run while the ticket is `new` or `open` and
pause while it is `pending` (waiting on the customer) or `solved`; the business minutes of a
pause are added to the targets when it ends, so

    due = calendar.add(created_at, target + paused_minutes)

is the instant the ticket has spent `target` business minutes running. A target is breached
when its due time passes before the first response (or the solve) came.
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any, Protocol

from services.lifecycle.tickets.calendar import AROUND_THE_CLOCK, BusinessHours
from services.lifecycle.tickets.models import BusinessCalendar, SlaPolicy, Ticket

RUNNING = ("new", "open")
TARGETS = ("first_response", "resolution")


class Clock(Protocol):
    def add(self, start: datetime, minutes: float) -> datetime: ...

    def minutes_between(self, start: datetime, end: datetime) -> float: ...


def clock_of(calendar: BusinessCalendar | None) -> Clock:
    if calendar is None:
        return AROUND_THE_CLOCK
    return BusinessHours(
        time_zone=calendar.time_zone,
        working_days=frozenset(calendar.working_days),
        start=time.fromisoformat(calendar.start_time),
        end=time.fromisoformat(calendar.end_time),
        country=calendar.holiday_country,
        subdivision=calendar.holiday_subdivision,
        holidays=frozenset(date.fromisoformat(d) for d in calendar.holidays),
    )


def targets_for(policy: SlaPolicy | None, priority: str, kinds: list[str]) -> tuple[float | None, float | None]:
    """(first response, resolution) minutes: the tightest of the targets for the customer's kinds,
    else the one for every customer; (None, None) without a policy."""

    if policy is None:
        return None, None
    rows: list[dict[str, Any]] = [t for t in policy.targets if t["priority"] == priority]
    special = [t for t in rows if t.get("customer_kind") in kinds]
    chosen = special or [t for t in rows if t.get("customer_kind") is None]
    if not chosen:
        return None, None
    return (
        min(float(t["first_response_minutes"]) for t in chosen),
        min(float(t["resolution_minutes"]) for t in chosen),
    )


def due_of(ticket: Ticket, target: str, clock: Clock) -> datetime | None:
    """When `target` falls due while the timers run; None when met, paused, or not set."""

    if ticket.status not in RUNNING or ticket.paused_since is not None:
        return None
    if target == "first_response":
        minutes, met = ticket.first_response_minutes, ticket.first_response_at
    else:
        minutes, met = ticket.resolution_minutes, ticket.solved_at
    if minutes is None or met is not None:
        return None
    return clock.add(ticket.created_at, minutes + ticket.paused_minutes)


def refresh(ticket: Ticket, clock: Clock) -> None:
    """Recompute the due times (and the breach check's `next_due_at`) after any change."""

    ticket.first_response_due_at = due_of(ticket, "first_response", clock)
    ticket.resolution_due_at = due_of(ticket, "resolution", clock)
    pending = [
        due
        for due, breached in (
            (ticket.first_response_due_at, ticket.first_response_breached_at),
            (ticket.resolution_due_at, ticket.resolution_breached_at),
        )
        if due is not None and breached is None
    ]
    ticket.next_due_at = min(pending) if pending else None


def pause(ticket: Ticket, now: datetime) -> None:
    if ticket.paused_since is None:
        ticket.paused_since = now


def resume(ticket: Ticket, clock: Clock, now: datetime) -> None:
    if ticket.paused_since is not None:
        ticket.paused_minutes += clock.minutes_between(ticket.paused_since, now)
        ticket.paused_since = None


def newly_breached(ticket: Ticket, now: datetime) -> list[tuple[str, datetime]]:
    """The targets whose due time has passed by `now` and whose breach is not yet recorded."""

    found = []
    for target, due, breached in (
        ("first_response", ticket.first_response_due_at, ticket.first_response_breached_at),
        ("resolution", ticket.resolution_due_at, ticket.resolution_breached_at),
    ):
        if due is not None and breached is None and due <= now:
            found.append((target, due))
    return found
