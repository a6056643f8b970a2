"""Templates' request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from shared.events.contracts import MessageChannel
from shared.http.pagination import Page
from shared.http.validation import NOT_BLANK_SCHEMA, NOT_BLANK_TEXT_SCHEMA, Strict, stripped, stripped_text

Purpose = Literal["marketing", "service"]


class TemplateIn(Strict):
    """A template: Jinja text naming merge fields as `{{ name }}` (GET /v1/templates/fields lists them)."""

    name: Annotated[str, Field(min_length=1, max_length=200, **NOT_BLANK_SCHEMA), AfterValidator(stripped)]
    channel: MessageChannel = "email"
    purpose: Purpose
    subject: Annotated[
        str | None,
        Field(max_length=300, description="The email's subject (a template too); null for other channels"),
        AfterValidator(stripped),
    ] = None
    body: Annotated[
        str,
        Field(
            min_length=1,
            max_length=100_000,
            description="The text body. A marketing template must name {{ unsubscribe_link }}.",
            **NOT_BLANK_TEXT_SCHEMA,
        ),
        AfterValidator(stripped_text),
    ]


class TemplateOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    channel: MessageChannel
    purpose: Purpose
    subject: str | None
    body: str
    fields: list[str] = Field(description="The merge fields the template names")
    created_at: datetime
    updated_at: datetime


class TemplatePage(Page[TemplateOut]):
    pass


class MergeField(BaseModel):
    name: str
    filled_by: Literal["engage", "caller"] = Field(
        description="engage fills its own (the customer's name, the unsubscribe link); the sender supplies the rest"
    )
    description: str


class MergeFields(BaseModel):
    items: list[MergeField]
