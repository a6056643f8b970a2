"""An erasure's report, as GET /v1/erasures/{id} and the erasure request answer it."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class ServiceErasure(BaseModel):
    service: str
    applied_at: datetime | None = Field(description="When the service erased its data; null while it has not")
    tables: dict[str, int] = Field(description="Rows erased (anonymised or deleted) per table")


class StreamErasure(BaseModel):
    erased_at: datetime | None = Field(description="When the events about the customer left the stream")
    messages: int | None = Field(description="Messages deleted (their bytes overwritten)")


class ErasureOut(BaseModel):
    id: str
    customer_id: str
    merged_ids: list[str]
    requested_at: datetime
    complete: bool = Field(description="Every service erased its data and the stream holds no event with it")
    completed_at: datetime | None
    services: list[ServiceErasure]
    stream: StreamErasure
