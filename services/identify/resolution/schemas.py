"""Identity resolution's request and response bodies."""

from __future__ import annotations

from pydantic import BaseModel, Field

from services.identify.customers.schemas import CustomerOut
from shared.http.validation import Id, Strict

MAX_MERGE = 50


class MergeRequest(Strict):
    merge: list[Id] = Field(
        min_length=1,
        max_length=MAX_MERGE,
        json_schema_extra={"uniqueItems": True},  # the service refuses an id listed twice
        description=f"Ids of the customers to merge into the customer of the path (the survivor); 1 to {MAX_MERGE}",
    )


class DuplicateCandidate(BaseModel):
    customer: CustomerOut
    score: float = Field(description="0..1: 1 - the product of (1 - weight) over the reasons")
    reasons: list[str]


class DuplicatesOut(BaseModel):
    items: list[DuplicateCandidate]
