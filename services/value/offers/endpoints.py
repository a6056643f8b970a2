"""Offer templates over HTTP, and issuing a template's offer to a customer."""

from __future__ import annotations

from fastapi import APIRouter, status

from services.value.offers import service
from services.value.offers.schemas import IssueRequest, OfferTemplateCreate, OfferTemplateOut, OfferTemplatePage
from services.value.schemas import OfferOut
from shared.http.deps import ReadSession, WriteSession
from shared.http.pagination import PagingById

router = APIRouter(prefix="/v1", tags=["value"])


@router.post("/offer-templates", status_code=status.HTTP_201_CREATED, response_model=OfferTemplateOut)
async def create_template(body: OfferTemplateCreate, session: WriteSession):
    """An offer template: its kind (percent_off, amount_off, free_item, points), validity window,
    budget, per-customer cap and the cost of one offer to the business."""
    return await service.create_template(session=session, data=body)


@router.get("/offer-templates", response_model=OfferTemplatePage)
async def list_templates(session: ReadSession, page: PagingById):
    """Offer templates, newest first."""
    rows = await service.list_templates(session=session, before_id=page.after_value, limit=page.fetch)
    return page.of(rows, lambda row: (row["id"],))


@router.get("/offer-templates/{template_id}", response_model=OfferTemplateOut)
async def get_template(template_id: str, session: ReadSession):
    """One offer template, with the number of offers issued from it."""
    return await service.get_template(session=session, template_id=template_id)


@router.post(
    "/offer-templates/{template_id}/offers",
    status_code=status.HTTP_201_CREATED,
    response_model=OfferOut,
    responses={409: {"description": "`budget_exhausted`, `customer_cap`, `template_expired` or `customer_merged`"}},
)
async def issue_offer(template_id: str, body: IssueRequest, session: WriteSession):
    """Issue the template's offer, with its own coupon code, to a customer; beyond the template's
    budget or the customer's cap it is 409 naming the cap."""
    return await service.issue_one(session=session, template_id=template_id, customer_id=body.customer_id)
