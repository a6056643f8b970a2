"""The value map's HTTP API: attributes, competitors, ratings and the map."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from services.value.perceived import service
from services.value.perceived.schemas import (
    AttributeCreate,
    AttributeOut,
    AttributePage,
    AttributeUpdate,
    CompetitorCreate,
    CompetitorOut,
    CompetitorPage,
    CompetitorUpdate,
    RatingBatch,
    RatingBatchOut,
    RatingPage,
    ValueMapOut,
)
from shared.events.customer_profiles import RFM_SEGMENTS
from shared.http.deps import ReadSession, WriteSession
from shared.http.pagination import PagingById

router = APIRouter(prefix="/v1", tags=["value map"])


def _by_id(row) -> tuple[str]:
    return (row["id"],)


@router.get("/value-map", response_model=ValueMapOut)
async def get_value_map(
    session: ReadSession,
    segment: Annotated[
        str | None,
        Query(
            description="Only ratings given by customers in this RFM segment (their segment when they rated)",
            json_schema_extra={"enum": list(RFM_SEGMENTS)},
        ),
    ] = None,
    from_: Annotated[date | None, Query(alias="from", description="First day (UTC), included")] = None,
    to: Annotated[date | None, Query(description="Last day (UTC), included")] = None,
):
    """Gale's value map for us and each competitor: perceived quality, price and worth, the
    customer value added ratio, the fair-value line and the trend by month, each with the
    number of ratings behind it (docs/value.md gives the formulas)."""
    return await service.the_value_map(session, segment=segment, since=from_, until=to)


# --- attributes ----------------------------------------------------------------------------


@router.get("/value-map/attributes", response_model=AttributePage)
async def list_attributes(session: ReadSession, page: PagingById):
    """The attributes customers judge, oldest first."""
    rows = await service.listed(session, service.ATTRIBUTES, after_id=page.after_value, limit=page.fetch)
    return page.of(rows, _by_id)


@router.post("/value-map/attributes", status_code=status.HTTP_201_CREATED, response_model=AttributeOut)
async def create_attribute(body: AttributeCreate, session: WriteSession):
    """Add an attribute; a name taken (case-insensitive) or a second price attribute is 409."""
    return await service.create_attribute(session, data=body)


@router.get("/value-map/attributes/{attribute_id}", response_model=AttributeOut)
async def get_attribute(attribute_id: str, session: ReadSession):
    """One attribute."""
    return await service.get(session, service.ATTRIBUTES, attribute_id)


@router.patch("/value-map/attributes/{attribute_id}", response_model=AttributeOut)
async def update_attribute(attribute_id: str, body: AttributeUpdate, session: WriteSession):
    """Rename (its ratings follow), reweigh, or mark or unmark as the price attribute."""
    return await service.update_attribute(session, attribute_id=attribute_id, data=body)


@router.delete("/value-map/attributes/{attribute_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_attribute(attribute_id: str, session: WriteSession):
    """Remove an attribute; its ratings stay, counted as unmapped (a weight of 0 keeps it but leaves it out)."""
    await service.delete(session, service.ATTRIBUTES, attribute_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- competitors -------------------------------------------------------------------------


@router.get("/value-map/competitors", response_model=CompetitorPage)
async def list_competitors(session: ReadSession, page: PagingById):
    """The named competitors, oldest first."""
    rows = await service.listed(session, service.COMPETITORS, after_id=page.after_value, limit=page.fetch)
    return page.of(rows, _by_id)


@router.post("/value-map/competitors", status_code=status.HTTP_201_CREATED, response_model=CompetitorOut)
async def create_competitor(body: CompetitorCreate, session: WriteSession):
    """Add a competitor; a name taken (case-insensitive) is 409, `us` is 422."""
    return await service.create_competitor(session, data=body)


@router.get("/value-map/competitors/{competitor_id}", response_model=CompetitorOut)
async def get_competitor(competitor_id: str, session: ReadSession):
    """One competitor."""
    return await service.get(session, service.COMPETITORS, competitor_id)


@router.patch("/value-map/competitors/{competitor_id}", response_model=CompetitorOut)
async def update_competitor(competitor_id: str, body: CompetitorUpdate, session: WriteSession):
    """Rename a competitor: its ratings follow."""
    return await service.update_competitor(session, competitor_id=competitor_id, data=body)


@router.delete("/value-map/competitors/{competitor_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_competitor(competitor_id: str, session: WriteSession):
    """Remove a competitor; its ratings stay, counted as unmapped."""
    await service.delete(session, service.COMPETITORS, competitor_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- ratings -----------------------------------------------------------------------------


@router.post("/value-map/ratings:batch", status_code=status.HTTP_201_CREATED, response_model=RatingBatchOut)
async def record_ratings(body: RatingBatch, session: WriteSession):
    """Enter 1 to 1,000 ratings at once (a market study, say): all or none. An unknown
    attribute, competitor, segment or customer is 422 naming each bad item's field."""
    return {"recorded": await service.record_batch(session, items=body.ratings)}


@router.get("/customers/{customer_id}/value-ratings", response_model=RatingPage)
async def list_ratings(customer_id: str, session: ReadSession, page: PagingById):
    """The customer's ratings of us and competitors, newest first (attribute and subject as matched: case-folded)."""
    rows = await service.ratings_of(session, customer_id=customer_id, before_id=page.after_value, limit=page.fetch)
    return page.of(rows, _by_id)
