"""Import jobs' response bodies (the request is a multipart form: see endpoints.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from shared.http.pagination import Page


class ImportStarted(BaseModel):
    id: str
    status: Literal["running", "done", "failed"]
    format: str
    # Columns of the file that are neither ours nor mapped: not imported.
    ignored_columns: list[str] = Field(default_factory=list)


class RejectedLine(BaseModel):
    line: int = Field(description="1-based line number in the uploaded file")
    reason: str
    raw: str | None = Field(None, description="the line's text (first 500 characters)")


class ImportOut(BaseModel):
    """A job as listed; GET /v1/imports/{id} adds its first rejected lines."""

    id: str
    status: Literal["running", "done", "failed"]
    filename: str | None
    format: str
    mapping: dict[str, str]
    create_customers: bool
    rows_read: int
    recorded: int
    duplicates: int
    rejected: int
    customers_created: int
    failure: str | None
    created_at: datetime
    finished_at: datetime | None


class ImportDetail(ImportOut):
    errors: list[RejectedLine] = Field(description="the first rejected lines, in line order")
    errors_total: int = Field(description="how many lines were rejected in all")
    errors_truncated: bool = Field(description="true when `errors` is cut: page through /v1/imports/{id}/errors")


class ImportPage(Page[ImportOut]):
    pass


class ImportErrorPage(Page[RejectedLine]):
    pass
