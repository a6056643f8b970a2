"""Request and response bodies of /v1/api-keys and /v1/me."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from gateway.access.roles import ROLE_NAMES, SCOPE_SET, SCOPES
from shared.db.database import utcnow
from shared.events.public import check_pattern
from shared.http.pagination import Page
from shared.http.validation import NOT_BLANK_SCHEMA, Id, Strict, stripped

DAY_S = 24 * 3600
MAX_OVERLAP_S = 30 * DAY_S


def _known_role(value: str) -> str:
    if value not in ROLE_NAMES:
        raise ValueError(f"unknown role {value!r}; roles: {', '.join(ROLE_NAMES)}")
    return value


def _known_scope(value: str) -> str:
    if value not in SCOPE_SET:
        raise ValueError(f"unknown scope {value!r}; scopes: {', '.join(SCOPES)}")
    return value


def _in_the_future(value: datetime | None) -> datetime | None:
    if value is not None and value <= utcnow():
        raise ValueError("must lie in the future")
    return value


Role = Annotated[str, Field(json_schema_extra={"enum": list(ROLE_NAMES)}), AfterValidator(_known_role)]
Scope = Annotated[str, Field(json_schema_extra={"enum": list(SCOPES)}), AfterValidator(_known_scope)]
Name = Annotated[str, Field(min_length=1, max_length=200, **NOT_BLANK_SCHEMA), AfterValidator(stripped)]
StakeholderId = Annotated[Id, Field(min_length=1, max_length=64)]
MAX_EVENT_TYPES = 100
EventTypePattern = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(check_pattern)]


class ApiKeyCreate(Strict):
    name: Name
    role: Role
    scopes: list[Scope] = Field(default_factory=list, max_length=len(SCOPES), description="Extra scopes")
    expires_at: Annotated[AwareDatetime | None, AfterValidator(_in_the_future)] = None
    partner_id: StakeholderId | None = Field(
        None,
        description="The partner (a network stakeholder) a `partner` key belongs to: needed there, refused elsewhere",
    )
    person_id: StakeholderId | None = Field(None, description="The employee stakeholder the key acts for")
    event_types: list[EventTypePattern] | None = Field(
        None,
        min_length=1,
        max_length=MAX_EVENT_TYPES,
        description="The event types the key may see in webhooks and the feed: types, or prefixes with `.*` "
        "(crm.identify.customer.*). None: every public type",
    )


class ApiKeyRotate(Strict):
    overlap_seconds: int = Field(
        DAY_S,
        ge=0,
        le=MAX_OVERLAP_S,
        description="How long the old secret keeps working (default 24 h, at most 30 days)",
    )


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    role: str
    scopes: list[str] = Field(description="Extra scopes, beyond the role's")
    partner_id: str | None
    person_id: str | None
    event_types: list[str] | None = Field(description="The event types the key may see; None: every public type")
    prefix: str = Field(description="The first characters after `vc_` of the current secret, to tell keys apart")
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The secret, shown this once: only its hash is stored")


class ApiKeyPage(Page[ApiKeyOut]):
    pass


class MeOut(BaseModel):
    id: str = Field(description="The key's id, `jwt:<sub>`, or `bootstrap-admin`")
    kind: str = Field(description="`key`, `jwt` or `bootstrap`")
    role: str
    scopes: list[str]
    partner_id: str | None
    person_id: str | None
    event_types: list[str] | None = Field(description="The event types the caller may see; None: every public type")
