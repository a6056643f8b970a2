"""The feed's answer, as the OpenAPI document shows it (the endpoint writes the bytes itself)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class FeedItem(BaseModel):
    cursor: str = Field(description="The event's stream sequence: pass it as `after` to read on from here")
    event: dict[str, Any] = Field(
        description="The public CloudEvent, as webhooks deliver it (personal fields null without pii:read)"
    )


class FeedPage(BaseModel):
    items: list[FeedItem]
    next_cursor: str = Field(description="Pass as `after` for the next page (the same when nothing new came)")
    has_more: bool = Field(description="More of the stream is there to read now; false: poll again later")
