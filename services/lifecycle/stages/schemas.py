"""lifecycle's response bodies."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, StrictBool, WithJsonSchema

from services.lifecycle.stages.rules import FieldName, Operator
from shared.events.contracts import ChurnBand, Stage
from shared.http.pagination import Page
from shared.http.validation import Strict


class Transition(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: str | None = Field(alias="from", serialization_alias="from")
    to: str
    at: datetime
    event_id: str = Field(description="The event that moved the customer, or the sweep's id")
    rule: str | None = Field(
        description="Why: a rule of the rule set, or a purchase step (created, first_purchase, repeat_purchase, "
        "renewed_buying, merge)"
    )
    rule_version: int | None = Field(description="The rule set's version (null for the purchase steps)")
    values: dict[str, Any] = Field(description="The values the rule saw, by field")
    historical: bool = Field(description="Recorded by the first sweep over imported history: no playbook fires")


class Driver(BaseModel):
    driver: str = Field(description="alive, recency, detractor, high_effort or escalation")
    weight: float = Field(description="Its share in the risk, 0 to 1 (the risk is 1 - the product of 1 - each)")
    value: Any = Field(None, description="What it saw: the probability alive, the recency ratio")


class ChurnRisk(BaseModel):
    risk: float
    band: ChurnBand
    clv_at_risk: float | None = Field(description="Predicted CLV × risk (null until identify scored the customer)")
    drivers: list[Driver]
    at: datetime | None = Field(description="When a sweep last stored it (it is rewritten when it moves 0.05)")


class LifecycleOut(BaseModel):
    customer_id: str
    stage: str | None
    stage_since: datetime | None
    purchase_count: int
    churn_risk: ChurnRisk | None = Field(description="As the last sweep left it; null before a sweep or a purchase")
    history: list[Transition]


class CustomerInStage(BaseModel):
    customer_id: str
    stage: Stage
    since: datetime | None = Field(description="When the customer entered this stage (its latest transition to it)")


class CustomerInStagePage(Page[CustomerInStage]):
    pass


# --- rules -------------------------------------------------------------------------------------


def _number_or_flag(value: Any) -> Any:
    """A finite number, or true/false: one check, so a wrong value is one error naming `value`."""

    if isinstance(value, bool) or (isinstance(value, (int, float)) and math.isfinite(value) and abs(value) <= LIMIT):
        return value
    raise ValueError(f"must be a number between -{LIMIT:.0e} and {LIMIT:.0e}, or true/false for a flag field")


LIMIT = 1e15  # well inside a 64-bit integer and a double's exact integers, on either database


ConditionValue = Annotated[
    bool | int | float,
    PlainValidator(_number_or_flag),
    WithJsonSchema({"anyOf": [{"type": "number"}, {"type": "boolean"}]}),
]


class Condition(Strict):
    field: FieldName = Field(description="A field of the customer the rules see (docs/lifecycle.md lists them)")
    op: Operator
    value: ConditionValue = Field(description="A number, or true/false for a flag field")


# Lower-case words joined by underscores: it names the transition in histories and events.
RuleName = Annotated[str, Field(min_length=1, max_length=60, pattern=r"^[a-z][a-z0-9_]*$")]


class Rule(Strict):
    model_config = ConfigDict(populate_by_name=True)

    name: RuleName
    from_: list[Stage] = Field(alias="from", min_length=1, description="The stages the rule moves customers from")
    to: Stage
    when: list[Condition] = Field(min_length=1, max_length=20, description="Every condition must hold")


class RuleSetIn(Strict):
    rules: list[Rule] = Field(max_length=50, description="In order: the first rule that holds for a customer wins")


class RuleOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    name: str
    from_: list[str] = Field(alias="from", serialization_alias="from")
    to: str
    when: list[dict[str, Any]]


class SweepOut(BaseModel):
    sweep_id: str
    trigger: str = Field(description="schedule, request (POST /v1/lifecycle/sweeps) or rules (a rule change)")
    status: str = Field(description="running, done or failed")
    rule_version: int
    historical: bool
    started_at: datetime
    finished_at: datetime | None = None
    evaluated: int = Field(description="Customers evaluated")
    transitions: int = Field(description="Stage transitions made")
    risk_changes: int = Field(description="Churn risks rewritten (moved 0.05 or crossed a band)")
    duration_s: float | None = None
    error: str | None = None


class SweepPage(Page[SweepOut]):
    pass


class RuleSetOut(BaseModel):
    version: int
    created_at: datetime | None = Field(description="Null for the built-in defaults (version 1)")
    rules: list[RuleOut]


class RuleSetChanged(RuleSetOut):
    sweep: SweepOut | None = Field(
        description="The sweep that re-evaluated every customer; null when another sweep held the lease (the "
        "next sweep applies the new version)"
    )


class RuleSetPage(Page[RuleSetOut]):
    pass


class SweepIn(Strict):
    historical: StrictBool | None = Field(
        None,
        description="Record this sweep's transitions as history (no playbooks fire): after importing old data. "
        "Absent: only the first sweep ever is history",
    )


# --- at risk -----------------------------------------------------------------------------------


class AtRiskCustomer(BaseModel):
    customer_id: str
    stage: Stage
    churn_risk: float
    band: ChurnBand
    predicted_clv: float | None
    clv_at_risk: float
    drivers: list[Driver]
    at: datetime | None


class AtRiskPage(Page[AtRiskCustomer]):
    pass
