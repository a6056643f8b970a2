"""Playbooks' request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, model_validator
from pydantic.json_schema import JsonDict, SkipJsonSchema

from shared.events.contracts import Stage
from shared.http.pagination import Page
from shared.http.validation import NOT_BLANK_SCHEMA, Id, Strict, stripped

# The stages a playbook may start on: going quiet (at_risk) and gone (churned).
TriggerStage = Literal["at_risk", "churned"]
Group = Literal["treatment", "holdout"]


def _not_a_boolean(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError("a number, not a boolean")
    return value


_NotBoolean = BeforeValidator(_not_a_boolean)


def _distinct(stages: list[str]) -> list[str]:
    if len(set(stages)) != len(stages):
        raise ValueError("each stage once")
    return stages


_Name = Annotated[str, Field(min_length=1, max_length=200, **NOT_BLANK_SCHEMA), AfterValidator(stripped)]
_Queue = Annotated[str, Field(min_length=1, max_length=100, **NOT_BLANK_SCHEMA), AfterValidator(stripped)]
_Stages = Annotated[
    list[TriggerStage],
    Field(min_length=1, max_length=2, json_schema_extra={"uniqueItems": True}),  # each stage once
    AfterValidator(_distinct),
]
_Clv = Annotated[float, Field(ge=0, description="Predicted CLV at or above this (reporting currency)"), _NotBoolean]
_HoldoutShare = Annotated[
    float, Field(ge=0, le=0.5, description="The share of entering customers held out: 0 to 0.5"), _NotBoolean
]
_Lookback = Annotated[
    int, Field(ge=1, le=3650, description="Only customers whose last purchase is within this many days"), _NotBoolean
]
_Template = Annotated[Id, Field(min_length=1, max_length=36, description="value's offer template id")]
_Seed = Annotated[Id, Field(min_length=1, max_length=64)]


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


# A playbook does something: a retention offer, an outreach ticket or both (the schema says so too).
_DOES_SOMETHING: JsonDict = {
    "anyOf": [
        {"required": [name], "properties": {name: {"type": "string"}}} for name in ("template_id", "outreach_queue")
    ]
}


class PlaybookCreate(Strict):
    model_config = ConfigDict(json_schema_extra=_DOES_SOMETHING)

    name: _Name
    trigger_stages: _Stages
    min_predicted_clv: _Clv | None = None
    lookback_days: _Lookback = 365
    holdout_share: _HoldoutShare = 0.1
    # The holdout's seed; a random one when absent.
    seed: _Seed | None = None
    template_id: _Template | None = None
    outreach_queue: _Queue | None = None
    enabled: StrictBool = True

    @model_validator(mode="after")
    def _does_something(self) -> PlaybookCreate:
        if self.template_id is None and self.outreach_queue is None:
            raise ValueError("give `template_id` (a retention offer), `outreach_queue` (an outreach ticket) or both")
        return self


class PlaybookUpdate(Strict):
    """The fields to change; `null` removes an optional one (the threshold, the offer, the queue).
    A change that would leave the playbook neither an offer nor an outreach queue is 409
    (it depends on what is stored). The seed stays: changing it would move customers between
    the groups."""

    # These may be left out (kept as they are) but not null (the service answers a null 422).
    name: _Name | SkipJsonSchema[None] = Field(None, json_schema_extra=_no_default)
    trigger_stages: _Stages | SkipJsonSchema[None] = Field(None, json_schema_extra=_no_default)
    lookback_days: _Lookback | SkipJsonSchema[None] = Field(None, json_schema_extra=_no_default)
    holdout_share: _HoldoutShare | SkipJsonSchema[None] = Field(None, json_schema_extra=_no_default)
    enabled: StrictBool | SkipJsonSchema[None] = Field(None, json_schema_extra=_no_default)
    # These may be null: no threshold, no offer, no outreach.
    min_predicted_clv: _Clv | None = None
    template_id: _Template | None = None
    outreach_queue: _Queue | None = None

    REQUIRED: ClassVar[tuple[str, ...]] = ("name", "trigger_stages", "lookback_days", "holdout_share", "enabled")


class PlaybookOut(BaseModel):
    id: str
    name: str
    trigger_stages: list[TriggerStage]
    min_predicted_clv: float | None
    lookback_days: int
    holdout_share: float
    # sha256(f"{seed}:{customer_id}") below the holdout share puts a customer in the holdout.
    seed: str
    template_id: str | None
    outreach_queue: str | None
    enabled: bool
    # When it was last enabled: only stage transitions after it fire the playbook.
    enabled_at: datetime | None
    created_at: datetime
    updated_at: datetime


class PlaybookPage(Page[PlaybookOut]):
    pass


class EntryOut(BaseModel):
    id: str
    playbook_id: str
    customer_id: str
    group: Group
    # The stage whose entry fired the playbook, and when the customer entered it.
    stage: Stage
    entered_at: datetime
    # What a treatment customer was given: the offer asked of value, the outreach ticket's queue.
    template_id: str | None
    outreach_queue: str | None


class EntryPage(Page[EntryOut]):
    pass
