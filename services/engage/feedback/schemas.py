"""Surveys', invitations', answers' and the report's bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, StrictBool

from services.engage.feedback.questions import TYPES
from services.engage.feedback.triggers import TRIGGERS
from shared.events.contracts import RFM_SEGMENTS
from shared.http.pagination import Page
from shared.http.validation import NOT_BLANK_SCHEMA, Id, Strict, Text, stripped

QuestionType = Literal["nps", "csat", "ces", "effort", "emotion", "text", "attribute_rating"]
assert set(TYPES) == set(QuestionType.__args__)  # type: ignore[attr-defined]

Label = Annotated[str, Field(min_length=1, max_length=100, **NOT_BLANK_SCHEMA), AfterValidator(stripped)]
QuestionId = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")]


# The touchpoints a rule may name: triggers.TRIGGERS' keys (anything else is 422 naming it).
Touchpoint = Literal[
    "crm.identify.transaction.recorded", "crm.engage.conversation.closed", "crm.lifecycle.ticket.solved"
]
assert set(TRIGGERS) == set(Touchpoint.__args__)  # type: ignore[attr-defined]


class Question(Strict):
    id: QuestionId
    type: QuestionType
    text: Annotated[str, Field(min_length=1, max_length=500, **NOT_BLANK_SCHEMA), AfterValidator(stripped)]
    required: StrictBool = False
    # attribute_rating only: what is rated (quality, service, price, image, ...) and who
    # (`us` and competitors' names): value owns both lists.
    attributes: Annotated[list[Label], Field(min_length=1, max_length=20)] | None = None
    subjects: Annotated[list[Label], Field(min_length=1, max_length=20)] | None = None


class SurveyCreate(Strict):
    name: Annotated[str, Field(min_length=1, max_length=200, **NOT_BLANK_SCHEMA), AfterValidator(stripped)]
    questions: Annotated[list[Question], Field(min_length=1, max_length=50)]
    triggers: Annotated[
        list[Touchpoint], Field(max_length=len(TRIGGERS), description="Event types after which it is sent")
    ] = Field(default_factory=list)
    active: StrictBool = True
    email_subject: Text = None


class SurveyUpdate(Strict):
    active: StrictBool | None = None
    triggers: Annotated[list[Touchpoint], Field(max_length=len(TRIGGERS))] | None = None


class SurveyOut(BaseModel):
    id: str
    name: str
    questions: list[dict[str, Any]]
    triggers: list[str]
    active: bool
    email_subject: str | None
    created_at: datetime


class SurveyPage(Page[SurveyOut]):
    pass


class SendSurvey(Strict):
    customer_id: Id


class InvitationOut(BaseModel):
    id: str
    survey_id: str
    customer_id: str
    touchpoint_event_id: str | None
    touchpoint_type: str | None
    channel: str | None
    message_id: str | None
    created_at: datetime
    # The customer's signed link (also in the invitation email).
    link: str


Answers = Annotated[
    dict[QuestionId, Any],
    Field(
        description="By question id: a number (nps, csat, ces, effort), one of the emotions, a text, or "
        "for attribute_rating a list of {attribute, subject, score}"
    ),
]


class AnswerSurvey(Strict):
    answers: Answers


class Answered(BaseModel):
    """What the customer's link answers: nothing about the customer."""

    response_id: str
    received_at: datetime


class StaffResponse(Strict):
    customer_id: Id
    answers: Answers
    # The touchpoint it follows, when staff know it (a call after a visit).
    touchpoint_event_id: Annotated[str, Field(max_length=36)] | None = None
    touchpoint_type: Annotated[str, Field(max_length=200)] | None = None
    channel: Literal["email", "sms", "chat", "phone", "social", "in_person"] | None = None


class Rating(BaseModel):
    attribute: str
    subject: str
    score: int


class ResponseOut(BaseModel):
    id: str
    survey_id: str
    customer_id: str
    source: Literal["link", "staff"]
    touchpoint_event_id: str | None
    touchpoint_type: str | None
    channel: str | None
    stage: str | None
    segment: str | None
    kinds: list[str]
    nps: int | None
    csat: int | None
    ces: int | None
    effort: int | None
    emotion: str | None
    texts: dict[str, str] | None = Field(description="The free-text answers by question id (null once erased)")
    ratings: list[Rating]
    received_at: datetime


class ResponsePage(Page[ResponseOut]):
    pass


class SurveyForm(BaseModel):
    """What a customer's link shows: the questions to answer."""

    survey_id: str
    name: str
    questions: list[dict[str, Any]]
    emotions: list[str]
    answered: bool


Metric = Literal["nps", "csat", "ces"]
GroupBy = Literal["segment", "kind", "stage", "channel", "month"]
# identify's RFM segments (the report's `segment` filter; another name is 422).
Segment = Literal[RFM_SEGMENTS]  # type: ignore[valid-type]


class ReportCell(BaseModel):
    key: str | None = Field(description="The group (a segment, kind, stage, channel or YYYY-MM); null: none known")
    score: float | None = Field(description="NPS (-100 to 100), or the mean CSAT (1-5) or CES (1-7)")
    low: float | None = Field(description="The 95% interval's lower bound (null with too few responses)")
    high: float | None
    responses: int
    promoters: int | None = None
    passives: int | None = None
    detractors: int | None = None


class Report(BaseModel):
    metric: Metric
    by: GroupBy | None
    segment: str | None = Field(None, description="The segment the responses were limited to, if any")
    from_: datetime | None = Field(alias="from")
    to: datetime | None
    cells: list[ReportCell]
