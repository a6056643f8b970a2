"""Templates' rules: checked when saved (syntax, known merge fields, the unsubscribe link of
a marketing template), never found wanting when a message is sent."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.engage.templates import repository
from services.engage.templates.models import MessageTemplate
from services.engage.templates.rendering import CALLER_FIELDS, ENGAGE_FIELDS, UNSUBSCRIBE_FIELD, TemplateError, check
from services.engage.templates.schemas import TemplateIn
from shared.db.database import utcnow
from shared.db.ids import uuid7
from shared.http.errors import Conflict, NotFound, field_error


def _checked(data: TemplateIn) -> str:
    """The merge fields the template names, space-separated; 422 naming the field that is wrong."""

    named: set[str] = set()
    for field, source in (("subject", data.subject), ("body", data.body)):
        if source is None:
            continue
        try:
            named |= check(source)
        except TemplateError as exc:
            raise field_error(f"body.{field}", str(exc)) from None
    if data.purpose == "marketing" and UNSUBSCRIBE_FIELD not in named:
        raise field_error("body.body", "a marketing template must contain {{ unsubscribe_link }}")
    if data.channel == "email" and not data.subject:
        raise field_error("body.subject", "an email template needs a subject")
    return " ".join(sorted(named))


def out(template: MessageTemplate) -> dict[str, Any]:
    return {
        "id": template.id,
        "name": template.name,
        "channel": template.channel,
        "purpose": template.purpose,
        "subject": template.subject,
        "body": template.body,
        "fields": template.fields.split(),
        "created_at": template.created_at,
        "updated_at": template.updated_at,
    }


async def _name_free(session: AsyncSession, name: str, template_id: str | None) -> None:
    other = await repository.by_name(session, name)
    if other is not None and other.id != template_id:
        raise Conflict(f"a template named {name!r} exists already ({other.id})", error="duplicate_name")


async def create(*, session: AsyncSession, data: TemplateIn) -> dict[str, Any]:
    fields = _checked(data)
    await _name_free(session, data.name, None)
    now = utcnow()
    template = MessageTemplate(id=uuid7(), **data.model_dump(), fields=fields, created_at=now, updated_at=now)
    session.add(template)
    await session.flush()
    return out(template)


async def replace(*, session: AsyncSession, template_id: str, data: TemplateIn) -> dict[str, Any]:
    template = await repository.get(session, template_id)
    if template is None:
        raise NotFound(f"no template {template_id}")
    fields = _checked(data)
    await _name_free(session, data.name, template_id)
    for key, value in data.model_dump().items():
        setattr(template, key, value)
    template.fields, template.updated_at = fields, utcnow()
    await session.flush()
    return out(template)


async def get(*, session: AsyncSession, template_id: str) -> dict[str, Any]:
    template = await repository.get(session, template_id)
    if template is None:
        raise NotFound(f"no template {template_id}")
    return out(template)


async def listing(*, session: AsyncSession, after_id: str | None, limit: int) -> list[dict[str, Any]]:
    return [out(t) for t in await repository.page(session, after_id=after_id, limit=limit)]


async def delete(*, session: AsyncSession, template_id: str) -> None:
    """Messages already rendered from it keep their text; later requests naming it are refused."""

    if not await repository.remove(session, template_id):
        raise NotFound(f"no template {template_id}")


def merge_fields() -> list[dict[str, str]]:
    return [
        *({"name": n, "filled_by": "engage", "description": d} for n, d in ENGAGE_FIELDS.items()),
        *({"name": n, "filled_by": "caller", "description": d} for n, d in CALLER_FIELDS.items()),
    ]
