"""Outbound email's request and response bodies (POST /v1/emails)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, model_validator

from services.engage.templates.rendering import CALLER_FIELDS
from shared.http.validation import NOT_BLANK_TEXT_SCHEMA, Id, Strict, stripped, stripped_text

Purpose = Literal["marketing", "service"]
FieldValue = Annotated[str, Field(max_length=2000)]


def _caller_fields(values: dict[str, str]) -> dict[str, str]:
    unknown = sorted(set(values) - CALLER_FIELDS.keys())
    if unknown:
        raise ValueError(f"unknown merge fields {unknown}; a request may give {sorted(CALLER_FIELDS)}")
    return values


class EmailIn(Strict):
    """An email to one customer: a template with merge data, or a subject and body of its own
    (which may name merge fields too)."""

    customer_id: Id
    purpose: Purpose = Field(
        description="marketing needs the customer's consent for email and counts against the frequency cap"
    )
    template_id: Id | None = None
    subject: Annotated[str | None, Field(max_length=300), AfterValidator(stripped)] = None
    body: Annotated[str | None, Field(max_length=100_000, **NOT_BLANK_TEXT_SCHEMA), AfterValidator(stripped_text)] = (
        None
    )
    fields: Annotated[dict[str, FieldValue], AfterValidator(_caller_fields)] = Field(
        default_factory=dict,
        description="Values of the merge fields engage does not fill in itself (GET /v1/templates/fields)",
        json_schema_extra={"propertyNames": {"enum": list[JsonValue](sorted(CALLER_FIELDS))}},
    )
    author_id: Id | None = Field(None, description="The employee stakeholder (network) who sends it")

    @model_validator(mode="after")
    def _template_or_text(self) -> EmailIn:
        if self.template_id is not None and (self.subject is not None or self.body is not None):
            raise ValueError("give a template_id or a subject and body, not both")
        if self.template_id is None and (self.subject is None or self.body is None):
            raise ValueError("give a template_id, or both a subject and a body")
        return self


class EmailOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    customer_id: str
    conversation_id: str | None
    channel: Literal["email"] = "email"
    purpose: Purpose
    status: str = Field(description="queued, then sent or failed (or refused: consent withdrawn before sending)")
    subject: str | None
    body: str | None = Field(description="The text as rendered when it was queued")
    to_address: str | None
    rfc_message_id: str | None = Field(description="The Message-ID header")
    template_id: str | None
    request_id: str | None
    source_kind: str | None
    source_id: str | None
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None = Field(description="The server's reply to the last failed attempt")
    created_at: datetime
    sent_at: datetime | None
