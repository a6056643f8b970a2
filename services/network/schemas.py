"""network's request and response bodies."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

StakeholderKind = Literal["partner", "supplier", "employee", "investor"]

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _email(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not EMAIL.match(value):
        raise ValueError("not a valid email address")
    return value


def _stripped(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value:
        raise ValueError("must not be blank")
    return value


Email = Annotated[str | None, Field(max_length=320), AfterValidator(_email)]
Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_stripped)]
Text = Annotated[str | None, Field(max_length=200), AfterValidator(_stripped)]
Notes = Annotated[str | None, Field(max_length=5000), AfterValidator(_stripped)]


class Strict(BaseModel):
    # Nothing the client sends is silently dropped: unknown fields are errors.
    model_config = ConfigDict(extra="forbid")


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


class StakeholderPage(BaseModel):
    items: list[StakeholderOut]
    next_cursor: str | None = None


class ReferralOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    referred_id: str = Field(description="The customer who was referred")
    recorded_at: datetime = Field(description="When network recorded the referral")


class ReferralPage(BaseModel):
    items: list[ReferralOut]
    next_cursor: str | None = None
