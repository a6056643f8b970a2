"""Templates' HTTP API: /v1/templates (thin)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from services.engage.templates import service
from services.engage.templates.schemas import MergeFields, TemplateIn, TemplateOut, TemplatePage
from shared.http.deps import ReadSession, WriteSession
from shared.http.pagination import PagingById

router = APIRouter(prefix="/v1", tags=["engage: outbound mail and templates"])


@router.post("/templates", status_code=status.HTTP_201_CREATED, response_model=TemplateOut)
async def create_template(body: TemplateIn, session: WriteSession):
    """Save a template. A syntax error, an unknown merge field or a marketing template without
    {{ unsubscribe_link }} is 422 naming the field."""
    return await service.create(session=session, data=body)


@router.get("/templates", response_model=TemplatePage)
async def list_templates(session: ReadSession, page: PagingById):
    """Every template, in id order."""
    rows = await service.listing(session=session, after_id=page.after_value, limit=page.fetch)
    return page.of(rows, lambda t: (t["id"],))


@router.get("/templates/fields", response_model=MergeFields)
async def template_fields():
    """The merge fields a template may name, and who fills each in."""
    return {"items": service.merge_fields()}


@router.get("/templates/{template_id}", response_model=TemplateOut)
async def get_template(template_id: str, session: ReadSession):
    """One template."""
    return await service.get(session=session, template_id=template_id)


@router.put("/templates/{template_id}", response_model=TemplateOut)
async def replace_template(template_id: str, body: TemplateIn, session: WriteSession):
    """Replace a template (checked as when it was created). Messages already queued keep their text."""
    return await service.replace(session=session, template_id=template_id, data=body)


@router.delete("/templates/{template_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_template(template_id: str, session: WriteSession):
    """Delete a template. Messages already queued keep their text."""
    await service.delete(session=session, template_id=template_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
