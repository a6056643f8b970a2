"""The event catalog: every subject the suite publishes and its payload schema.

Payloads are a public contract for partner systems. Each is versioned through the
CloudEvents `dataschema` attribute; a payload changes only by adding optional
fields, and a breaking change gets a new version. `docs/events.md` is generated
from this module (and from the services' consumer declarations); a test fails
when it is stale.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Contract:
    subject: str
    producer: str
    model: type[Payload]
    description: str
    version: int = 1

    @property
    def dataschema(self) -> str:
        return f"urn:valuechain:event:{self.subject}:v{self.version}"


CATALOG: dict[str, Contract] = {}


def contract(subject: str, producer: str, description: str, version: int = 1):
    def register(model: type[Payload]) -> type[Payload]:
        CATALOG[subject] = Contract(subject, producer, model, description, version)
        return model

    return register


# --- identify ---------------------------------------------------------------


@contract("crm.identify.customer.created", "identify", "A customer was created.")
class CustomerCreated(Payload):
    id: str
    email: str | None = None
    external_id: str | None = None
    name: str | None = None
    phone: str | None = None
    referred_by: str | None = None
    created_at: datetime


@contract("crm.identify.customer.updated", "identify", "Fields of a customer changed; `changes` holds the new values.")
class CustomerUpdated(Payload):
    id: str
    changes: dict[str, str | None]
    updated_at: datetime


@contract(
    "crm.identify.transaction.recorded",
    "identify",
    "A purchase was recorded; `purchase_count` is the customer's number of transactions including this one.",
)
class TransactionRecorded(Payload):
    id: str
    customer_id: str
    amount: str
    currency: str
    occurred_at: datetime
    external_id: str | None = None
    purchase_count: int
    margin: str | None = None
    cost: str | None = None
    # The amount in the portfolio's reporting currency: the only amounts a consumer may add
    # up (amounts in `currency` differ from purchase to purchase). Null from older producers.
    reporting_amount: str | None = None
    reporting_currency: str | None = None


class TransactionCorrection(Payload):
    """What a refund and a void both say of the purchase they correct (not a contract itself)."""

    transaction_id: str
    customer_id: str
    amount: str
    currency: str
    reporting_amount: str | None = None
    reporting_currency: str | None = None
    refunded_amount: str | None = None
    reason: str


@contract(
    "crm.identify.transaction.refunded",
    "identify",
    "Money was given back on a purchase: it lowers revenue, CLV, campaign revenue and loyalty points "
    "(by `reporting_amount`), not purchase counts; `refunded_amount` is the purchase's total refunded so far.",
)
class TransactionRefunded(TransactionCorrection):
    refund_id: str
    occurred_at: datetime
    external_id: str | None = None


@contract(
    "crm.identify.transaction.voided",
    "identify",
    "A purchase was recorded in error: it leaves purchase counts, revenue and scores. `purchase_count` "
    "is the customer's number of transactions without it; lifecycle stages do not move back.",
)
class TransactionVoided(TransactionCorrection):
    voided_at: datetime
    purchase_count: int


@contract(
    "crm.identify.customer.merged",
    "identify",
    "Duplicate customers were merged: `merged_ids` no longer exist on their own; everything "
    "about them now belongs to `survivor_id`. Every service moves its data to the survivor.",
)
class CustomerMerged(Payload):
    survivor_id: str
    merged_ids: list[str]
    merged_at: datetime
    # The survivor's purchase count after the merge (its own plus the merged customers').
    purchase_count: int | None = None


ClvBand = Literal["low", "medium", "high", "top"]


@contract(
    "crm.identify.customer.scored",
    "identify",
    "A customer's RFM segment, strategically significant kinds or CLV band changed: by a refit "
    "(one event per changed customer, bundled, before `crm.identify.model.fitted`) or by a re-score "
    "after a purchase, costs or a referral. Carries the new scores and, when it was scored before, "
    "what it was; a customer whose segment, kinds and band stay as they were gets no event.",
)
class CustomerScored(Payload):
    customer_id: str
    model_version: int | None
    segment: str | None
    recency: int | None = None
    frequency: int | None = None
    monetary: int | None = None
    historic_clv: float | None = None
    predicted_clv: float | None = None
    probability_alive: float | None = None
    expected_purchases: float | None = None
    kinds: list[str]
    scored_at: datetime
    # Predicted CLV in fixed bands (VALUECHAIN_IDENTIFY_CLV_BAND_EDGES); null when it has none.
    clv_band: ClvBand | None = None
    # The values before this change; null for a customer scored for the first time.
    previous_segment: str | None = None
    previous_kinds: list[str] | None = None
    previous_clv_band: ClvBand | None = None


@contract(
    "crm.identify.model.fitted",
    "identify",
    "A refit produced a new portfolio model version and re-scored every customer with it; "
    "the customers whose segment, kinds or CLV band changed were emitted before it as "
    "crm.identify.customer.scored (the other scores are read from identify).",
)
class ModelFitted(Payload):
    version: int
    time_unit: Literal["day", "week"]
    calibration_end: date | None = None
    customers_scored: int
    fitted_at: datetime
    bgnbd: dict[str, float]
    pareto_nbd: dict[str, float] | None  # null when its fit found no optimum (scores use BG/NBD)
    gamma_gamma: dict[str, float]


# --- lifecycle --------------------------------------------------------------

Stage = Literal["prospect", "new", "active", "loyal", "at_risk", "churned", "won_back"]


@contract("crm.lifecycle.stage.changed", "lifecycle", "A customer moved from one lifecycle stage to another.")
class StageChanged(Payload):
    customer_id: str
    from_stage: Stage | None
    to_stage: Stage
    at: datetime
    cause_event_id: str


# --- engage -----------------------------------------------------------------


@contract("crm.engage.interaction.logged", "engage", "A two-way interaction with a customer was logged.")
class InteractionLogged(Payload):
    id: str
    customer_id: str
    channel: str
    direction: Literal["inbound", "outbound"]
    summary: str
    occurred_at: datetime


# --- network ----------------------------------------------------------------


@contract("crm.network.stakeholder.created", "network", "A partner, supplier, employee or investor was added.")
class StakeholderCreated(Payload):
    id: str
    kind: Literal["partner", "supplier", "employee", "investor"]
    name: str
    email: str | None = None
    created_at: datetime


@contract("crm.network.referral.recorded", "network", "A customer referred another customer.")
class ReferralRecorded(Payload):
    id: str
    referrer_id: str
    referred_id: str
    recorded_at: datetime


# --- value ------------------------------------------------------------------


@contract("crm.value.offer.issued", "value", "An offer was issued to a customer (by a user, or a welcome offer by value itself).")
class OfferIssued(Payload):
    id: str
    customer_id: str
    kind: str
    title: str
    discount_percent: str | None = None
    expires_at: datetime | None = None
    issued_at: datetime


@contract("crm.value.offer.redeemed", "value", "A customer redeemed an offer.")
class OfferRedeemed(Payload):
    id: str
    customer_id: str
    kind: str
    redeemed_at: datetime


# --- dead letters -----------------------------------------------------------


class DeadLetter(Payload):
    consumer: str
    event_id: str | None
    event_type: str | None
    error: str
    deliveries: int
    failed_at: datetime
    raw: str


DLQ_SUBJECT_PREFIX = "crm.dlq."


def dlq_subject(service: str) -> str:
    return f"{DLQ_SUBJECT_PREFIX}{service}"


for _service in ("identify", "engage", "network", "value", "lifecycle"):
    contract(
        dlq_subject(_service),
        _service,
        f"An event that {_service}'s consumers kept failing on, parked for operators (also listed at {_service}'s /v1/ops/dead-letters).",
    )(DeadLetter)
