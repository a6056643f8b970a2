"""Communities' request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from shared.http.pagination import Page
from shared.http.validation import NOT_BLANK_SCHEMA, NOT_BLANK_TEXT_SCHEMA, Id, Strict, Text, stripped, stripped_text

ScopeType = Literal["segment", "kind", "stage", "list"]

Name = Annotated[str, Field(min_length=1, max_length=200, **NOT_BLANK_SCHEMA), AfterValidator(stripped)]
Body = Annotated[str, Field(min_length=1, max_length=20000, **NOT_BLANK_TEXT_SCHEMA), AfterValidator(stripped_text)]
EmployeeId = Annotated[str, Field(min_length=1, max_length=100, **NOT_BLANK_SCHEMA), AfterValidator(stripped)]
CustomerId = Annotated[Id, Field(min_length=1, max_length=36)]


class CommunityCreate(Strict):
    name: Name
    description: Annotated[
        str | None, Field(max_length=2000, **NOT_BLANK_TEXT_SCHEMA), AfterValidator(stripped_text)
    ] = None
    scope_type: ScopeType = Field(
        description="segment, kind or stage: members join and leave as identify's scores and lifecycle's "
        "stages change; list: members are added and removed by hand"
    )
    scope_value: str | None = Field(
        None,
        max_length=50,
        description="The RFM segment (champions, loyal, ...), the kind (high_future_value, benchmark, "
        "inspiration, cost_absorber) or the stage (prospect, new, active, loyal, at_risk, churned, won_back); "
        "left out for a list",
    )


class CommunityOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    description: str | None
    scope_type: str
    scope_value: str | None
    created_at: datetime
    members: int = Field(description="Current members")
    threads: int = Field(description="Threads not hidden")


class CommunityPage(Page[CommunityOut]):
    pass


class MemberAdd(Strict):
    customer_id: CustomerId


class MemberOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="The stint's id")
    community_id: str
    customer_id: str
    source: Literal["auto", "manual"]
    joined_at: datetime
    left_at: datetime | None = Field(description="Null while the customer is a member")


class MemberPage(Page[MemberOut]):
    pass


class CustomerCommunityOut(MemberOut):
    name: str
    scope_type: str
    scope_value: str | None


class CustomerCommunityPage(Page[CustomerCommunityOut]):
    pass


class Author(Strict):
    author_customer_id: CustomerId | None = Field(None, description="A member customer writing")
    author_employee_id: EmployeeId | None = Field(None, description="Staff writing: an employee stakeholder id")


class ThreadCreate(Author):
    title: Name
    body: Body


class ReplyCreate(Author):
    body: Body


class HelpfulMarkCreate(Strict):
    customer_id: CustomerId = Field(description="The member marking the post helpful")


class Moderation(Strict):
    moderator: EmployeeId = Field(description="Who moderates (an employee id)")
    reason: Text = None


class PostOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    community_id: str
    thread_id: str | None = Field(description="The topic this replies in; null for a topic")
    author_customer_id: str | None
    author_employee_id: str | None
    title: str | None
    body: str
    created_at: datetime
    reply_count: int
    helpful_marks: int
    locked: bool
    hidden: bool
    hidden_at: datetime | None
    hidden_by: str | None
    hidden_reason: str | None


class PostPage(Page[PostOut]):
    pass


class ThreadOut(PostOut):
    replies: PostPage = Field(description="The replies not hidden, oldest first (`cursor` pages them)")


class HelpfulnessOut(BaseModel):
    post_id: str
    customer_id: str = Field(description="The member who marked it")
    helpful_marks: int = Field(description="The post's helpful marks now")
    author_helpful_marks: int | None = Field(description="The author's helpful marks in every community (members only)")
