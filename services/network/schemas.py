"""network's request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from shared.http.pagination import Page
from shared.http.validation import NOT_BLANK_SCHEMA, NOT_BLANK_TEXT_SCHEMA, Email, Strict, Text, stripped, stripped_text

StakeholderKind = Literal["partner", "supplier", "employee", "investor"]

Name = Annotated[str, Field(min_length=1, max_length=200, **NOT_BLANK_SCHEMA), AfterValidator(stripped)]
Notes = Annotated[
    str | None, Field(max_length=5000, **NOT_BLANK_TEXT_SCHEMA), AfterValidator(stripped_text)
]  # several lines


class StakeholderCreate(Strict):
    kind: StakeholderKind
    name: Name
    email: Email = None
    organisation: Text = None
    notes: Notes = None


class StakeholderOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    kind: StakeholderKind
    name: str
    email: str | None
    organisation: str | None
    notes: str | None
    created_at: datetime


class StakeholderPage(Page[StakeholderOut]):
    pass
