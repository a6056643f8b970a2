"""Stakeholders' and relations' request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, get_args

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from shared.events.contracts import RelationKind, StakeholderKind
from shared.http.pagination import Page
from shared.http.validation import (
    NOT_BLANK_SCHEMA,
    NOT_BLANK_TEXT_SCHEMA,
    AsText,
    Email,
    Id,
    Strict,
    Text,
    stripped,
    stripped_text,
)

STAKEHOLDER_KINDS: tuple[str, ...] = get_args(StakeholderKind)
HISTORY_LIMIT = 200  # periods shown with a customer's network (the relations list pages through all)

# Which kinds of stakeholder may hold each relation to a customer.
RELATION_KINDS: dict[str, frozenset[str]] = {
    "account_manager_of": frozenset({"employee"}),
    "reseller_of": frozenset({"reseller", "partner"}),
    "supplier_to": frozenset({"supplier"}),
    "introduced": frozenset(STAKEHOLDER_KINDS),
}

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


class StakeholderUpdate(Strict):
    """The fields sent change (none: nothing changes); `null` clears email, organisation or notes. The kind stays."""

    name: Name = Field(None, description="The new name (never null)")  # type: ignore[assignment]
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
    updated_at: datetime | None = None


class StakeholderPage(Page[StakeholderOut]):
    pass


# --- relations to customers ---------------------------------------------------------------


class RelationCreate(Strict):
    stakeholder_id: Id = Field(description="The stakeholder taking up the relation")
    relation: RelationKind = Field(
        description="account_manager_of (an employee; one current per customer: another one ends the previous), "
        "reseller_of (a reseller or partner), supplier_to (a supplier), introduced (any kind)"
    )
    started_at: Annotated[AwareDatetime | None, AsText] = Field(
        None, description="When the relation began (default now); not in the future"
    )


class RelationOut(BaseModel):
    """One period of a relation: current while `ended_at` is null."""

    id: str
    customer_id: str
    stakeholder_id: str
    stakeholder_kind: StakeholderKind
    relation: RelationKind
    started_at: datetime
    started_by: str | None = Field(description="Who started it (an API key or person; `merge` for a merge)")
    ended_at: datetime | None
    ended_by: str | None
    ended_reason: str | None = Field(
        description="ended (by a user), replaced (another account manager), merged (the same relation after a merge)"
    )


class RelationPage(Page[RelationOut]):
    pass


class CurrentRelation(RelationOut):
    stakeholder: StakeholderOut


class CustomerNetwork(BaseModel):
    customer_id: str
    at: datetime | None = Field(description="The point in time `current` describes (null: now)")
    current: list[CurrentRelation] = Field(description="The relations current then, with their stakeholders")
    history: list[RelationOut] = Field(
        description=f"Every period, current or ended, newest start first (the newest {HISTORY_LIMIT}; "
        "`GET /v1/customers/{id}/relations` pages through all)"
    )


# --- a stakeholder's customers and partner performance --------------------------------------


class CustomerValue(BaseModel):
    relation_id: str
    customer_id: str
    relation: RelationKind
    current: bool = Field(description="The relation is current (else it ended)")
    started_at: datetime
    ended_at: datetime | None
    revenue: float = Field(description="Net revenue in the reporting currency: refunds off, voided purchases out")
    purchases: int = Field(description="Purchases, voided ones left out")
    last_purchase_at: datetime | None
    active: bool = Field(description="Bought within the active window (VALUECHAIN_NETWORK_ACTIVE_CUSTOMER_DAYS)")
    predicted_clv: float | None = Field(description="identify's predicted CLV (null until scored)")
    segment: str | None


class StakeholderCustomers(Page[CustomerValue]):
    """One page of the stakeholder's customers, and the totals over all of them."""

    stakeholder_id: str
    customers: int = Field(description="Customers counted (all pages)")
    active_customers: int
    revenue: float
    predicted_clv: float


class Performance(BaseModel):
    stakeholder_id: str
    kind: StakeholderKind
    name: str
    customers: int = Field(description="Customers it brought or serves (current relations; see include_ended)")
    active_customers: int = Field(description="Of those, how many bought within the active window")
    revenue: float
    revenue_per_customer: float | None
    predicted_clv: float = Field(description="The sum of the customers' predicted CLV")
    retention: float | None = Field(description="active_customers / customers")


class PerformancePage(Page[Performance]):
    pass
