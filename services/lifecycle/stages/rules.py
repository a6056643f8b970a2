"""The stage rules and the churn risk, as SQL: what the sweep evaluates for a whole chunk of
customers in one statement.

A rule set is an ordered list of rules. A rule moves a customer from one of its `from`
stages to its `to` stage when every condition of its `when` holds; the first rule that
holds for the customer's stage wins. Each field a condition names is one SQL expression
over the customer's stage row (`customer_stages`), its profile (`customer_profiles`:
identify's scores, purchase dates) and its signals (`customer_signals`: feedback,
escalations), so the database evaluates every rule for every customer of a chunk and
answers only the customers whose stage or churn band changes (set-based: no Python
object per customer per rule).

Times become day numbers on either database (`julianday` on SQLite, epoch days on
PostgreSQL): a difference of two is days.

The churn risk (docs/lifecycle.md, "Churn risk") combines its drivers as independent
causes (a noisy-OR): risk = 1 - (1 - alive)(1 - recency)(1 - detractor)(1 - effort)(1 - escalation),
with alive = 1 - probability alive (0 until identify scored the customer), recency =
(recency ratio - 1) / 3 clamped to [0, 1] (buying on time is 0, four expected gaps
without buying is 1), and a fixed weight for a detractor answer (0.3), a high-effort
answer (0.2) and an escalated ticket (0.3) within the signal window. Only customers
who bought have a risk.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Float, Select, Table, and_, case, cast, func, literal, null, select
from sqlalchemy.sql.elements import ColumnElement

# --- fields ----------------------------------------------------------------------------

Kind = Literal["number", "flag"]

# Every field a rule may name, and what it is (docs/lifecycle.md lists them).
FIELDS: dict[str, tuple[Kind, str]] = {
    "purchases": ("number", "purchases (a void lowers it, a refund does not)"),
    "tenure_days": ("number", "days since the first purchase"),
    "days_since_last_purchase": ("number", "days since the last purchase"),
    "expected_days_between_purchases": (
        "number",
        "the customer's own: (last - first) / (purchases - 1) days; the default for one purchase",
    ),
    "recency_ratio": ("number", "days since the last purchase / expected days between purchases"),
    "days_in_stage": ("number", "days since the customer entered its stage"),
    "probability_alive": ("number", "identify's probability that the customer still buys (null until scored)"),
    "expected_purchases": ("number", "identify's expected purchases in its horizon (null until scored)"),
    "predicted_clv": ("number", "identify's predicted CLV (null until scored)"),
    "churn_risk": ("number", "the churn risk, 0 to 1"),
    "detractor": ("flag", "an NPS answer of 0-6 since the customer entered its stage, within the signal window"),
    "high_effort": ("flag", "a high-effort answer (effort 4-5, CES 1-2) since entering the stage, within the window"),
    "escalated": ("flag", "an escalated ticket since the customer entered its stage, within the signal window"),
}
FieldName = Literal[
    "purchases",
    "tenure_days",
    "days_since_last_purchase",
    "expected_days_between_purchases",
    "recency_ratio",
    "days_in_stage",
    "probability_alive",
    "expected_purchases",
    "predicted_clv",
    "churn_risk",
    "detractor",
    "high_effort",
    "escalated",
]
Operator = Literal["<", "<=", ">", ">=", "==", "!="]
FLAG_OPERATORS = ("==", "!=")

# The moves a rule may make; the purchase steps (prospect → new → active, and renewed
# buying: at_risk → active, churned → won_back) are the purchase consumer's, not rules'.
ALLOWED: dict[str, tuple[str, ...]] = {
    "new": ("active", "at_risk", "churned"),
    "active": ("loyal", "at_risk", "churned"),
    "loyal": ("at_risk", "churned"),
    "at_risk": ("churned", "active", "loyal"),
    "churned": ("won_back",),
    "won_back": ("active", "loyal", "at_risk", "churned"),
}

DEFAULT_RULES: list[dict[str, Any]] = [
    {
        "name": "gone_quiet",
        "from": ["new", "active", "loyal", "won_back"],
        "to": "at_risk",
        "when": [{"field": "recency_ratio", "op": ">=", "value": 2}],
    },
    {
        "name": "unlikely_alive",
        "from": ["active", "loyal", "won_back"],
        "to": "at_risk",
        "when": [{"field": "probability_alive", "op": "<", "value": 0.3}],
    },
    {
        "name": "detractor",
        "from": ["active", "loyal", "won_back"],
        "to": "at_risk",
        "when": [{"field": "detractor", "op": "==", "value": True}],
    },
    {
        "name": "high_effort",
        "from": ["active", "loyal", "won_back"],
        "to": "at_risk",
        "when": [{"field": "high_effort", "op": "==", "value": True}],
    },
    {
        "name": "escalated",
        "from": ["new", "active", "loyal", "won_back"],
        "to": "at_risk",
        "when": [{"field": "escalated", "op": "==", "value": True}],
    },
    {
        "name": "lapsed",
        "from": ["at_risk"],
        "to": "churned",
        "when": [{"field": "recency_ratio", "op": ">=", "value": 4}],
    },
    {
        "name": "loyal",
        "from": ["active", "won_back"],
        "to": "loyal",
        "when": [{"field": "purchases", "op": ">=", "value": 4}, {"field": "tenure_days", "op": ">=", "value": 180}],
    },
]


def problems(rules: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """What is impossible in a rule set the schema let through: (field path, message).

    The schema already refused unknown fields, operators and stages; here: a flag compared
    with a number or ordered, a number compared with true/false, a move the stage machine
    does not make, two rules of one name."""

    found: list[tuple[str, str]] = []
    names: set[str] = set()
    for i, rule in enumerate(rules):
        at = f"body.rules.{i}"
        if rule["name"] in names:
            found.append((f"{at}.name", f"two rules are named {rule['name']!r}"))
        names.add(rule["name"])
        for stage in rule["from"]:
            if rule["to"] not in ALLOWED.get(stage, ()):
                allowed = ", ".join(ALLOWED.get(stage, ())) or "nowhere (the purchase steps move it)"
                found.append(
                    (f"{at}.to", f"a rule cannot move {stage} to {rule['to']}: from {stage} a rule moves to {allowed}")
                )
        for j, condition in enumerate(rule["when"]):
            kind = FIELDS[condition["field"]][0]
            value = condition["value"]
            if kind == "flag":
                if not isinstance(value, bool):
                    found.append((f"{at}.when.{j}.value", f"{condition['field']} is true or false, not {value!r}"))
                if condition["op"] not in FLAG_OPERATORS:
                    found.append((f"{at}.when.{j}.op", f"{condition['field']} is true or false: use == or !="))
            elif isinstance(value, bool):
                found.append((f"{at}.when.{j}.value", f"{condition['field']} is a number, not {value!r}"))
    return found


# --- SQL ---------------------------------------------------------------------------------


def day_number(column: Any, dialect: str) -> ColumnElement[Any]:
    """A stored time as a number of days (fractional) on the dialect."""

    if dialect == "sqlite":
        return func.julianday(column)
    return cast(func.extract("epoch", column), Float) / 86400.0


def day_number_of(at: datetime, dialect: str) -> float:
    """`day_number` of a Python time, for parameters."""

    days = at.timestamp() / 86400.0
    return days + 2440587.5 if dialect == "sqlite" else days


RISK_BANDS = ((0.7, "high"), (0.3, "medium"))
RISK_STEP = 0.05  # a stored risk is rewritten when it moved this much, or crossed a band
DETRACTOR_WEIGHT, EFFORT_WEIGHT, ESCALATION_WEIGHT = 0.3, 0.2, 0.3


def _clamp01(value: ColumnElement[Any]) -> ColumnElement[float]:
    return case((value < 0, literal(0.0)), (value > 1, literal(1.0)), else_=value)


@dataclass(frozen=True)
class Frame:
    """The chunk's tables and the evaluation's constants, as SQL.

    Two steps: `base` reads each customer's row once, turning every time into days
    (the costly part: a date parsed per use), and is materialized; `columns` computes
    the fields, the risk and the rules from it with plain arithmetic."""

    stages: Table
    profiles: Table
    signals: Table
    dialect: str
    now: datetime
    default_interval_days: float
    signal_window_days: float

    def base(self) -> Select[Any]:
        s, p, g = self.stages.c, self.profiles.c, self.signals.c
        today = literal(day_number_of(self.now, self.dialect), Float)
        window_start = literal(day_number_of(self.now, self.dialect) - self.signal_window_days, Float)
        since = day_number(s.stage_since, self.dialect)
        first, last = day_number(p.first_purchase_at, self.dialect), day_number(p.last_purchase_at, self.dialect)

        def flag(held: ColumnElement[bool]) -> ColumnElement[int]:
            return case((held, literal(1)), else_=literal(0))

        signals: list[ColumnElement[Any]] = []
        for name, column in (
            ("detractor", g.detractor_at),
            ("high_effort", g.high_effort_at),
            ("escalated", g.escalated_at),
        ):
            at = day_number(column, self.dialect)
            recent = and_(column.is_not(None), at >= window_start)
            signals.append(flag(and_(recent, at >= since)).label(name))
            signals.append(flag(recent).label(f"{name}_recent"))
        joined = self.stages.outerjoin(self.profiles, p.customer_id == s.customer_id).outerjoin(
            self.signals, g.customer_id == s.customer_id
        )
        return select(
            s.customer_id,
            s.stage,
            s.churn_risk.label("stored_risk"),
            s.churn_band.label("stored_band"),
            s.purchase_count.label("purchases"),
            p.purchases.label("profile_purchases"),
            p.probability_alive,
            p.expected_purchases,
            p.predicted_clv,
            (today - first).label("tenure_days"),
            (today - last).label("days_since_last_purchase"),
            (last - first).label("span_days"),
            (today - since).label("days_in_stage"),
            *signals,
        ).select_from(joined)

    def columns(self, b: Any, rules: list[dict[str, Any]]) -> list[ColumnElement[Any]]:
        """Over `base`'s columns `b`: the customer, its stage, the index of the rule that moves
        it (null: none), its risk and band, every field (for the reasons), the drivers."""

        expected_gap = case(
            (and_(b.profile_purchases > 1, b.span_days >= 1), b.span_days / (b.profile_purchases - 1)),
            else_=literal(self.default_interval_days, Float),
        )
        recency_ratio = b.days_since_last_purchase / expected_gap
        drivers = {
            "alive": case((b.probability_alive.is_(None), literal(0.0)), else_=1 - b.probability_alive),
            "recency": case((recency_ratio.is_(None), literal(0.0)), else_=_clamp01((recency_ratio - 1) / 3.0)),
            "detractor": b.detractor_recent * DETRACTOR_WEIGHT,
            "high_effort": b.high_effort_recent * EFFORT_WEIGHT,
            "escalation": b.escalated_recent * ESCALATION_WEIGHT,
        }
        survive: ColumnElement[Any] = literal(1.0, Float)
        for driver in drivers.values():
            survive = survive * (1 - driver)
        risk = case((b.purchases > 0, 1 - survive), else_=null())
        fields: dict[str, ColumnElement[Any]] = {
            "purchases": b.purchases,
            "tenure_days": b.tenure_days,
            "days_since_last_purchase": b.days_since_last_purchase,
            "expected_days_between_purchases": expected_gap,
            "recency_ratio": recency_ratio,
            "days_in_stage": b.days_in_stage,
            "probability_alive": b.probability_alive,
            "expected_purchases": b.expected_purchases,
            "predicted_clv": b.predicted_clv,
            "churn_risk": risk,
            "detractor": b.detractor,
            "high_effort": b.high_effort,
            "escalated": b.escalated,
        }
        whens = []
        for index, rule in enumerate(rules):
            held: list[ColumnElement[bool]] = [b.stage.in_(rule["from"])]
            for condition in rule["when"]:
                held.append(_compare(fields[condition["field"]], condition["op"], condition["value"]))
            whens.append((and_(*held), literal(index)))
        band = case(*((risk >= bound, literal(name)) for bound, name in RISK_BANDS), (risk.is_not(None), "low"))
        return [
            b.customer_id,
            b.stage,
            b.stored_risk,
            b.stored_band,
            case(*whens, else_=null()).label("rule_index") if whens else null().label("rule_index"),
            band.label("band"),
            *(value.label(name) for name, value in fields.items()),
            *(value.label(f"driver_{name}") for name, value in drivers.items()),
        ]


def _compare(expression: ColumnElement[Any], op: str, value: Any) -> ColumnElement[bool]:
    if isinstance(value, bool):
        value = 1 if value else 0
    right = literal(value)
    return {
        "<": expression < right,
        "<=": expression <= right,
        ">": expression > right,
        ">=": expression >= right,
        "==": expression == right,
        "!=": expression != right,
    }[op]


def band_of(risk: float | None) -> str | None:
    if risk is None:
        return None
    return next((name for bound, name in RISK_BANDS if risk >= bound), "low")


DRIVERS = ("alive", "recency", "detractor", "high_effort", "escalation")


def drivers_of(row: Any) -> list[dict[str, Any]]:
    """A customer's risk drivers, most first: each its weight in the risk and the value behind it."""

    values = {
        "alive": row["probability_alive"],
        "recency": row["recency_ratio"],
        "detractor": None,
        "high_effort": None,
        "escalation": None,
    }
    found = [
        {"driver": name, "weight": round(float(row[f"driver_{name}"]), 4), "value": _rounded(values[name])}
        for name in DRIVERS
        if row[f"driver_{name}"]
    ]
    return sorted(found, key=lambda d: -d["weight"])


def _rounded(value: Any) -> Any:
    return round(float(value), 4) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def reason_values(rule: dict[str, Any], row: Any) -> dict[str, Any]:
    """The values of the fields the rule's conditions name, as the customer had them."""

    values: dict[str, Any] = {}
    for condition in rule["when"]:
        name = condition["field"]
        value = row[name]
        values[name] = bool(value) if FIELDS[name][0] == "flag" else _rounded(value)
    return values
