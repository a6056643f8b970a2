"""lifecycle's response bodies."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from shared.events.contracts import Stage
from shared.http.pagination import Page


class Transition(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: str | None = Field(alias="from", serialization_alias="from")
    to: str
    at: datetime
    event_id: str


class LifecycleOut(BaseModel):
    customer_id: str
    stage: str | None
    purchase_count: int
    history: list[Transition]


class CustomerInStage(BaseModel):
    customer_id: str
    stage: Stage
    since: datetime | None = Field(description="When the customer entered this stage (its latest transition to it)")


class CustomerInStagePage(Page[CustomerInStage]):
    pass
