"""The event catalog: every subject the suite publishes and its payload schema.

Payloads are a public contract for partner systems. Each is versioned through the
CloudEvents `dataschema` attribute, the URL of the version's JSON Schema as the gateway
serves it (`<VALUECHAIN_PUBLIC_BASE_URL>/v1/schemas/<type>/v<version>.json`); a payload
changes only by adding optional fields, and a breaking change is a new type
(docs/partners.md, "Public contracts and versioning"). `docs/events.md` is generated
from this module (and from the services' consumer declarations); a test fails
when it is stale.

Besides its schema a contract declares what consumers need to know of it:

* `customers`: the payload fields naming the customers the event is about (its
  `subject` first), and `other_customers`: fields naming other customers it mentions.
  The consumer framework (shared/events/consumer.py) maps a merged id in any of them to its
  survivor before a handler sees the event; engage's timeline shows it to `customers`.
* `at`: the payload field holding when it happened (else the envelope's time).
* personal fields (names, emails, phones, free text, addresses) carry `Personal(kind)`
  (shared/privacy/classification.py) and are nullable: an export shows them, an erasure
  nulls them in outboxes, dead letters and read models, and deliveries to partners without
  `pii:read` carry them as null (docs/privacy.md).
* a `timeline_summary(customer_id)` method on the payload: the one line engage's
  customer timeline shows for it. An event without one stays off the timeline.

Consumers read a payload with the contract's tolerant `reader` (`Contract.read`):
unknown fields are ignored, an enum value it does not know arrives as its text
(never dead-lettered: the handler skips or records it, shared/decisions.md),
datetimes arrive aware in UTC and amounts as `Decimal`.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Generic, Literal, TypeVar, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema, create_model

from shared.events.envelope import CloudEvent, Event
from shared.privacy.classification import ERASED, Personal
from shared.settings import DEFAULT_PUBLIC_BASE_URL


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")


# A decimal amount, written as a JSON string (its schema stays `string`): read as `Decimal`.
DecimalText = Annotated[Decimal, WithJsonSchema({"type": "string"})]

P = TypeVar("P", bound=Payload)


@dataclass(frozen=True)
class Contract(Generic[P]):
    subject: str
    producer: str
    model: type[P]
    description: str
    version: int = 1
    customers: tuple[str, ...] = ()
    other_customers: tuple[str, ...] = ()
    at: str | None = None
    reader: type[P] = field(init=False, repr=False, compare=False)
    event_model: type[Event[P]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        reader = _tolerant_reader(self.model)
        event_model = type(
            f"{self.model.__name__}Event",
            (Event[reader],),  # type: ignore[valid-type]
            {
                "__module__": self.model.__module__,
                "customers": self.customers,
                "other_customers": self.other_customers,
                "at_field": self.at,
            },
        )
        object.__setattr__(self, "reader", reader)
        object.__setattr__(self, "event_model", event_model)

    @property
    def schema_path(self) -> str:
        """Where the gateway serves this version's public JSON Schema (shared/events/public.py)."""

        return f"/v1/schemas/{self.subject}/v{self.version}.json"

    def dataschema_at(self, base_url: str) -> str:
        """The CloudEvents `dataschema` (an absolute URI) of this version, under the
        gateway's public address `base_url` (VALUECHAIN_PUBLIC_BASE_URL, no trailing slash)."""

        return base_url + self.schema_path

    @property
    def dataschema(self) -> str:
        """`dataschema_at` the default public address (tools and tests; `emit` uses the deployment's)."""

        return self.dataschema_at(DEFAULT_PUBLIC_BASE_URL)

    @property
    def on_timeline(self) -> bool:
        """Whether the payload declares the line engage's customer timeline shows for it."""

        return callable(getattr(self.model, "timeline_summary", None))

    def read(self, event: CloudEvent) -> Event[P]:
        """`event` with its payload parsed by the tolerant reader (a pydantic
        ValidationError when it is really broken: a required field missing, a wrong type)."""

        return self.event_model.model_validate(event.model_dump())

    def read_json(self, raw: bytes) -> Event[P]:
        """An event's JSON parsed in one pass, envelope and payload (consumers use this)."""

        return self.event_model.model_validate_json(raw)


CATALOG: dict[str, Contract[Any]] = {}


def contract(
    subject: str,
    producer: str,
    description: str,
    version: int = 1,
    *,
    customers: tuple[str, ...] = (),
    other_customers: tuple[str, ...] = (),
    at: str | None = None,
) -> Callable[[type[P]], type[P]]:
    def register(model: type[P]) -> type[P]:
        unknown = {name for name in (*customers, *other_customers, at) if name} - set(model.model_fields)
        assert not unknown, f"{subject}: no such payload fields {unknown}"
        CATALOG[subject] = Contract(subject, producer, model, description, version, customers, other_customers, at)
        return model

    return register


# --- reading payloads ---------------------------------------------------------------


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_UTCDateTime = Annotated[datetime, AfterValidator(_utc)]


def _tolerant(annotation: Any) -> Any:
    """`annotation` as a tolerant reader takes it: an enum (Literal) as any text, a datetime aware in UTC."""

    origin = get_origin(annotation)
    if origin is Literal:
        return str
    if origin in (Union, types.UnionType):
        return Union[tuple(_tolerant(arg) for arg in get_args(annotation))]  # noqa: UP007 - built at run time from a tuple
    if origin is list:
        return list[_tolerant(get_args(annotation)[0])]  # type: ignore[misc]
    if annotation is datetime:
        return _UTCDateTime
    return annotation


def _tolerant_reader(model: type[P]) -> type[P]:
    """A subclass of `model` (so handlers keep its type) that ignores unknown fields and
    unknown enum values; producers keep validating against `model` itself."""

    fields: Any = {name: (_tolerant(info.annotation), info) for name, info in model.model_fields.items()}
    reader = create_model(model.__name__, __base__=model, __module__=model.__module__, **fields)
    reader.model_config["extra"] = "ignore"
    reader.model_rebuild(force=True)
    return reader


# --- timeline lines --------------------------------------------------------------------

QUOTE_MAX = 120


def clip(text: str, limit: int) -> str:
    """`text` on one line, at most `limit` characters (an ellipsis marks a cut)."""

    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def money(amount: Decimal, currency: str) -> str:
    """An amount without its sign, in cents when that loses nothing."""

    try:
        value = abs(amount)
        cents = value.quantize(Decimal("0.01"))
    except InvalidOperation:
        return f"{amount} {currency}"
    return f"{format(cents if cents == value else value, 'f')} {currency}"


# --- identify ---------------------------------------------------------------


@contract(
    "crm.identify.customer.created",
    "identify",
    "A customer was created.",
    customers=("id",),
    other_customers=("referred_by",),
    at="created_at",
)
class CustomerCreated(Payload):
    id: str
    email: Annotated[str | None, Personal("email")] = None
    external_id: Annotated[str | None, Personal("identifier")] = None
    name: Annotated[str | None, Personal("name")] = None
    phone: Annotated[str | None, Personal("phone")] = None
    referred_by: str | None = None
    # The customer's own referral code (identify issues one to each customer; it points at a
    # person, so it is personal). Null from older producers.
    referral_code: Annotated[str | None, Personal("identifier")] = None
    created_at: datetime
    # The person's email or phone matches an erased customer's (identify's suppression
    # list): never market to them (value issues no welcome offer). Null from older producers.
    suppressed: bool | None = None

    def timeline_summary(self, customer_id: str) -> str:
        who = self.name or self.email or self.external_id
        return f"Customer created: {who}" if who else "Customer created"


@contract(
    "crm.identify.customer.updated",
    "identify",
    "Fields of a customer changed; `changes` holds the new values.",
    customers=("id",),
    at="updated_at",
)
class CustomerUpdated(Payload):
    id: str
    # The new values are personal (an erasure keeps the names of the fields, nulls the values).
    changes: Annotated[dict[str, str | None], Personal("free_text")]
    updated_at: datetime

    def timeline_summary(self, customer_id: str) -> str:
        fields = sorted(self.changes)
        return f"Updated {', '.join(fields)}" if fields else "Customer updated"


@contract(
    "crm.identify.transaction.recorded",
    "identify",
    "A purchase was recorded; `purchase_count` is the customer's number of transactions including this one.",
    customers=("customer_id",),
    at="occurred_at",
)
class TransactionRecorded(Payload):
    id: str
    customer_id: str
    amount: DecimalText
    currency: str
    occurred_at: datetime
    external_id: str | None = None
    purchase_count: int
    margin: DecimalText | None = None
    cost: DecimalText | None = None
    # The amount in the portfolio's reporting currency: the only amounts a consumer may add
    # up (amounts in `currency` differ from purchase to purchase). Null from older producers.
    reporting_amount: DecimalText | None = None
    reporting_currency: str | None = None

    def timeline_summary(self, customer_id: str) -> str:
        # Older producers recorded a refund as a negative purchase; refunds now have their own event.
        kind = "Refund" if self.amount.is_signed() else "Purchase"
        return f"{kind} of {money(self.amount, self.currency)}"


class TransactionCorrection(Payload):
    """What a refund and a void both say of the purchase they correct (not a contract itself)."""

    transaction_id: str
    customer_id: str
    amount: DecimalText
    currency: str
    reporting_amount: DecimalText | None = None
    reporting_currency: str | None = None
    refunded_amount: DecimalText | None = None
    reason: Annotated[str | None, Personal("free_text")]


@contract(
    "crm.identify.transaction.refunded",
    "identify",
    "Money was given back on a purchase: it lowers revenue, CLV, campaign revenue and loyalty points "
    "(by `reporting_amount`), not purchase counts; `refunded_amount` is the purchase's total refunded so far.",
    customers=("customer_id",),
    at="occurred_at",
)
class TransactionRefunded(TransactionCorrection):
    refund_id: str
    occurred_at: datetime
    external_id: str | None = None

    def timeline_summary(self, customer_id: str) -> str:
        return f"Refund of {money(self.amount, self.currency)}: {clip(self.reason or ERASED, QUOTE_MAX)}"


@contract(
    "crm.identify.transaction.voided",
    "identify",
    "A purchase was recorded in error: it leaves purchase counts, revenue and scores. `purchase_count` "
    "is the customer's number of transactions without it; lifecycle stages do not move back.",
    customers=("customer_id",),
    at="voided_at",
)
class TransactionVoided(TransactionCorrection):
    voided_at: datetime
    purchase_count: int
    # When the voided purchase happened (its `occurred_at`): lifecycle's retention analytics take
    # it out of that month's activity (issue 15). Null from older producers.
    purchased_at: datetime | None = None

    def timeline_summary(self, customer_id: str) -> str:
        return f"Purchase of {money(self.amount, self.currency)} voided: {clip(self.reason or ERASED, QUOTE_MAX)}"


@contract(
    "crm.identify.customer.merged",
    "identify",
    "Duplicate customers were merged: `merged_ids` no longer exist on their own; everything "
    "about them now belongs to `survivor_id`. Every service moves its data to the survivor.",
    at="merged_at",
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
    customers=("customer_id",),
    at="scored_at",
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
    # Expected spend per purchase (Gamma-Gamma), reporting currency: value's next best offer.
    expected_spend: float | None = None
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
    at="fitted_at",
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


@contract(
    "crm.identify.customer.erased",
    "identify",
    "A customer asked to be forgotten (GDPR Art. 17): every service deletes or anonymises the "
    "personal data it holds of `customer_id` and of the customers merged into it (`merged_ids`), "
    "keeps the non-personal facts under the id, and reports with "
    "crm.<service>.customer.erasure_applied. Carries no personal data.",
    customers=("customer_id",),
    at="requested_at",
)
class CustomerErased(Payload):
    erasure_id: str
    customer_id: str
    merged_ids: list[str]
    requested_at: datetime

    def timeline_summary(self, customer_id: str) -> str:
        # Says only that it happened: the timeline keeps the facts, never what was erased.
        return "Personal data erased"


# --- lifecycle --------------------------------------------------------------

Stage = Literal["prospect", "new", "active", "loyal", "at_risk", "churned", "won_back"]


@contract(
    "crm.lifecycle.stage.changed",
    "lifecycle",
    "A customer moved from one lifecycle stage to another.",
    customers=("customer_id",),
    at="at",
)
class StageChanged(Payload):
    customer_id: str
    from_stage: Stage | None
    to_stage: Stage
    at: datetime
    # The event that moved the customer; a sweep's id (`sweep:<id>`) when time did.
    cause_event_id: str
    # Why (issue 15): the rule that fired, its rule set's version, and the values it saw.
    rule: str | None = None
    rule_version: int | None = None
    values: dict[str, Any] = {}
    # True when the first sweep over imported history recorded the stage: playbooks never fire on it.
    historical: bool = False

    def timeline_summary(self, customer_id: str) -> str:
        if self.from_stage:
            return f"Stage {self.from_stage} → {self.to_stage}"
        return f"Entered stage {self.to_stage}"


ChurnBand = Literal["low", "medium", "high"]


@contract(
    "crm.lifecycle.churn_risk.changed",
    "lifecycle",
    "A customer's churn risk crossed a band (low < 0.3 ≤ medium < 0.7 ≤ high, docs/lifecycle.md): "
    "the risk between 0 and 1, its drivers, and the CLV at risk (predicted CLV × risk).",
    customers=("customer_id",),
    at="at",
)
class ChurnRiskChanged(Payload):
    customer_id: str
    risk: float
    band: ChurnBand
    from_band: ChurnBand | None = None
    # What pushed the risk, most first: e.g. {"driver": "recency", "weight": 0.4, "value": 180}.
    drivers: list[dict[str, Any]] = []
    clv_at_risk: float | None = None
    at: datetime

    def timeline_summary(self, customer_id: str) -> str:
        return f"Churn risk {self.band} ({self.risk:.2f})"


# --- lifecycle: playbooks (measured by value against their holdout) ---------


@contract(
    "crm.lifecycle.playbook.entered",
    "lifecycle",
    "A customer entered a playbook (a retention or win-back sequence), in its treatment group or held out: "
    "value measures the playbook's treatment against its holdout from these.",
    customers=("customer_id",),
    at="entered_at",
)
class PlaybookEntered(Payload):
    playbook_id: str
    customer_id: str
    group: Literal["treatment", "holdout"]
    entered_at: datetime
    # Issue 15: a treatment customer's outreach ticket (lifecycle's tickets open it from this event),
    # in the queue, or for the account manager when network knows one.
    outreach: bool = False
    outreach_queue: str | None = None
    outreach_assignee_id: str | None = None
    # The stage the customer entered that fired the playbook.
    stage: Stage | None = None
    # The playbook's name as configured (for the timeline and readers; the id is what counts).
    playbook_name: str | None = None

    def timeline_summary(self, customer_id: str) -> str:
        label = clip(self.playbook_name or self.playbook_id, QUOTE_MAX)
        if self.group == "holdout":
            return f"Held out of playbook {label}"
        return f"Entered playbook {label}" + (f" (outreach: {self.outreach_queue})" if self.outreach_queue else "")


@contract(
    "crm.lifecycle.playbook.offer_requested",
    "lifecycle",
    "A playbook asks value to issue an offer template's offer to a customer of its treatment group "
    "(never to the holdout); value issues it (crm.value.offer.issued names the playbook).",
    customers=("customer_id",),
    at="requested_at",
)
class PlaybookOfferRequested(Payload):
    request_id: str
    playbook_id: str
    customer_id: str
    template_id: str
    requested_at: datetime


# --- lifecycle: tickets ------------------------------------------------------


@contract(
    "crm.lifecycle.ticket.solved",
    "lifecycle",
    "A customer's ticket was solved (shared/decisions.md). engage's survey rules may send a survey after it.",
    customers=("customer_id",),
    at="solved_at",
)
class TicketSolved(Payload):
    ticket_id: str
    customer_id: str
    # The channel the ticket was handled on (a MessageChannel, or another the ticket names).
    channel: str | None = None
    solved_at: datetime

    def timeline_summary(self, customer_id: str) -> str:
        return f"Ticket {self.ticket_id} solved"


TicketStatus = Literal["new", "open", "pending", "solved", "closed"]
TicketPriority = Literal["low", "normal", "high", "urgent"]


@contract(
    "crm.lifecycle.ticket.created",
    "lifecycle",
    "A customer's after-sales ticket was opened (by staff, from a conversation, or by a playbook's outreach).",
    customers=("customer_id",),
    at="created_at",
)
class TicketCreated(Payload):
    ticket_id: str
    customer_id: str
    channel: str | None = None
    category: str | None = None
    priority: TicketPriority
    # Written by people: free text.
    subject: Annotated[str | None, Personal("free_text")] = None
    assignee_id: str | None = None
    queue: str | None = None
    conversation_id: str | None = None
    # A playbook's outreach ticket names it.
    playbook_id: str | None = None
    created_at: datetime

    def timeline_summary(self, customer_id: str) -> str:
        return f"Ticket opened: {clip(self.subject or ERASED, QUOTE_MAX)}"


@contract(
    "crm.lifecycle.ticket.status_changed",
    "lifecycle",
    "A ticket moved between statuses (new, open, pending, solved, closed; a reopen goes back to open).",
    customers=("customer_id",),
    at="changed_at",
)
class TicketStatusChanged(Payload):
    ticket_id: str
    customer_id: str
    from_status: TicketStatus
    to_status: TicketStatus
    changed_at: datetime


@contract(
    "crm.lifecycle.ticket.sla_breached",
    "lifecycle",
    "A ticket missed an SLA target (first response or resolution) in business time; it is escalated.",
    customers=("customer_id",),
    at="breached_at",
)
class TicketSlaBreached(Payload):
    ticket_id: str
    customer_id: str
    target: Literal["first_response", "resolution"]
    policy_id: str | None = None
    due_at: datetime
    breached_at: datetime

    def timeline_summary(self, customer_id: str) -> str:
        return f"Ticket {self.ticket_id} missed its {self.target.replace('_', ' ')} target"


@contract(
    "crm.lifecycle.ticket.escalated",
    "lifecycle",
    "A ticket was escalated (an SLA breach, or by staff): lifecycle's stage rules may count it.",
    customers=("customer_id",),
    at="escalated_at",
)
class TicketEscalated(Payload):
    ticket_id: str
    customer_id: str
    reason: str
    escalated_at: datetime


@contract(
    "crm.lifecycle.reply.requested",
    "lifecycle",
    "A public comment on a ticket that the customer should get: engage sends it as a service email "
    "in the ticket's conversation (or a new one) and reports a refusal as crm.engage.delivery.reported.",
    customers=("customer_id",),
    at="requested_at",
)
class TicketReplyRequested(Payload):
    request_id: str
    ticket_id: str
    customer_id: str
    # engage's conversation the ticket links to; none: engage opens one for the message.
    conversation_id: str | None = None
    subject: Annotated[str | None, Personal("free_text")] = None
    body: Annotated[str | None, Personal("free_text")] = None
    # The employee stakeholder who wrote it.
    author_id: str | None = None
    requested_at: datetime


@contract(
    "crm.lifecycle.service_cost.recorded",
    "lifecycle",
    "What serving a customer on a ticket cost: handling minutes × the configured cost rate, in the "
    "reporting currency. identify subtracts service costs in the customer's lifetime value.",
    customers=("customer_id",),
    at="recorded_at",
)
class ServiceCostRecorded(Payload):
    cost_id: str
    customer_id: str
    ticket_id: str | None = None
    minutes: float
    reporting_amount: DecimalText
    reporting_currency: str
    recorded_at: datetime


# --- lifecycle: loyalty --------------------------------------------------------


@contract(
    "crm.lifecycle.loyalty.points_changed",
    "lifecycle",
    "An entry in a customer's loyalty points ledger (append-only): earned on a purchase, credited by a "
    "points offer, redeemed, taken back by a refund, or expired; with the balance after it.",
    customers=("customer_id",),
    at="at",
)
class LoyaltyPointsChanged(Payload):
    entry_id: str
    customer_id: str
    # `voided`: a void took the purchase's points back; `returned`: value refused a redemption
    # (crm.value.loyalty_redemption.refused) and its points came back (issue 15, added values).
    kind: Literal["earned", "credited", "redeemed", "refunded", "expired", "adjusted", "voided", "returned"]
    # Positive for points in, negative for points out.
    points: int
    balance: int
    source_event_id: str | None = None
    expires_at: datetime | None = None
    at: datetime

    def timeline_summary(self, customer_id: str) -> str:
        return f"Loyalty points {self.kind}: {self.points:+d} (balance {self.balance})"


@contract(
    "crm.lifecycle.loyalty.points_redeemed",
    "lifecycle",
    "lifecycle debited a customer's points for one of value's points offers (a redemption): value "
    "issues that offer template's offer to the customer (crm.value.offer.issued).",
    customers=("customer_id",),
    at="redeemed_at",
)
class LoyaltyPointsRedeemed(Payload):
    redemption_id: str
    customer_id: str
    template_id: str
    points: int
    redeemed_at: datetime


@contract(
    "crm.lifecycle.loyalty.tier_changed",
    "lifecycle",
    "A customer's loyalty tier changed (by points over the last 12 months, or by CLV).",
    customers=("customer_id",),
    at="at",
)
class LoyaltyTierChanged(Payload):
    customer_id: str
    from_tier: str | None = None
    to_tier: str | None = None
    at: datetime

    def timeline_summary(self, customer_id: str) -> str:
        return f"Loyalty tier {self.from_tier or 'none'} → {self.to_tier or 'none'}"


# --- engage -----------------------------------------------------------------


@contract(
    "crm.engage.interaction.logged",
    "engage",
    "A two-way interaction with a customer was logged.",
    customers=("customer_id",),
    at="occurred_at",
)
class InteractionLogged(Payload):
    id: str
    customer_id: str
    channel: str
    direction: Literal["inbound", "outbound"]
    summary: Annotated[str | None, Personal("free_text")]
    occurred_at: datetime

    def timeline_summary(self, customer_id: str) -> str:
        channel = self.channel.replace("_", " ")
        return f"{self.direction.capitalize()} {channel}: {clip(self.summary or ERASED, QUOTE_MAX)}"


# Channels of engage's messages and conversations, consent and frequency caps (the
# interaction log keeps its own wider list: web, other).
MessageChannel = Literal["email", "sms", "chat", "phone", "social", "in_person"]
ConsentPurpose = Literal["marketing", "profiling", "research"]


# --- engage: consent and preferences ----------------------------------------


@contract(
    "crm.engage.consent.changed",
    "engage",
    "A customer's consent for one purpose on one channel was granted or withdrawn (an entry of "
    "engage's append-only consent ledger). value's campaign audiences follow it.",
    customers=("customer_id",),
    at="changed_at",
)
class ConsentChanged(Payload):
    id: str
    customer_id: str
    purpose: ConsentPurpose
    channel: MessageChannel
    granted: bool
    # consent, contract, legitimate_interest, legal_obligation, ... (GDPR art. 6)
    legal_basis: str
    # Where the change came from: api, batch, unsubscribe_link, preference_centre, import, ...
    source: str
    notice_version: str | None = None
    changed_at: datetime

    def timeline_summary(self, customer_id: str) -> str:
        verb = "Granted" if self.granted else "Withdrew"
        return f"{verb} {self.purpose} consent on {self.channel.replace('_', ' ')}"


# --- engage: conversations and messages -------------------------------------


def _channel_words(channel: str) -> str:
    return channel.replace("_", " ")


@contract(
    "crm.engage.message.sent",
    "engage",
    "A message went out to a customer: an email the SMTP server (or the file back end) took, or an "
    "outbound message recorded on another channel.",
    customers=("customer_id",),
    at="sent_at",
)
class MessageSent(Payload):
    id: str
    conversation_id: str | None = None
    customer_id: str
    channel: MessageChannel
    purpose: Literal["marketing", "service"]
    subject: Annotated[str | None, Personal("free_text")] = None
    # Set when another service asked for it (crm.value.message.requested).
    request_id: str | None = None
    sent_at: datetime

    def timeline_summary(self, customer_id: str) -> str:
        about = f": {clip(self.subject, QUOTE_MAX)}" if self.subject else ""
        return f"Sent {_channel_words(self.channel)}{about}"


@contract(
    "crm.engage.message.failed",
    "engage",
    "An outbound email could not be sent after its retries, or bounced: the server's reply says why.",
    customers=("customer_id",),
    at="failed_at",
)
class MessageFailed(Payload):
    id: str
    conversation_id: str | None = None
    customer_id: str
    channel: MessageChannel
    # failed: the server refused it after the retries; bounced: a delivery status notification came back.
    status: Literal["failed", "bounced"]
    reason: Annotated[str | None, Personal("free_text")] = None
    request_id: str | None = None
    failed_at: datetime

    def timeline_summary(self, customer_id: str) -> str:
        what = "bounced" if self.status == "bounced" else "could not be sent"
        return f"{_channel_words(self.channel).capitalize()} {what}"


@contract(
    "crm.engage.message.received",
    "engage",
    "A customer's message arrived (inbound email matched to the customer, or an inbound message "
    "recorded on another channel).",
    customers=("customer_id",),
    at="received_at",
)
class MessageReceived(Payload):
    id: str
    conversation_id: str | None = None
    customer_id: str
    channel: MessageChannel
    subject: Annotated[str | None, Personal("free_text")] = None
    received_at: datetime

    def timeline_summary(self, customer_id: str) -> str:
        about = f": {clip(self.subject, QUOTE_MAX)}" if self.subject else ""
        return f"Received {_channel_words(self.channel)}{about}"


@contract(
    "crm.engage.conversation.closed",
    "engage",
    "A conversation was closed: how long the first response and the resolution took.",
    customers=("customer_id",),
    at="closed_at",
)
class ConversationClosed(Payload):
    id: str
    customer_id: str
    channel: MessageChannel
    assignee_id: str | None = None
    # Seconds from opening to the first response and to closing; null without a response.
    first_response_seconds: float | None = None
    resolution_seconds: float
    closed_at: datetime

    def timeline_summary(self, customer_id: str) -> str:
        return f"Conversation on {_channel_words(self.channel)} closed"


# --- engage: messages another service asked for -----------------------------


@contract(
    "crm.engage.delivery.reported",
    "engage",
    "The outcome of a message another service asked engage to deliver (crm.value.message.requested): "
    "sent, failed (after retries), bounced, or refused (no consent, frequency cap, undeliverable address, ...).",
    customers=("customer_id",),
    at="reported_at",
)
class DeliveryReported(Payload):
    request_id: str
    customer_id: str
    channel: MessageChannel
    outcome: Literal["sent", "failed", "bounced", "refused"]
    # For `refused`: no_consent, frequency_cap, undeliverable, no_address, unknown_template, ...;
    # for `failed`/`bounced`: the server's reply.
    reason: str | None = None
    # engage's message, when one was made.
    message_id: str | None = None
    source_kind: str
    source_id: str
    reported_at: datetime


# --- engage: feedback and experience data -----------------------------------


class AttributeRating(Payload):
    """One score of us or a named competitor on one attribute (quality, service, price, ...)."""

    attribute: str
    # `us`, or a competitor's name as value lists it.
    subject: str
    # 1 (worst) to 10 (best).
    score: int


@contract(
    "crm.engage.feedback.received",
    "engage",
    "A customer answered a survey (through its signed link, or recorded by staff): the scores, the "
    "touchpoint it followed, and the customer's stage and segment at that moment.",
    customers=("customer_id",),
    at="received_at",
)
class FeedbackReceived(Payload):
    response_id: str
    survey_id: str
    customer_id: str
    # The event the survey followed (a first purchase, a closed conversation, a solved ticket); null on demand.
    touchpoint_event_id: str | None = None
    touchpoint_type: str | None = None
    channel: str | None = None
    stage: str | None = None
    segment: str | None = None
    nps: int | None = None
    csat: int | None = None
    ces: int | None = None
    ratings: list[AttributeRating] = []
    # Experience data: effort 1 (none) to 5 (a lot); emotion on a fixed scale (docs/engage.md).
    effort: int | None = None
    emotion: str | None = None
    comment: Annotated[str | None, Personal("free_text")] = None
    received_at: datetime

    def timeline_summary(self, customer_id: str) -> str:
        scores = [
            f"{name.upper()} {value}"
            for name, value in (("nps", self.nps), ("csat", self.csat), ("ces", self.ces))
            if value is not None
        ]
        return "Answered a survey" + (f": {', '.join(scores)}" if scores else "")


# --- engage: communities ----------------------------------------------------

# identify's RFM segments and kinds of strategically significant customer, the values of
# crm.identify.customer.scored's `segment` and `kinds` (identify's scoring uses these tuples);
# engage's communities take them as a scope and refuse others.
RFM_SEGMENTS: tuple[str, ...] = (
    "champions",
    "loyal",
    "potential_loyalists",
    "new_customers",
    "promising",
    "need_attention",
    "about_to_sleep",
    "at_risk",
    "cannot_lose",
    "hibernating",
    "lost",
)
CUSTOMER_KINDS: tuple[str, ...] = ("high_future_value", "benchmark", "inspiration", "cost_absorber")


@contract(
    "crm.engage.community.post.created",
    "engage",
    "A member or staff posted in a community: a new topic (a thread) or a reply in one. Only a "
    "member customer's post names a customer (and reaches the timeline).",
    customers=("author_customer_id",),
    at="created_at",
)
class CommunityPostCreated(Payload):
    post_id: str
    community_id: str
    # The topic the post replies in; null for a topic (it starts a thread).
    thread_id: str | None = None
    author_customer_id: str | None = None
    author_employee_id: str | None = None
    # The topic's title (of the thread, for a reply).
    title: Annotated[str | None, Personal("free_text")] = None
    created_at: datetime

    def timeline_summary(self, customer_id: str) -> str:
        verb = "Replied to" if self.thread_id else "Started"
        return f"{verb} a community thread: {clip(self.title or ERASED, QUOTE_MAX)}"


@contract(
    "crm.engage.community.helpfulness.changed",
    "engage",
    "Others marked a member's community posts helpful (or took a mark back): the member's total. "
    "identify counts it as evidence for benchmark customers.",
    customers=("customer_id",),
    at="changed_at",
)
class HelpfulnessChanged(Payload):
    customer_id: str
    # Helpful marks on all the member's posts, in every community.
    helpful_marks: int
    community_id: str | None = None
    post_id: str | None = None
    changed_at: datetime


# --- network ----------------------------------------------------------------


# --- network: stakeholders and their relations to customers (issue 16 §4)

# What a stakeholder is to the suite; consumers read an unknown kind as text (a tolerant reader).
StakeholderKind = Literal["partner", "reseller", "supplier", "employee", "investor", "owner"]
# What a stakeholder is to a customer (network's rules say which kinds may hold which).
RelationKind = Literal["account_manager_of", "reseller_of", "supplier_to", "introduced"]


@contract(
    "crm.network.stakeholder.created",
    "network",
    "A stakeholder (partner, reseller, supplier, employee, investor or owner) was added.",
    at="created_at",
)
class StakeholderCreated(Payload):
    id: str
    kind: StakeholderKind
    name: Annotated[str | None, Personal("name")]
    email: Annotated[str | None, Personal("email")] = None
    created_at: datetime


@contract(
    "crm.network.stakeholder.updated",
    "network",
    "A stakeholder's name, organisation, email or notes changed: the name and email as they are now, "
    "`changed` the fields the change touched.",
    at="updated_at",
)
class StakeholderUpdated(Payload):
    id: str
    kind: StakeholderKind
    name: Annotated[str | None, Personal("name")]
    email: Annotated[str | None, Personal("email")] = None
    changed: list[str]
    updated_at: datetime


class RelationChange(Payload):
    """What a relation's start and end both say (not a contract itself)."""

    relation_id: str
    customer_id: str
    stakeholder_id: str
    stakeholder_kind: StakeholderKind
    relation: RelationKind
    started_at: datetime
    # The gateway's caller who made the change (an API key or a person), or `merge` for a merge.
    changed_by: str | None = None


_RELATION_LABELS = {
    "account_manager_of": "account manager",
    "reseller_of": "reseller",
    "supplier_to": "supplier",
    "introduced": "introduced by",
}


def _relation_words(relation: str) -> str:
    return _RELATION_LABELS.get(relation, relation.replace("_", " "))


@contract(
    "crm.network.relation.started",
    "network",
    "A stakeholder took up a relation to a customer (account manager, reseller, supplier, introducer): "
    "a new period of the relation's history.",
    customers=("customer_id",),
    at="started_at",
)
class RelationStarted(RelationChange):
    def timeline_summary(self, customer_id: str) -> str:
        return f"{_relation_words(self.relation).capitalize()}: {self.stakeholder_kind} {self.stakeholder_id}"


@contract(
    "crm.network.relation.ended",
    "network",
    "A stakeholder's relation to a customer ended (`reason`: ended by a user, replaced by another account "
    "manager, or collapsed into the same relation by a merge); the period stays in the history.",
    customers=("customer_id",),
    at="ended_at",
)
class RelationEnded(RelationChange):
    ended_at: datetime
    reason: Literal["ended", "replaced", "merged"]

    def timeline_summary(self, customer_id: str) -> str:
        return f"No longer {_relation_words(self.relation)}: {self.stakeholder_kind} {self.stakeholder_id}"


@contract(
    "crm.network.referral.recorded",
    "network",
    "A customer referred another customer.",
    customers=("referrer_id", "referred_id"),
    at="recorded_at",
)
class ReferralRecorded(Payload):
    id: str
    referrer_id: str
    referred_id: str
    recorded_at: datetime

    def timeline_summary(self, customer_id: str) -> str:
        """On both customers' timelines, each told from its side."""

        if customer_id == self.referrer_id:
            return f"Referred customer {self.referred_id}"
        return f"Referred by customer {self.referrer_id}"


# --- network: the referral programme ------------------------------------------


@contract(
    "crm.network.referral.rewarded",
    "network",
    "A referral counted (the referred customer's first purchase fell within the programme's window): "
    "the referrer earns the programme's reward, which value issues (an offer of `template_id`, or `points`).",
    customers=("referrer_id",),
    other_customers=("referred_id",),
    at="rewarded_at",
)
class ReferralRewarded(Payload):
    referral_id: str
    referrer_id: str
    referred_id: str
    # The reward: an offer of value's template, or loyalty points (one of the two).
    template_id: str | None = None
    points: int | None = None
    # identify's id of the referred customer's first purchase, the one that qualified the referral.
    transaction_id: str
    rewarded_at: datetime

    def timeline_summary(self, customer_id: str) -> str:
        reward = f"{self.points} points" if self.points is not None else "an offer"
        return f"Rewarded with {reward} for referring customer {self.referred_id}"


# network: webhooks


@contract(
    "crm.network.webhook.disabled",
    "network",
    "A webhook subscription was disabled: its endpoint answered 410 Gone, or kept failing for the "
    "configured number of days. It delivers nothing until it is enabled again (PATCH /v1/webhooks/{id}).",
    at="disabled_at",
)
class WebhookDisabled(Payload):
    # Public like every event: it names no partner (GET /v1/webhooks/{id} does, to staff).
    id: str
    reason: Literal["gone", "failing"]
    detail: str
    disabled_at: datetime


# --- value ------------------------------------------------------------------


@contract(
    "crm.value.offer.issued",
    "value",
    "An offer was issued to a customer (by a user, or a welcome offer by value itself).",
    customers=("customer_id",),
    at="issued_at",
)
class OfferIssued(Payload):
    id: str
    customer_id: str
    kind: str
    # Written by people, so it may name the customer: free text.
    title: Annotated[str | None, Personal("free_text")]
    discount_percent: DecimalText | None = None
    expires_at: datetime | None = None
    issued_at: datetime
    # --- value: offer templates and coupons (all optional: offers issued without a template lack them)
    template_id: str | None = None
    # A random code, not personal.
    coupon_code: str | None = None
    # A points offer: lifecycle's ledger credits these points from this event.
    points: int | None = None
    amount_off: DecimalText | None = None
    currency: str | None = None
    free_item: str | None = None
    # What the offer costs the business.
    cost: DecimalText | None = None
    starts_at: datetime | None = None
    campaign_id: str | None = None
    playbook_id: str | None = None
    # The loyalty redemption (crm.lifecycle.loyalty.points_redeemed) the offer was bought with.
    redemption_id: str | None = None
    # The referral (crm.network.referral.rewarded) the offer rewards its referrer for.
    referral_id: str | None = None

    def timeline_summary(self, customer_id: str) -> str:
        off = f" ({self.discount_percent}% off)" if self.discount_percent is not None else ""
        return f"Offer issued: {self.title or ERASED}{off}"


@contract(
    "crm.value.offer.redeemed",
    "value",
    "A customer redeemed an offer.",
    customers=("customer_id",),
    at="redeemed_at",
)
class OfferRedeemed(Payload):
    id: str
    customer_id: str
    kind: str
    redeemed_at: datetime
    # The purchase the redemption applied to (identify's transaction id), when named.
    transaction_id: str | None = None
    template_id: str | None = None
    coupon_code: str | None = None
    campaign_id: str | None = None
    playbook_id: str | None = None

    def timeline_summary(self, customer_id: str) -> str:
        return f"Offer redeemed: {self.kind}"


# --- value: offer templates and loyalty redemptions ---------------------------


@contract(
    "crm.value.offer_template.changed",
    "value",
    "An offer template was created or changed: what lifecycle's loyalty programme needs to sell it for "
    "points (its kind, title, points price and validity window).",
    at="changed_at",
)
class OfferTemplateChanged(Payload):
    id: str
    kind: str
    # Written by staff for every customer: no personal data.
    title: str
    # What a customer pays in loyalty points to redeem the template's offer; null: not for points.
    points_price: int | None = None
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    changed_at: datetime


@contract(
    "crm.value.loyalty_redemption.refused",
    "value",
    "value could not issue the offer a loyalty redemption paid for (the template closed, its budget or "
    "the customer's cap reached, its points price changed): lifecycle gives the points back.",
    customers=("customer_id",),
    at="refused_at",
)
class LoyaltyRedemptionRefused(Payload):
    redemption_id: str
    customer_id: str
    template_id: str
    points: int
    # template_expired | budget_exhausted | customer_cap | price_changed | unknown_template
    reason: str
    refused_at: datetime


# --- value: messages engage delivers for value -------------------------------


@contract(
    "crm.value.message.requested",
    "value",
    "value asks engage to deliver a message to a customer (a campaign's offer, a retention offer, news "
    "of an idea). engage applies consent and frequency caps for marketing, renders and sends it, and "
    "answers with crm.engage.delivery.reported.",
    customers=("customer_id",),
    at="requested_at",
)
class MessageRequested(Payload):
    request_id: str
    customer_id: str
    channel: MessageChannel
    # `marketing` needs the customer's consent on the channel and counts against its frequency cap.
    purpose: Literal["marketing", "service"]
    # engage's template (GET /v1/templates), or a subject and body written for this message.
    template_id: str | None = None
    subject: str | None = None
    body: str | None = None
    # Merge fields the template or body may name besides engage's own (offer_code, offer_title, idea_title, ...).
    fields: dict[str, str] = {}
    source_kind: Literal["campaign", "playbook", "idea", "offer"]
    source_id: str
    requested_at: datetime


class Recipient(Payload):
    """One customer of a crm.value.messages.requested: its request id and merge fields."""

    request_id: str
    customer_id: str
    fields: dict[str, str] = {}


# The most recipients one crm.value.messages.requested carries.
MAX_RECIPIENTS = 500


@contract(
    "crm.value.messages.requested",
    "value",
    "value asks engage to deliver one message to many customers at once (a campaign's launch): the "
    "fields of crm.value.message.requested shared by all, and up to 500 recipients, each with its own "
    "request id and merge fields. engage treats each recipient as a crm.value.message.requested of its "
    "own and answers each with crm.engage.delivery.reported. One event instead of one per customer: a "
    "launch over a million customers publishes half the events.",
)
class MessagesRequested(Payload):
    channel: MessageChannel
    purpose: Literal["marketing", "service"]
    template_id: str | None = None
    subject: str | None = None
    body: str | None = None
    source_kind: Literal["campaign", "playbook", "idea", "offer"]
    source_id: str
    requested_at: datetime
    recipients: Annotated[list[Recipient], Field(min_length=1, max_length=MAX_RECIPIENTS)]


# --- value: co-creation -----------------------------------------------------


@contract(
    "crm.value.idea.shipped",
    "value",
    "An idea a customer proposed was shipped. identify counts it as evidence for inspiration customers "
    "(those who push the business to improve), keeping the idea's id.",
    customers=("customer_id",),
    at="shipped_at",
)
class IdeaShipped(Payload):
    idea_id: str
    # Who proposed it.
    customer_id: str
    title: Annotated[str | None, Personal("free_text")]
    product_area: str
    votes: int
    shipped_at: datetime

    def timeline_summary(self, customer_id: str) -> str:
        return f"Their idea shipped: {clip(self.title or ERASED, QUOTE_MAX)}"


# --- value: ideas, votes and comments ------------------------------------------

IdeaStatus = Literal["new", "under_review", "planned", "shipped", "declined"]


@contract(
    "crm.value.idea.submitted",
    "value",
    "A customer proposed an idea, through their signed ideas link or entered by staff on their behalf.",
    customers=("customer_id",),
    at="submitted_at",
)
class IdeaSubmitted(Payload):
    idea_id: str
    # Who proposed it.
    customer_id: str
    # Written by the customer: it may name them.
    title: Annotated[str | None, Personal("free_text")]
    product_area: str
    # `link`: the customer's signed link; `staff`: entered on the customer's behalf.
    source: Literal["link", "staff"]
    submitted_at: datetime

    def timeline_summary(self, customer_id: str) -> str:
        return f"Proposed an idea ({self.product_area}): {clip(self.title or ERASED, QUOTE_MAX)}"


@contract(
    "crm.value.idea.voted",
    "value",
    "A customer voted for an idea (one vote per customer and idea). Carries no text of the idea: "
    "its title is its proposer's.",
    customers=("customer_id",),
    at="voted_at",
)
class IdeaVoted(Payload):
    idea_id: str
    # Who voted.
    customer_id: str
    product_area: str
    source: Literal["link", "staff"]
    voted_at: datetime

    def timeline_summary(self, customer_id: str) -> str:
        return f"Voted for an idea ({self.product_area})"


@contract(
    "crm.value.idea.commented",
    "value",
    "A customer commented on an idea.",
    customers=("customer_id",),
    at="commented_at",
)
class IdeaCommented(Payload):
    comment_id: str
    idea_id: str
    # Who commented.
    customer_id: str
    body: Annotated[str | None, Personal("free_text")]
    product_area: str
    source: Literal["link", "staff"]
    commented_at: datetime

    def timeline_summary(self, customer_id: str) -> str:
        return f"Commented on an idea ({self.product_area}): {clip(self.body or ERASED, QUOTE_MAX)}"


@contract(
    "crm.value.idea.status_changed",
    "value",
    "An idea moved on (new → under_review → planned → shipped, or declined), with the public reason. "
    "Its contributors and voters are told through crm.value.message.requested (source_kind idea).",
    customers=("customer_id",),
    at="changed_at",
)
class IdeaStatusChanged(Payload):
    idea_id: str
    # Who proposed it.
    customer_id: str
    title: Annotated[str | None, Personal("free_text")]
    product_area: str
    from_status: IdeaStatus
    to_status: IdeaStatus
    # Written by staff for customers to read.
    reason: str | None = None
    votes: int
    # How many people were told (crm.value.message.requested, one each).
    notified: int
    changed_at: datetime

    def timeline_summary(self, customer_id: str) -> str:
        status = self.to_status.replace("_", " ")
        return f"Their idea is now {status}: {clip(self.title or ERASED, QUOTE_MAX)}"


# --- dead letters -----------------------------------------------------------


class DeadLetter(Payload):
    consumer: str
    event_id: str | None
    event_type: str | None
    # The error may quote the payload, and `raw` is the whole event: an erasure scrubs
    # `raw` of the erased customer's personal fields and replaces `error`.
    error: Annotated[str | None, Personal("free_text")]
    deliveries: int
    failed_at: datetime
    raw: Annotated[str | None, Personal("free_text")]


DLQ_SUBJECT_PREFIX = "crm.dlq."


def dlq_subject(service: str) -> str:
    return f"{DLQ_SUBJECT_PREFIX}{service}"


class ErasureApplied(Payload):
    """What one service did for an erasure: rows erased per table (no personal data)."""

    erasure_id: str
    customer_id: str
    tables: dict[str, int]
    applied_at: datetime


def erasure_applied_subject(service: str) -> str:
    return f"crm.{service}.customer.erasure_applied"


for _service in ("identify", "engage", "network", "value", "lifecycle"):
    contract(
        erasure_applied_subject(_service),
        _service,
        f"{_service} erased (or anonymised) the personal data it held of an erased customer: rows per table "
        "(outbox and dead letters included). identify collects them into the erasure's report "
        "(GET /v1/erasures/{id}).",
        customers=("customer_id",),
        at="applied_at",
    )(ErasureApplied)
    contract(
        dlq_subject(_service),
        _service,
        f"An event that {_service}'s consumers kept failing on, parked for operators"
        f" (also listed at {_service}'s /v1/ops/dead-letters).",
        at="failed_at",
    )(DeadLetter)
