"""Request and response bodies of ideas, votes and comments."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field

from shared.events.contracts import IdeaStatus
from shared.http.pagination import KeyPart, Page
from shared.http.validation import NOT_BLANK_SCHEMA, NOT_BLANK_TEXT_SCHEMA, Id, Strict, stripped, stripped_text

Title = Annotated[str, Field(min_length=1, max_length=200, **NOT_BLANK_SCHEMA), AfterValidator(stripped)]
LongText = Annotated[str, Field(min_length=1, max_length=5000, **NOT_BLANK_TEXT_SCHEMA), AfterValidator(stripped_text)]
Area = Annotated[str, Field(min_length=1, max_length=50, **NOT_BLANK_SCHEMA), AfterValidator(stripped)]
Reason = Annotated[str | None, Field(max_length=1000, **NOT_BLANK_TEXT_SCHEMA), AfterValidator(stripped_text)]
IdeaSort = Literal["votes", "value"]


class IdeaFields(Strict):
    title: Title
    description: LongText
    # One of VALUECHAIN_VALUE_IDEA_PRODUCT_AREAS (another is 422 naming the areas).
    product_area: Area


class IdeaCreate(IdeaFields):
    """An idea staff enter on a customer's behalf."""

    customer_id: Id


class IdeaSubmit(IdeaFields):
    """An idea a customer submits through their link."""


class VoteCreate(Strict):
    customer_id: Id


class CommentFields(Strict):
    body: LongText


class CommentCreate(CommentFields):
    customer_id: Id


class StatusChange(Strict):
    status: IdeaStatus
    # The public reason customers read (required to decline).
    reason: Reason = None


class IdeaOut(BaseModel):
    id: str
    customer_id: str
    title: str
    description: str | None
    product_area: str
    status: IdeaStatus
    status_reason: str | None
    source: Literal["link", "staff"]
    submitted_at: datetime
    status_changed_at: datetime
    votes: int
    # Value-weighted demand: the sum of the voters' predicted CLV (value's copy of identify's
    # scores); a voter without a score counts 0 and is counted in `unscored_voters`.
    value_weighted_demand: float
    unscored_voters: int


class IdeaPage(Page[IdeaOut]):
    pass


class PublicIdeaOut(BaseModel):
    """An open idea as a customer's link shows it: no one's customer id."""

    id: str
    title: str
    description: str | None
    product_area: str
    status: IdeaStatus
    status_reason: str | None
    votes: int
    # Whether the link's customer voted for it already.
    voted: bool


class PublicIdeaPage(Page[PublicIdeaOut]):
    pass


class VoteOut(BaseModel):
    idea_id: str
    customer_id: str
    voted_at: datetime
    votes: int


class CommentOut(BaseModel):
    id: str
    idea_id: str
    customer_id: str
    body: str
    source: Literal["link", "staff"]
    created_at: datetime


class CommentPage(Page[CommentOut]):
    pass


class IdeasLinkOut(BaseModel):
    customer_id: str
    # The customer's page of ideas (GET lists open ideas; POST submits, .../votes and .../comments).
    url: str
    expires_in_days: int


def _whole_number(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) >= 2**62:
        raise TypeError("not a whole number")
    return value


# Both sorts page by (the sort's whole number, idea id), highest first: votes, or
# value-weighted demand in cents (an integer, so the cursor compares it exactly).
WHOLE: KeyPart[int] = KeyPart(lambda value: value, _whole_number)
