"""Tickets' rules: after-sales tickets with SLAs, comments and notes, history and cost to serve.

A ticket moves `new → open → pending → solved → closed` by `TRANSITIONS` (a solved ticket
reopens to open; closed is final); any other move is 409 naming the allowed ones. Every
change is a row of its history (field, from, to, who, when). Solving emits
crm.lifecycle.ticket.solved (engage's survey rules may send the CSAT survey).

SLA timers (sla.py) are checked on every change and by the SLA check (`check_overdue`,
every `ticket_sla_check_s`): a passed due time records the breach, emits
crm.lifecycle.ticket.sla_breached and escalates the ticket (crm.lifecycle.ticket.escalated).
A read shows `overdue` at once, before the check has recorded it.

Comments are public (the customer sees them: on an email ticket, or one linked to an engage
conversation, lifecycle asks engage to send it, crm.lifecycle.reply.requested) or internal
notes. The first public comment is the first response. Each comment or note may record the
handling minutes it took: cost to serve is those minutes × `service_cost_per_hour`, emitted
per comment as crm.lifecycle.service_cost.recorded (identify subtracts it in the customer's CLV).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.lifecycle.models import Base, aliases, profiles
from services.lifecycle.tickets import repository, sla
from services.lifecycle.tickets.models import BusinessCalendar, SlaPolicy, Ticket, TicketChange, TicketComment
from services.lifecycle.tickets.schemas import CalendarCreate, CommentCreate, PolicyCreate, TicketCreate, TicketUpdate
from shared.db.database import utcnow
from shared.db.ids import uuid7
from shared.events.contracts import PlaybookEntered, StakeholderCreated
from shared.events.customer_aliases import Merge
from shared.events.envelope import Event
from shared.events.messaging import emit
from shared.http.errors import Conflict, MergedCustomer, NotFound, field_error
from shared.settings import LifecycleSettings, current_settings

TRANSITIONS: dict[str, tuple[str, ...]] = {
    "new": ("open", "pending", "solved", "closed"),
    "open": ("pending", "solved", "closed"),
    "pending": ("open", "solved", "closed"),
    "solved": ("open", "closed"),  # solved → open is the reopen
    "closed": (),
}
# Replies the customer sees go out through engage on these channels (its only transport is email).
REPLY_CHANNELS = ("email",)
SYSTEM = "system"
CENT = Decimal("0.01")

_TICKET_FIELDS = tuple(column.key for column in Ticket.__table__.columns)
_HIDDEN = ("first_response_minutes", "resolution_minutes", "paused_minutes", "paused_since", "next_due_at")


def describe(ticket: Ticket, now: datetime | None = None) -> dict[str, Any]:
    now = now or utcnow()
    out = {column: getattr(ticket, column) for column in _TICKET_FIELDS if column not in _HIDDEN}
    out["overdue"] = ticket.next_due_at is not None and ticket.next_due_at <= now
    return out


def columns(row: Base) -> dict[str, Any]:
    """A comment, a history row, a policy or a calendar as the API shows it: its columns."""
    return {column.key: getattr(row, column.key) for column in row.__table__.columns}


async def _saved(session: AsyncSession, row: Base) -> dict[str, Any]:
    session.add(row)
    await session.flush()
    return columns(row)


def _found(row: Base | None, what: str, row_id: str) -> dict[str, Any]:
    if row is None:
        raise NotFound(f"no {what} with id {row_id}")
    return columns(row)


# --- who may be named -----------------------------------------------------------------------


async def _requester(session: AsyncSession, customer_id: str) -> list[str]:
    """A new ticket's customer's kinds; 409 `customer_merged` for a merged one, 422 for an unknown one."""

    found = await repository.requester(session, customer_id)
    if found is None:
        await aliases.refuse_merged(session, customer_id)
        raise field_error("body.customer_id", f"no customer with id {customer_id}")
    if found["survivor_id"]:
        raise MergedCustomer(customer_id, found["survivor_id"])
    return found["kinds"]


async def _employee(session: AsyncSession, stakeholder_id: str | None, field: str) -> None:
    if stakeholder_id is not None and not await repository.is_employee(session, stakeholder_id):
        raise field_error(field, f"no employee stakeholder with id {stakeholder_id} (network's kind `employee`)")


async def _policy(session: AsyncSession, policy_id: str | None) -> tuple[SlaPolicy | None, sla.Clock]:
    """The policy (the default one when none is named) and its clock."""

    policy, calendar = await repository.policy_and_calendar(session, policy_id)
    if policy is None and policy_id is not None:
        raise field_error("body.sla_policy_id", f"no SLA policy with id {policy_id}")
    return policy, sla.clock_of(calendar)


async def _clock(session: AsyncSession, policy_id: str | None) -> sla.Clock:
    policy = await repository.policy(session, policy_id) if policy_id else None
    calendar = await repository.calendar(session, policy.calendar_id) if policy and policy.calendar_id else None
    return sla.clock_of(calendar)


async def _kinds(session: AsyncSession, customer_id: str) -> list[str]:
    profile = await profiles.get(session, customer_id)
    return list(profile["kinds"]) if profile else []


def _change(ticket: Ticket, field: str, old: Any, new: Any, actor: str | None, at) -> dict[str, Any]:
    return {
        "ticket_id": ticket.id,
        "customer_id": ticket.customer_id,
        "field": field,
        "from_value": None if old is None else str(old),
        "to_value": None if new is None else str(new),
        "actor": actor,
        "at": at,
    }


def _record(session: AsyncSession, ticket: Ticket, field: str, old: Any, new: Any, actor: str | None, at) -> None:
    session.add(TicketChange(**_change(ticket, field, old, new, actor, at)))


# --- tickets ----------------------------------------------------------------------------------


async def open_ticket(
    session: AsyncSession,
    *,
    customer_id: str,
    subject: str | None,
    priority: str,
    channel: str | None = None,
    category: str | None = None,
    assignee_id: str | None = None,
    queue: str | None = None,
    conversation_id: str | None = None,
    playbook_id: str | None = None,
    policy: SlaPolicy | None,
    clock: sla.Clock,
    kinds: list[str],
    actor: str | None,
    now: datetime,
) -> Ticket:
    """A new ticket with its SLA targets, its `created` history row and crm.lifecycle.ticket.created."""

    first_response, resolution = sla.targets_for(policy, priority, kinds)
    ticket = Ticket(
        id=uuid7(),
        customer_id=customer_id,
        subject=subject,
        channel=channel,
        category=category,
        priority=priority,
        status="new",
        assignee_id=assignee_id,
        queue=queue,
        conversation_id=conversation_id,
        playbook_id=playbook_id,
        policy_id=policy.id if policy else None,
        first_response_minutes=first_response,
        resolution_minutes=resolution,
        paused_minutes=0.0,
        handling_minutes=0.0,
        created_at=now,
        updated_at=now,
    )
    sla.refresh(ticket, clock)
    await repository.insert_ticket(session, ticket, _change(ticket, "created", None, "new", actor, now))
    emit(
        session,
        "crm.lifecycle.ticket.created",
        {
            "ticket_id": ticket.id,
            "customer_id": customer_id,
            "channel": channel,
            "category": category,
            "priority": priority,
            "subject": subject,
            "assignee_id": assignee_id,
            "queue": queue,
            "conversation_id": conversation_id,
            "playbook_id": playbook_id,
            "created_at": now,
        },
        subject=customer_id,
    )
    return ticket


async def create_ticket(*, session: AsyncSession, data: TicketCreate, actor: str | None) -> dict[str, Any]:
    kinds = await _requester(session, data.customer_id)
    await _employee(session, data.assignee_id, "body.assignee_id")
    policy, clock = await _policy(session, data.sla_policy_id)
    now = utcnow()
    ticket = await open_ticket(
        session,
        customer_id=data.customer_id,
        subject=data.subject,
        priority=data.priority,
        channel=data.channel,
        category=data.category,
        assignee_id=data.assignee_id,
        queue=data.queue,
        conversation_id=data.conversation_id,
        policy=policy,
        clock=clock,
        kinds=kinds,
        actor=actor,
        now=now,
    )
    return describe(ticket, now)


async def _ticket(session: AsyncSession, ticket_id: str) -> Ticket:
    ticket = await repository.ticket(session, ticket_id)
    if ticket is None:
        raise NotFound(f"no ticket with id {ticket_id}")
    return ticket


async def get_ticket(*, session: AsyncSession, ticket_id: str) -> dict[str, Any]:
    return describe(await _ticket(session, ticket_id))


async def list_tickets(*, session: AsyncSession, after_id: str | None, limit: int, **filters) -> list[dict[str, Any]]:
    now = utcnow()
    return [describe(t, now) for t in await repository.tickets(session, after_id=after_id, limit=limit, **filters)]


async def customer_tickets(*, session: AsyncSession, customer_id: str, after_id: str | None, limit: int):
    rows = await list_tickets(session=session, after_id=after_id, limit=limit, customer_id=customer_id)
    if not rows and (
        await aliases.survivor_of(session, customer_id) or await repository.requester(session, customer_id) is None
    ):
        raise await aliases.not_found_or_merged(session, customer_id)
    return rows


def _breach(session: AsyncSession, ticket: Ticket, now: datetime) -> None:
    """Record each target whose due time passed (at its due time), and escalate the ticket."""

    for target, due in sla.newly_breached(ticket, now):
        setattr(ticket, f"{target}_breached_at", due)
        _record(session, ticket, "sla_breached", None, target, SYSTEM, now)
        emit(
            session,
            "crm.lifecycle.ticket.sla_breached",
            {
                "ticket_id": ticket.id,
                "customer_id": ticket.customer_id,
                "target": target,
                "policy_id": ticket.policy_id,
                "due_at": due,
                "breached_at": due,
            },
            subject=ticket.customer_id,
        )
        if ticket.escalated_at is None:
            ticket.escalated_at = now
        _record(session, ticket, "escalated", None, f"sla_breached:{target}", SYSTEM, now)
        emit(
            session,
            "crm.lifecycle.ticket.escalated",
            {
                "ticket_id": ticket.id,
                "customer_id": ticket.customer_id,
                "reason": f"sla_breached:{target}",
                "escalated_at": now,
            },
            subject=ticket.customer_id,
        )
        ticket.updated_at = now


async def check(session: AsyncSession, ticket: Ticket, now: datetime) -> None:
    """Record the ticket's breaches up to `now` and refresh its next due time."""

    _breach(session, ticket, now)
    sla.refresh(ticket, await _clock(session, ticket.policy_id))


async def check_overdue(session: AsyncSession, *, now: datetime | None = None, limit: int = 500) -> int:
    """The SLA check: every running ticket past a due time gets its breach recorded. How many."""

    now = now or utcnow()
    overdue = await repository.overdue(session, now, limit)
    for ticket in overdue:
        await check(session, ticket, now)
    await session.flush()
    return len(overdue)


async def _move(session: AsyncSession, ticket: Ticket, to: str, clock: sla.Clock, actor: str | None, now) -> None:
    current = ticket.status
    if to == current:
        return
    allowed = TRANSITIONS.get(current, ())
    if to not in allowed:
        may = f"it may move to {', '.join(allowed)}" if allowed else "it moves nowhere: open a new ticket"
        article = "an" if current[0] in "aeiou" else "a"
        raise Conflict(f"{article} {current} ticket cannot move to {to}; {may}", error="invalid_transition")
    if to in sla.RUNNING:
        sla.resume(ticket, clock, now)
    elif to in ("pending", "solved"):
        sla.pause(ticket, now)
    ticket.status = to
    if to == "solved":
        ticket.solved_at = now
    elif to == "open" and current == "solved":
        ticket.solved_at = None  # reopened: the resolution timer runs again from where it paused
    if to == "closed":
        ticket.closed_at = now
    _record(session, ticket, "status", current, to, actor, now)
    emit(
        session,
        "crm.lifecycle.ticket.status_changed",
        {
            "ticket_id": ticket.id,
            "customer_id": ticket.customer_id,
            "from_status": current,
            "to_status": to,
            "changed_at": now,
        },
        subject=ticket.customer_id,
    )
    if to == "solved":
        emit(
            session,
            "crm.lifecycle.ticket.solved",
            {"ticket_id": ticket.id, "customer_id": ticket.customer_id, "channel": ticket.channel, "solved_at": now},
            subject=ticket.customer_id,
        )


async def update_ticket(
    *, session: AsyncSession, ticket_id: str, data: TicketUpdate, actor: str | None
) -> dict[str, Any]:
    ticket = await _ticket(session, ticket_id)
    await aliases.refuse_merged(session, ticket.customer_id)
    sent = data.model_fields_set
    if "assignee_id" in sent:
        await _employee(session, data.assignee_id, "body.assignee_id")
    now = utcnow()
    clock = await _clock(session, ticket.policy_id)
    _breach(session, ticket, now)  # a breach before this change stays a breach
    if data.status is not None:
        await _move(session, ticket, data.status, clock, actor, now)
    for field in ("priority", "assignee_id", "queue", "category", "subject"):
        if field not in sent or (field in ("priority", "subject") and getattr(data, field) is None):
            continue
        old, new = getattr(ticket, field), getattr(data, field)
        if old == new:
            continue
        setattr(ticket, field, new)
        _record(session, ticket, field, old, new, actor, now)
        if field == "priority":
            policy = await repository.policy(session, ticket.policy_id) if ticket.policy_id else None
            targets = sla.targets_for(policy, new, await _kinds(session, ticket.customer_id))
            ticket.first_response_minutes, ticket.resolution_minutes = targets
    ticket.updated_at = now
    sla.refresh(ticket, clock)
    _breach(session, ticket, now)  # a tighter priority may be overdue already
    sla.refresh(ticket, clock)
    await session.flush()
    return describe(ticket, now)


# --- comments and notes -----------------------------------------------------------------------


async def add_comment(
    *, session: AsyncSession, ticket_id: str, data: CommentCreate, actor: str | None
) -> dict[str, Any]:
    ticket = await _ticket(session, ticket_id)
    await aliases.refuse_merged(session, ticket.customer_id)
    await _employee(session, data.author_id, "body.author_id")
    if ticket.status == "closed":
        raise Conflict(f"ticket {ticket_id} is closed: open a new ticket", error="ticket_closed")
    now = utcnow()
    clock = await _clock(session, ticket.policy_id)
    _breach(session, ticket, now)
    comment = TicketComment(
        id=uuid7(),
        ticket_id=ticket.id,
        customer_id=ticket.customer_id,
        public=data.public,
        body=data.body,
        author_id=data.author_id,
        minutes=data.minutes,
        created_at=now,
    )
    _record(session, ticket, "comment" if data.public else "note", None, comment.id, actor, now)
    if data.public and ticket.first_response_at is None:
        ticket.first_response_at = now
        _record(session, ticket, "first_response_at", None, now.isoformat(), actor, now)
    if data.public and (ticket.conversation_id is not None or ticket.channel in REPLY_CHANNELS):
        comment.reply_request_id = uuid7()
        emit(
            session,
            "crm.lifecycle.reply.requested",
            {
                "request_id": comment.reply_request_id,
                "ticket_id": ticket.id,
                "customer_id": ticket.customer_id,
                "conversation_id": ticket.conversation_id,
                "subject": ticket.subject,
                "body": data.body,
                "author_id": data.author_id,
                "requested_at": now,
            },
            subject=ticket.customer_id,
        )
    if data.minutes > 0:
        ticket.handling_minutes += data.minutes
        record_service_cost(session, ticket, cost_id=comment.id, minutes=data.minutes, at=now)
    session.add(comment)
    ticket.updated_at = now
    sla.refresh(ticket, clock)
    await session.flush()
    return columns(comment)


def service_cost(minutes: float) -> tuple[Decimal, str]:
    settings = current_settings(LifecycleSettings)
    amount = (Decimal(str(minutes)) / 60 * settings.service_cost_per_hour).quantize(CENT, ROUND_HALF_UP)
    return amount, settings.service_cost_currency


def record_service_cost(session: AsyncSession, ticket: Ticket, *, cost_id: str, minutes: float, at) -> None:
    amount, currency = service_cost(minutes)
    emit(
        session,
        "crm.lifecycle.service_cost.recorded",
        {
            "cost_id": cost_id,
            "customer_id": ticket.customer_id,
            "ticket_id": ticket.id,
            "minutes": minutes,
            "reporting_amount": amount,
            "reporting_currency": currency,
            "recorded_at": at,
        },
        subject=ticket.customer_id,
    )


async def list_comments(*, session: AsyncSession, ticket_id: str, after_id: str | None, limit: int):
    await _ticket(session, ticket_id)
    return [columns(c) for c in await repository.comments(session, ticket_id, after_id=after_id, limit=limit)]


async def list_history(*, session: AsyncSession, ticket_id: str, after_seq: int | None, limit: int):
    await _ticket(session, ticket_id)
    return [columns(c) for c in await repository.history(session, ticket_id, after_seq=after_seq, limit=limit)]


# --- consumers: employees, outreach, merges ----------------------------------------------------


async def remember_employees(session: AsyncSession, events: Sequence[Event[StakeholderCreated]]) -> None:
    """network's employee stakeholders (other kinds, and kinds this reader does not know, are skipped)."""

    await repository.add_employees(
        session, [{"id": e.data.id, "created_at": e.at} for e in events if e.data.kind == "employee"]
    )


async def open_outreach(session: AsyncSession, event: Event[PlaybookEntered]) -> None:
    """A playbook's outreach ticket for a treatment customer: in its queue, or for the account
    manager it names when lifecycle knows that employee (else the queue alone)."""

    data = event.data
    if data.group != "treatment" or not data.outreach:
        return
    assignee = data.outreach_assignee_id
    if assignee is not None and not await repository.is_employee(session, assignee):
        assignee = None
    stage = f" ({data.stage})" if data.stage else ""
    policy, clock = await _policy(session, None)
    await open_ticket(
        session,
        customer_id=data.customer_id,
        subject=f"Retention outreach{stage}",
        priority="normal",
        channel="outreach",
        category="outreach",
        assignee_id=assignee,
        queue=data.outreach_queue,
        playbook_id=data.playbook_id,
        policy=policy,
        clock=clock,
        kinds=await _kinds(session, data.customer_id),
        actor=f"playbook:{data.playbook_id}",
        now=utcnow(),
    )


async def follow_tickets_merge(session: AsyncSession, merge: Merge) -> None:
    """A merge step: the merged customers' tickets, comments and history become the survivor's."""

    await repository.move_to_survivor(session, merged_ids=list(merge.merged_ids), survivor_id=merge.survivor_id)


# --- SLA policies and calendars --------------------------------------------------------------------


async def create_policy(*, session: AsyncSession, data: PolicyCreate) -> dict[str, Any]:
    if data.calendar_id is not None and await repository.calendar(session, data.calendar_id) is None:
        raise field_error("body.calendar_id", f"no business calendar with id {data.calendar_id}")
    if data.is_default:
        await repository.clear_default(session)
    policy = SlaPolicy(
        id=uuid7(),
        name=data.name,
        calendar_id=data.calendar_id,
        targets=[target.model_dump() for target in data.targets],
        is_default=data.is_default,
        created_at=utcnow(),
    )
    return await _saved(session, policy)


async def replace_policy(*, session: AsyncSession, policy_id: str, data: PolicyCreate) -> dict[str, Any]:
    """PUT: the policy's name, calendar, targets and default flag, all replaced at once.

    Tickets keep the targets they were given (at opening, or at their last priority change);
    the new targets apply to tickets opened, or re-prioritised, from now on. A calendar change
    applies to the time still to run of every running ticket on this policy."""

    policy = await repository.policy(session, policy_id)
    if policy is None:
        raise NotFound(f"no SLA policy with id {policy_id}")
    if data.calendar_id is not None and await repository.calendar(session, data.calendar_id) is None:
        raise field_error("body.calendar_id", f"no business calendar with id {data.calendar_id}")
    if data.is_default and not policy.is_default:
        await repository.clear_default(session)
    policy.name = data.name
    policy.calendar_id = data.calendar_id
    policy.targets = [target.model_dump() for target in data.targets]
    policy.is_default = data.is_default
    return await _saved(session, policy)


async def get_policy(*, session: AsyncSession, policy_id: str) -> dict[str, Any]:
    return _found(await repository.policy(session, policy_id), "SLA policy", policy_id)


async def list_policies(*, session: AsyncSession, after_id: str | None, limit: int):
    return [columns(p) for p in await repository.policies(session, after_id=after_id, limit=limit)]


async def create_calendar(*, session: AsyncSession, data: CalendarCreate) -> dict[str, Any]:
    calendar = BusinessCalendar(
        id=uuid7(),
        name=data.name,
        time_zone=data.time_zone,
        working_days=sorted(set(data.working_days)),
        start_time=data.start_time.strftime("%H:%M"),
        end_time=data.end_time.strftime("%H:%M"),
        holiday_country=data.holiday_country,
        holiday_subdivision=data.holiday_subdivision,
        holidays=sorted({d.isoformat() for d in data.holidays}),
        created_at=utcnow(),
    )
    return await _saved(session, calendar)


async def get_calendar(*, session: AsyncSession, calendar_id: str) -> dict[str, Any]:
    return _found(await repository.calendar(session, calendar_id), "business calendar", calendar_id)


async def list_calendars(*, session: AsyncSession, after_id: str | None, limit: int):
    return [columns(c) for c in await repository.calendars(session, after_id=after_id, limit=limit)]
