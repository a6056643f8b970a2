"""Surveys' rules: sending (by a rule after a touchpoint, or on demand), answering (through the
customer's signed link, or recorded by staff), a customer's feedback, and the report.

Sending: an invitation row with its own signed link (purpose `feedback`, payload the
invitation id only) and an email carrying the link, queued through engage's send queue
as a `service` message (a survey is no marketing: no marketing consent or frequency cap).
A survey is not sent when the customer withdrew `research` consent on email (a customer
who never said anything about research is asked: feedback on a service the customer used
is the business's legitimate interest), nor within the quiet period after the customer's
last invitation (`VALUECHAIN_ENGAGE_SURVEY_QUIET_DAYS`). On demand these are 409
`no_consent` and `quiet_period`; a rule skips the customer.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.engage.consent.models import ConsentState
from services.engage.feedback import repository
from services.engage.feedback.models import ResponseRating, Survey, SurveyInvitation, SurveyResponse
from services.engage.feedback.questions import EMOTIONS, question_errors, read_answers
from services.engage.feedback.schemas import AnswerSurvey, StaffResponse, SurveyCreate, SurveyUpdate
from services.engage.feedback.triggers import TRIGGERS
from services.engage.models import aliases, known_customers, profiles
from services.engage.outbound.queue import queue_email
from shared.db.database import utcnow
from shared.db.ids import uuid7
from shared.events.customer_aliases import Merge
from shared.events.customer_profiles import kinds_of, kinds_text
from shared.events.envelope import Event
from shared.events.messaging import emit
from shared.http.errors import Conflict, InvalidRequest, NotFound, field_error
from shared.settings import EngageSettings, current_settings
from shared.signed_links import BadLink, SignedLinks
from shared.statistics import Summary, mean, net_promoter_score

log = logging.getLogger(__name__)

FEEDBACK = "feedback"
FEEDBACK_PATH = "/v1/feedback/{token}"


def _links() -> SignedLinks:
    return SignedLinks.from_settings(current_settings(EngageSettings))


def feedback_url(invitation_id: str) -> str:
    return _links().link(FEEDBACK, FEEDBACK_PATH, {"i": invitation_id})


# --- surveys -----------------------------------------------------------------------------


async def create_survey(*, session: AsyncSession, data: SurveyCreate) -> Survey:
    questions = [q.model_dump(exclude_none=True) for q in data.questions]
    if errors := question_errors(questions):
        raise InvalidRequest(errors)
    survey = Survey(
        id=uuid7(),
        name=data.name,
        questions=questions,
        triggers=list(dict.fromkeys(data.triggers)),
        active=data.active,
        email_subject=data.email_subject,
        created_at=utcnow(),
    )
    await repository.add(session, survey)
    return survey


async def get_survey(*, session: AsyncSession, survey_id: str) -> Survey:
    survey = await repository.survey(session, survey_id)
    if survey is None:
        raise NotFound(f"no survey with id {survey_id}")
    return survey


async def update_survey(*, session: AsyncSession, survey_id: str, data: SurveyUpdate) -> Survey:
    survey = await get_survey(session=session, survey_id=survey_id)
    if data.active is not None:
        survey.active = data.active
    if data.triggers is not None:
        survey.triggers = list(dict.fromkeys(data.triggers))
    await session.flush()
    return survey


async def list_surveys(*, session: AsyncSession, after: tuple[datetime, str] | None, limit: int) -> list[Survey]:
    return await repository.surveys_page(session, after=after, limit=limit)


# --- sending -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Touchpoint:
    event_id: str
    type: str
    channel: str | None


async def send_on_demand(*, session: AsyncSession, survey_id: str, customer_id: str) -> tuple[SurveyInvitation, str]:
    survey = await get_survey(session=session, survey_id=survey_id)
    await aliases.refuse_merged(session, customer_id)
    if not await known_customers.contains(session, customer_id):
        raise field_error("body.customer_id", f"no customer with id {customer_id}")
    return await invite(session, survey=survey, customer_id=customer_id, touchpoint=None, now=utcnow())


async def invite(
    session: AsyncSession, *, survey: Survey, customer_id: str, touchpoint: Touchpoint | None, now: datetime
) -> tuple[SurveyInvitation, str]:
    """The invitation and its link; 409 `quiet_period`, `no_consent` (research withdrawn on
    email), or the send queue's `no_address` / `undeliverable`. Nothing is written when refused."""

    quiet = timedelta(days=current_settings(EngageSettings).survey_quiet_days)
    last = await repository.latest_invitation_at(session, customer_id)
    if last is not None and last > now - quiet:
        raise Conflict(
            f"customer {customer_id} was invited to a survey at {last.isoformat()}; the next invitation may go "
            f"after {(last + quiet).isoformat()}",
            error="quiet_period",
        )
    research = await session.get(ConsentState, (customer_id, "research", "email"))
    if research is not None and not research.granted:
        raise Conflict(f"customer {customer_id} withdrew research consent on email", error="no_consent")
    invitation_id = uuid7()
    link = feedback_url(invitation_id)
    subject = survey.email_subject or survey.name
    body = (
        f"We would like to hear how it went.\n\nPlease answer a few questions ({survey.name}):\n{link}\n\n"
        "The link is yours alone and takes one answer."
    )
    message = await queue_email(
        session,
        customer_id=customer_id,
        subject=subject,
        body=body,
        purpose="service",
        now=now,
        source_kind="survey",
        source_id=invitation_id,
    )
    invitation = SurveyInvitation(
        id=invitation_id,
        survey_id=survey.id,
        customer_id=customer_id,
        touchpoint_event_id=touchpoint.event_id if touchpoint else None,
        touchpoint_type=touchpoint.type if touchpoint else None,
        channel=touchpoint.channel if touchpoint else None,
        message_id=message.id,
        created_at=now,
    )
    await repository.add(session, invitation)
    return invitation, link


async def on_touchpoints(*, session: AsyncSession, events: list[Event[Any]]) -> None:
    """The survey rules: after each touchpoint event, the active surveys naming its type are
    sent to its customer, unless refused (quiet period, research withdrawn, no address):
    then the customer is skipped, never dead-lettered. Too old a touchpoint (an import of
    history) sends nothing."""

    settings = current_settings(EngageSettings)
    now = utcnow()
    oldest = now - timedelta(days=settings.survey_touchpoint_max_age_days)
    rules = await repository.active_surveys_after(session, {event.type for event in events})
    for event in events:
        trigger = TRIGGERS.get(event.type)
        if trigger is None or event.at < oldest or not trigger.applies(event.data):
            continue
        customer_id = trigger.customer(event.data)
        touchpoint = Touchpoint(event.id, event.type, trigger.channel(event.data))
        for survey in rules.get(event.type, []):
            try:
                await invite(session, survey=survey, customer_id=customer_id, touchpoint=touchpoint, now=now)
            except Conflict as refused:
                log.info("survey not sent", extra={"survey_id": survey.id, "reason": refused.error})


# --- answering ---------------------------------------------------------------------------


def _read_token(token: str) -> str:
    payload = _links().verify(FEEDBACK, token)
    invitation_id = payload.get("i")
    if not isinstance(invitation_id, str):
        raise BadLink("the link is not valid (tampered with, or not made for this)")
    return invitation_id


async def _invitation_of(session: AsyncSession, token: str) -> SurveyInvitation:
    invitation = await repository.invitation(session, _read_token(token))
    if invitation is None:  # a good signature, but its customer was erased or it never committed
        raise BadLink("the link is no longer valid")
    return invitation


async def form(*, session: AsyncSession, token: str) -> dict[str, Any]:
    invitation = await _invitation_of(session, token)
    survey = await get_survey(session=session, survey_id=invitation.survey_id)
    return {
        "survey_id": survey.id,
        "name": survey.name,
        "questions": survey.questions,
        "emotions": list(EMOTIONS),
        "answered": await repository.answered(session, invitation.id),
    }


async def answer_link(*, session: AsyncSession, token: str, data: AnswerSurvey) -> dict[str, Any]:
    """One answer per link: a second is 409 `already_answered` (the unique invitation id
    holds it when two arrive at once)."""

    invitation = await _invitation_of(session, token)
    if await repository.answered(session, invitation.id):
        raise Conflict("this link was answered already; it takes one answer", error="already_answered")
    survey = await get_survey(session=session, survey_id=invitation.survey_id)
    touchpoint = (
        Touchpoint(invitation.touchpoint_event_id, invitation.touchpoint_type or "", invitation.channel)
        if invitation.touchpoint_event_id
        else None
    )
    # A customer merged since the invitation answers as the survivor.
    customer_id = await aliases.survivor_of(session, invitation.customer_id) or invitation.customer_id
    response = await _record(
        session,
        survey=survey,
        customer_id=customer_id,
        answers=data.answers,
        source="link",
        invitation=invitation,
        touchpoint=touchpoint,
        channel=invitation.channel,
    )
    invitation.answered_at = response["received_at"]
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict("this link was answered already; it takes one answer", error="already_answered") from None
    return response


async def record_staff(*, session: AsyncSession, survey_id: str, data: StaffResponse) -> dict[str, Any]:
    survey = await get_survey(session=session, survey_id=survey_id)
    await aliases.refuse_merged(session, data.customer_id)
    if not await known_customers.contains(session, data.customer_id):
        raise field_error("body.customer_id", f"no customer with id {data.customer_id}")
    touchpoint = (
        Touchpoint(data.touchpoint_event_id, data.touchpoint_type or "", data.channel)
        if data.touchpoint_event_id
        else None
    )
    return await _record(
        session,
        survey=survey,
        customer_id=data.customer_id,
        answers=data.answers,
        source="staff",
        invitation=None,
        touchpoint=touchpoint,
        channel=data.channel,
    )


async def _record(
    session: AsyncSession,
    *,
    survey: Survey,
    customer_id: str,
    answers: dict[str, Any],
    source: str,
    invitation: SurveyInvitation | None,
    touchpoint: Touchpoint | None,
    channel: str | None,
) -> dict[str, Any]:
    values, errors = read_answers(survey.questions, answers)
    if errors:
        raise InvalidRequest(errors)
    profile = await profiles.get(session, customer_id) or {}
    kinds = profile.get("kinds") or []
    now = utcnow()
    texts = values["texts"]
    response = SurveyResponse(
        id=uuid7(),
        survey_id=survey.id,
        invitation_id=invitation.id if invitation else None,
        customer_id=customer_id,
        source=source,
        touchpoint_event_id=touchpoint.event_id if touchpoint else None,
        touchpoint_type=(touchpoint.type or None) if touchpoint else None,
        channel=channel,
        stage=profile.get("stage"),
        segment=profile.get("segment"),
        kinds=kinds_text(kinds),
        nps=values.get("nps"),
        csat=values.get("csat"),
        ces=values.get("ces"),
        effort=values.get("effort"),
        emotion=values.get("emotion"),
        texts=json.dumps(texts, ensure_ascii=False) if texts else None,
        received_at=now,
        month=now.strftime("%Y-%m"),
    )
    try:
        await repository.add_response(session, response, values["ratings"], list(kinds) or [None])
    except IntegrityError:
        raise Conflict("this link was answered already; it takes one answer", error="already_answered") from None
    out = present(response, [ResponseRating(attribute=a, subject=s, score=n) for a, s, n in values["ratings"]])
    emit(
        session,
        "crm.engage.feedback.received",
        {
            "response_id": response.id,
            "survey_id": survey.id,
            "customer_id": customer_id,
            "touchpoint_event_id": response.touchpoint_event_id,
            "touchpoint_type": response.touchpoint_type,
            "channel": response.channel,
            "stage": response.stage,
            "segment": response.segment,
            "nps": response.nps,
            "csat": response.csat,
            "ces": response.ces,
            "ratings": out["ratings"],
            "effort": response.effort,
            "emotion": response.emotion,
            "comment": "\n\n".join(texts.values()) or None,
            "received_at": now,
        },
        subject=customer_id,
    )
    return out


def present(response: SurveyResponse, ratings: list[ResponseRating]) -> dict[str, Any]:
    return {
        "id": response.id,
        "survey_id": response.survey_id,
        "customer_id": response.customer_id,
        "source": response.source,
        "touchpoint_event_id": response.touchpoint_event_id,
        "touchpoint_type": response.touchpoint_type,
        "channel": response.channel,
        "stage": response.stage,
        "segment": response.segment,
        "kinds": kinds_of(response.kinds),
        "nps": response.nps,
        "csat": response.csat,
        "ces": response.ces,
        "effort": response.effort,
        "emotion": response.emotion,
        "texts": json.loads(response.texts) if response.texts else None,
        "ratings": [{"attribute": r.attribute, "subject": r.subject, "score": r.score} for r in ratings],
        "received_at": response.received_at,
    }


# --- reading -----------------------------------------------------------------------------


async def _presented(session: AsyncSession, rows: list[SurveyResponse]) -> list[dict[str, Any]]:
    ratings = await repository.ratings_of(session, [r.id for r in rows])
    return [present(row, ratings.get(row.id, [])) for row in rows]


async def customer_feedback(
    *, session: AsyncSession, customer_id: str, before: tuple[datetime, str] | None, limit: int
) -> list[dict[str, Any]]:
    rows = await repository.responses_page(session, customer_id=customer_id, before=before, limit=limit)
    if not rows and (
        await aliases.survivor_of(session, customer_id) or not await known_customers.contains(session, customer_id)
    ):
        raise await aliases.not_found_or_merged(session, customer_id)
    return await _presented(session, rows)


async def survey_responses(
    *, session: AsyncSession, survey_id: str, before: tuple[datetime, str] | None, limit: int
) -> list[dict[str, Any]]:
    await get_survey(session=session, survey_id=survey_id)
    rows = await repository.responses_page(session, survey_id=survey_id, before=before, limit=limit)
    return await _presented(session, rows)


async def follow_merge(session: AsyncSession, merge: Merge) -> None:
    """A merge step: the merged customers' responses and invitations are the survivor's
    (their quiet period too)."""

    await repository.move_to_survivor(session, merged_ids=list(merge.merged_ids), survivor_id=merge.survivor_id)


# --- the report --------------------------------------------------------------------------


async def report(
    *,
    session: AsyncSession,
    metric: str,
    by: str | None,
    start: datetime | None,
    end: datetime | None,
    segment: str | None = None,
) -> list[dict[str, Any]]:
    """Per group: the score, its 95% interval and the response count (docs/engage.md); only
    the responses of customers in `segment` when it is given."""

    cells = []
    rows = await repository.report_rows(session, metric=metric, by=by, start=start, end=end, segment=segment)
    for row in rows:
        key = row.key if by else None
        if metric == "nps":
            estimate = net_promoter_score(row.promoters, row.passives, row.detractors)
            extra = {"promoters": row.promoters, "passives": row.passives, "detractors": row.detractors}
        else:
            estimate = mean(Summary.from_sums(int(row.n), float(row.total or 0), float(row.squares or 0)))
            extra = {}
        if estimate.n == 0 and by:
            continue
        cells.append(
            {"key": key, "score": estimate.value, "low": estimate.low, "high": estimate.high, "responses": estimate.n}
            | extra
        )
    return cells
