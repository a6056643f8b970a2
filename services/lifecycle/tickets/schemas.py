"""Request and response bodies of tickets, comments, history, SLA policies and business calendars."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, field_validator, model_validator

from services.lifecycle.tickets.calendar import supported_countries
from shared.events.contracts import TicketPriority, TicketStatus
from shared.http.pagination import Page
from shared.http.validation import NOT_BLANK_SCHEMA, NOT_BLANK_TEXT_SCHEMA, Id, Strict, stripped, stripped_text

PRIORITIES: tuple[str, ...] = ("low", "normal", "high", "urgent")

Subject = Annotated[str, Field(min_length=1, max_length=300, **NOT_BLANK_SCHEMA), AfterValidator(stripped)]
CommentBody = Annotated[
    str, Field(min_length=1, max_length=10000, **NOT_BLANK_TEXT_SCHEMA), AfterValidator(stripped_text)
]
Name = Annotated[str, Field(min_length=1, max_length=200, **NOT_BLANK_SCHEMA), AfterValidator(stripped)]
EmployeeId = Annotated[
    Id | None, Field(max_length=36, description="An employee stakeholder from network (POST /v1/stakeholders)")
]
Label = Annotated[str | None, Field(max_length=100, **NOT_BLANK_SCHEMA), AfterValidator(stripped)]
Channel = Annotated[
    str | None,
    Field(
        max_length=20,
        pattern=r"^[a-z_]+$",
        description="email, phone, chat, web, in_person, ... (email replies go out)",
    ),
]


class TicketCreate(Strict):
    customer_id: Annotated[Id, Field(min_length=1, max_length=36)]
    subject: Subject
    channel: Channel = None
    category: Label = None
    priority: TicketPriority = "normal"
    assignee_id: EmployeeId = None
    queue: Label = None
    conversation_id: Annotated[
        Id | None, Field(max_length=36, description="engage's conversation the replies go to (GET /v1/conversations)")
    ] = None
    sla_policy_id: Annotated[
        Id | None, Field(max_length=36, description="The SLA policy; the default policy when left out")
    ] = None


class TicketUpdate(Strict):
    """Only the fields sent change; `assignee_id: null` unassigns."""

    status: TicketStatus | None = None
    priority: TicketPriority | None = None
    assignee_id: EmployeeId = None
    queue: Label = None
    category: Label = None
    subject: Subject | None = None


class TicketOut(BaseModel):
    id: str
    customer_id: str
    subject: str | None
    channel: str | None
    category: str | None
    priority: str
    status: str
    assignee_id: str | None
    queue: str | None
    conversation_id: str | None
    playbook_id: str | None
    policy_id: str | None
    first_response_due_at: datetime | None = Field(description="None once answered, while paused, or without an SLA")
    resolution_due_at: datetime | None = Field(description="None once solved, while paused, or without an SLA")
    first_response_breached_at: datetime | None
    resolution_breached_at: datetime | None
    # True as soon as a running timer is past due, even before the SLA check has recorded the breach.
    overdue: bool
    escalated_at: datetime | None
    first_response_at: datetime | None
    solved_at: datetime | None
    closed_at: datetime | None
    handling_minutes: float
    created_at: datetime
    updated_at: datetime


class TicketPage(Page[TicketOut]):
    pass


class CommentCreate(Strict):
    body: CommentBody
    public: Annotated[
        bool,
        Field(description="A reply the customer sees (sent through engage on email tickets); false: an internal note"),
    ] = True
    author_id: EmployeeId = None
    minutes: Annotated[float, Field(ge=0, le=1440, description="Handling time it took (cost to serve)")] = 0


class CommentOut(BaseModel):
    id: str
    ticket_id: str
    customer_id: str
    public: bool
    body: str | None
    author_id: str | None
    minutes: float
    reply_request_id: str | None
    created_at: datetime


class CommentPage(Page[CommentOut]):
    pass


class ChangeOut(BaseModel):
    seq: int
    ticket_id: str
    field: str
    from_value: str | None
    to_value: str | None
    actor: str | None
    at: datetime


class ChangePage(Page[ChangeOut]):
    pass


# --- business calendars -----------------------------------------------------------------


def _zone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"not a time zone (an IANA name such as Europe/Berlin): {value}") from None
    return value


class CalendarCreate(Strict):
    name: Name
    time_zone: Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_zone)]
    working_days: Annotated[
        list[Annotated[int, Field(ge=0, le=6)]],
        Field(min_length=1, max_length=7, description="0 = Monday … 6 = Sunday"),
    ] = Field(default_factory=lambda: [0, 1, 2, 3, 4])
    start_time: Annotated[time, Field(description="Local wall-clock time the working day starts")] = time(9)
    end_time: Annotated[time, Field(description="Local wall-clock time it ends (after start_time)")] = time(17)
    holiday_country: Annotated[
        str | None, Field(min_length=2, max_length=2, description="ISO 3166 alpha-2: its public holidays count")
    ] = None
    holiday_subdivision: Annotated[str | None, Field(min_length=1, max_length=10)] = None
    holidays: Annotated[list[date], Field(max_length=1000, description="Dates of its own")] = Field(
        default_factory=list
    )

    @field_validator("start_time", "end_time")
    @classmethod
    def _minutes(cls, value: time) -> time:
        if value.tzinfo is not None or value.second or value.microsecond:
            raise ValueError("a local time of day in whole minutes (HH:MM), without a zone")
        return value

    @model_validator(mode="after")
    def _checked(self) -> CalendarCreate:
        if self.end_time <= self.start_time:
            raise ValueError("end_time must be after start_time")
        if self.holiday_country is not None:
            countries = supported_countries()
            if self.holiday_country not in countries:
                raise ValueError(f"holiday_country: no public holidays known for {self.holiday_country}")
            if self.holiday_subdivision is not None and self.holiday_subdivision not in countries[self.holiday_country]:
                raise ValueError(f"holiday_subdivision: {self.holiday_country} has no {self.holiday_subdivision}")
        elif self.holiday_subdivision is not None:
            raise ValueError("holiday_subdivision needs holiday_country")
        return self


class CalendarOut(BaseModel):
    id: str
    name: str
    time_zone: str
    working_days: list[int]
    start_time: str
    end_time: str
    holiday_country: str | None
    holiday_subdivision: str | None
    holidays: list[str]
    created_at: datetime


class CalendarPage(Page[CalendarOut]):
    pass


# --- SLA policies ---------------------------------------------------------------------------


class Target(Strict):
    priority: TicketPriority
    customer_kind: Annotated[
        str | None,
        Field(
            max_length=40,
            description="A kind of strategically significant customer (identify's kinds, e.g. high_value): tighter "
            "targets for them; none: every customer",
        ),
    ] = None
    first_response_minutes: Annotated[float, Field(gt=0, le=525600, description="Business minutes")]
    resolution_minutes: Annotated[float, Field(gt=0, le=525600, description="Business minutes")]


class PolicyCreate(Strict):
    name: Name
    calendar_id: Annotated[
        Id | None, Field(max_length=36, description="A business calendar; none: round the clock")
    ] = None
    targets: Annotated[list[Target], Field(min_length=1, max_length=100)]
    is_default: Annotated[bool, Field(description="The policy of tickets that name none (replaces the default)")] = (
        False
    )

    @model_validator(mode="after")
    def _every_priority(self) -> PolicyCreate:
        everyone = {t.priority for t in self.targets if t.customer_kind is None}
        missing = [p for p in PRIORITIES if p not in everyone]
        if missing:
            raise ValueError(f"targets: no target for every customer at priority {', '.join(missing)}")
        seen: set[tuple[str, str | None]] = set()
        for target in self.targets:
            key = (target.priority, target.customer_kind)
            if key in seen:
                raise ValueError(f"targets: two targets for priority {key[0]} and kind {key[1] or 'every customer'}")
            seen.add(key)
        return self


class TargetOut(BaseModel):
    priority: str
    customer_kind: str | None
    first_response_minutes: float
    resolution_minutes: float


class PolicyOut(BaseModel):
    id: str
    name: str
    calendar_id: str | None
    targets: list[TargetOut]
    is_default: bool
    created_at: datetime


class PolicyPage(Page[PolicyOut]):
    pass
