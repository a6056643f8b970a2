"""lifecycle's response bodies."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


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
