"""Every query of surveys, invitations, responses and the report."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, case, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.engage.feedback.models import ResponseKind, ResponseRating, Survey, SurveyInvitation, SurveyResponse


async def add(session: AsyncSession, *rows: Any) -> None:
    session.add_all(rows)
    await session.flush()


async def survey(session: AsyncSession, survey_id: str) -> Survey | None:
    return await session.get(Survey, survey_id)


async def surveys_page(session: AsyncSession, *, after: tuple[datetime, str] | None, limit: int) -> list[Survey]:
    query = select(Survey).order_by(Survey.created_at, Survey.id).limit(limit)
    if after is not None:
        query = query.where((Survey.created_at > after[0]) | ((Survey.created_at == after[0]) & (Survey.id > after[1])))
    return list((await session.execute(query)).scalars())


# Built once: read for every micro-batch of the events surveys may follow.
_ACTIVE_SURVEYS = select(Survey).where(Survey.active.is_(True)).order_by(Survey.id)


async def active_surveys_after(session: AsyncSession, event_types: set[str]) -> dict[str, list[Survey]]:
    """The active surveys whose rules name one of `event_types`, by type (surveys are few)."""

    found: dict[str, list[Survey]] = {}
    for row in (await session.execute(_ACTIVE_SURVEYS)).scalars():
        for event_type in row.triggers:
            if event_type in event_types:
                found.setdefault(event_type, []).append(row)
    return found


async def latest_invitation_at(session: AsyncSession, customer_id: str) -> datetime | None:
    query = select(func.max(SurveyInvitation.created_at)).where(SurveyInvitation.customer_id == customer_id)
    return await session.scalar(query)


async def invitation(session: AsyncSession, invitation_id: str) -> SurveyInvitation | None:
    return await session.get(SurveyInvitation, invitation_id)


async def answered(session: AsyncSession, invitation_id: str) -> bool:
    query = select(SurveyResponse.id).where(SurveyResponse.invitation_id == invitation_id)
    return (await session.scalar(query)) is not None


async def add_response(
    session: AsyncSession, response: SurveyResponse, ratings: list[tuple[str, str, int]], kinds: list[str | None]
) -> None:
    session.add(response)
    await session.flush()  # the unique invitation id is checked here
    if ratings:
        await session.execute(
            insert(ResponseRating),
            [{"response_id": response.id, "attribute": a, "subject": s, "score": n} for a, s, n in ratings],
        )
    scores = {"nps": response.nps, "csat": response.csat, "ces": response.ces}
    if any(v is not None for v in scores.values()):
        await session.execute(
            insert(ResponseKind),
            [
                {"response_id": response.id, "kind": kind, "received_at": response.received_at, **scores}
                for kind in kinds
            ],
        )


async def ratings_of(session: AsyncSession, response_ids: list[str]) -> dict[str, list[ResponseRating]]:
    if not response_ids:
        return {}
    query = (
        select(ResponseRating)
        .where(ResponseRating.response_id.in_(response_ids))
        .order_by(ResponseRating.response_id, ResponseRating.attribute, ResponseRating.subject)
    )
    found: dict[str, list[ResponseRating]] = {}
    for rating in (await session.execute(query)).scalars():
        found.setdefault(rating.response_id, []).append(rating)
    return found


async def responses_page(
    session: AsyncSession,
    *,
    customer_id: str | None = None,
    survey_id: str | None = None,
    before: tuple[datetime, str] | None,
    limit: int,
) -> list[SurveyResponse]:
    """Newest first."""

    r = SurveyResponse
    query = select(r).order_by(r.received_at.desc(), r.id.desc()).limit(limit)
    if customer_id is not None:
        query = query.where(r.customer_id == customer_id)
    if survey_id is not None:
        query = query.where(r.survey_id == survey_id)
    if before is not None:
        query = query.where((r.received_at < before[0]) | ((r.received_at == before[0]) & (r.id < before[1])))
    return list((await session.execute(query)).scalars())


async def move_to_survivor(session: AsyncSession, *, merged_ids: list[str], survivor_id: str) -> None:
    for table in (SurveyResponse, SurveyInvitation):
        await session.execute(update(table).where(table.customer_id.in_(merged_ids)).values(customer_id=survivor_id))


# --- the report ----------------------------------------------------------------------


async def report_rows(
    session: AsyncSession,
    *,
    metric: str,
    by: str | None,
    start: datetime | None,
    end: datetime | None,
    segment: str | None = None,
) -> list[Row[Any]]:
    """One grouped pass: per group, the NPS classes' counts, or n, Σx and Σx² of the metric.

    `by="kind"` reads `survey_response_kinds` (a response once per kind of its customer);
    anything else reads `survey_responses`, whose columns are the groups (`month` is stored).
    `segment` keeps the responses of customers in that segment when they answered (by kind:
    through the response's row, the kinds table has no segment).
    """

    table: type[ResponseKind] | type[SurveyResponse] = ResponseKind if by == "kind" else SurveyResponse
    value = getattr(table, metric)
    key = getattr(table, by) if by else None
    columns: list[Any] = [key.label("key")] if key is not None else []
    if metric == "nps":
        columns += [
            func.count(case((value >= 9, 1))).label("promoters"),
            func.count(case((value.between(7, 8), 1))).label("passives"),
            func.count(case((value <= 6, 1))).label("detractors"),
        ]
    else:
        columns += [
            func.count(value).label("n"),
            func.sum(value).label("total"),
            func.sum(value * value).label("squares"),
        ]
    query = select(*columns).where(value.is_not(None))
    if segment is not None:
        if table is ResponseKind:
            query = query.join(SurveyResponse, SurveyResponse.id == ResponseKind.response_id)
        query = query.where(SurveyResponse.segment == segment)
    if start is not None:
        query = query.where(table.received_at >= start)
    if end is not None:
        query = query.where(table.received_at < end)
    if key is not None:
        query = query.group_by(key).order_by(key)
    return list((await session.execute(query)).all())
