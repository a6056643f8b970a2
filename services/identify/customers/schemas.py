"""The customers API's bodies: a customer as created, changed and shown (with its scores)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from shared.http.pagination import Page
from shared.http.validation import NOT_BLANK_SCHEMA, Email, Id, Strict, Text, stripped

Phone = Annotated[str | None, Field(max_length=50, **NOT_BLANK_SCHEMA), AfterValidator(stripped)]


class CustomerCreate(Strict):
    # `_identified` below, stated in the schema too, so clients and fuzzers see it.
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": [name], "properties": {name: {"type": "string"}}} for name in ("email", "external_id")
            ]
        }
    )

    email: Email = None
    external_id: Text = None
    name: Text = None
    phone: Phone = None
    referred_by: Id | None = Field(None, description="The id of the customer who referred this one")
    referral_code: Annotated[
        str | None,
        Field(
            max_length=40,
            description="The referral code of the customer who referred this one (any case; dashes and spaces "
            "ignored). Resolved into referred_by; an unknown code, or one of another customer than "
            "referred_by, is 422",
            **NOT_BLANK_SCHEMA,
        ),
    ] = None

    @model_validator(mode="after")
    def _identified(self):
        if not self.email and not self.external_id:
            raise ValueError("give at least one of email and external_id")
        return self


class CustomerPatch(Strict):
    # Not both set to null at once (updates that would leave neither, given what is stored, are 409).
    model_config = ConfigDict(
        json_schema_extra={
            "not": {
                "required": ["email", "external_id"],
                "properties": {"email": {"type": "null"}, "external_id": {"type": "null"}},
            }
        }
    )

    email: Email = None
    external_id: Text = None
    name: Text = None
    phone: Phone = None


class CustomerOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    email: str | None
    external_id: str | None
    name: str | None
    phone: str | None
    phone_e164: str | None = Field(
        None, validation_alias="phone_key", description="The phone in E.164, null when it is not a valid number"
    )
    referred_by: str | None
    referral_code: str | None = Field(
        None, description="The customer's own referral code, to hand to the people they refer (null once erased)"
    )
    purchase_count: int
    merged_into: str | None = Field(
        None, description="Set when this customer was merged: the survivor that now holds its data"
    )
    merged_at: datetime | None = None
    suppressed: bool = Field(
        False,
        description="Never market to this customer: its email or phone matched an erased customer's "
        "(the suppression list), or its own data was erased",
    )
    erased_at: datetime | None = Field(None, description="When the customer's personal data was erased")
    created_at: datetime
    updated_at: datetime
    scores: ScoresOut | None = Field(
        None,
        description="RFM scores and segment, lifetime value, probability alive and strategically "
        "significant kinds with their evidence; null until the first refit has scored the customer",
    )


class CustomerPage(Page[CustomerOut]):
    pass


class ScoresOut(BaseModel):
    """A customer's scores, shown on GET /v1/customers/{id}."""

    model_version: int | None
    recency: int | None
    frequency: int | None
    monetary: int | None
    segment: str | None
    historic_clv: float | None
    predicted_clv: float | None
    expected_purchases: float | None
    probability_alive: float | None
    # Expected spend per purchase (Gamma-Gamma), in the reporting currency.
    expected_spend: float | None = None
    kinds: list[str]
    evidence: dict
    scored_at: datetime
