"""identify's rules for recording transactions: one path for a single purchase, a batch
and an import.

`record_transactions` takes many at once and answers item by item: a transaction
whose `external_id` was recorded before (or earlier in the same call) for the same
purchase (see `differences`) is a duplicate and returns the first one, and for another
purchase it is an `idempotency_conflict`; one for a merged customer is `customer_merged`
(services/identify/customers/service.py); one for an unknown customer, or in a
currency with no exchange rate for its day (services/identify/money/fx.py), is an error; the
others are inserted in bulk, counted on their customer, folded into the purchase
summaries and announced with one `crm.identify.transaction.recorded` event each, all
in the caller's transaction. Then their customers are re-scored.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal, Protocol

from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from services.identify.customers import repository as customer_repository
from services.identify.customers.service import get_customer, merged_error
from services.identify.money import fx
from services.identify.money.schemas import decimal_text
from services.identify.portfolio import summaries
from services.identify.portfolio.scoring import current_model, rescore_customers
from services.identify.transactions import repository
from services.identify.transactions.schemas import TransactionCreate, TransactionOut
from shared.db.database import utcnow
from shared.db.driver import NotAlone, writes_alone, writes_together
from shared.db.ids import uuid7_many
from shared.events.messaging import emit_many, flush_events, outbox_write, take_pending, written
from shared.http.errors import AppError, InvalidRequest, NotFound, field_error, item_errors

RECORDED = "crm.identify.transaction.recorded"
ZERO = Decimal(0)


class NewTransaction(Protocol):
    """What a transaction to record carries (TransactionCreate, or an import's row).

    Read-only members (properties), so a subtype fits: TransactionCreate's currency is a
    `Currency`, a str."""

    @property
    def customer_id(self) -> str: ...
    @property
    def amount(self) -> Decimal: ...
    @property
    def currency(self) -> str: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def external_id(self) -> str | None: ...
    @property
    def margin(self) -> Decimal | None: ...
    @property
    def cost(self) -> Decimal | None: ...


@dataclass(slots=True)
class Outcome:
    """What became of one item: `transaction` is the stored row (as a mapping) for
    created and duplicate; `field`/`message` say what is wrong with an error."""

    status: Literal["created", "duplicate", "error"]
    transaction: dict | None = None
    field: str | None = None
    message: str | None = None
    # The customer was merged: that error itself (409 customer_merged), not a bad field.
    refused: AppError | None = None
    # The error's class when it is neither of those (IdempotencyConflict).
    error: type[AppError] | None = None


class IdempotencyConflict(AppError):
    status_code = 409
    error = "idempotency_conflict"


# What makes two transactions the same purchase: a client retrying may change a margin or
# a cost (docs/imports.md), but not whom, how much, in what currency or when.
SAME_PURCHASE = ("customer_id", "amount", "currency", "occurred_at")


def differences(earlier: dict, item: NewTransaction, survivor: str | None = None) -> list[str]:
    """The SAME_PURCHASE fields in which `item` differs from the `earlier` transaction with
    its external_id: amounts compared as numbers (as far as a float holds them: SQLite
    stores 18 digits as one), times as instants. `survivor` is the customer the item's
    customer was merged into, whom the earlier one now belongs to."""

    changed = []
    for name in SAME_PURCHASE:
        was, now = earlier[name], getattr(item, name)
        if was == now or (name == "amount" and float(was) == float(now)) or (name == "customer_id" and was == survivor):
            continue
        changed.append(name)
    return changed


def _conflict(earlier: dict, external_id: str, fields: list[str]) -> Outcome:
    message = (
        f"external_id {external_id!r} is transaction {earlier['id']}, a different purchase "
        f"(another {', '.join(fields)}); use a new external_id for a new purchase"
    )
    return Outcome("error", field="external_id", message=message, error=IdempotencyConflict)


def _new_row(item: NewTransaction, rates: fx.Rates, now: datetime, new_ids: Iterator[str]) -> dict | Outcome:
    """The row to insert for the item, in the reporting currency too; an Outcome when its
    currency has no rate for its day or its amount is too large there."""

    rate = rates.rate(item.currency, item.occurred_at)
    if rate is None:
        message = fx.missing_rate(item.currency, item.occurred_at, rates.reporting)
        return Outcome("error", field="currency", message=message)
    reporting_amount = item.amount if rate is fx.ONE else fx.convert(item.amount, rate)
    if reporting_amount >= fx.MAX_AMOUNT:
        return Outcome("error", field="amount", message=f"too large in {rates.reporting}")
    return {
        "id": next(new_ids),
        "customer_id": item.customer_id,
        "amount": item.amount,
        "currency": item.currency,
        "occurred_at": item.occurred_at,
        "external_id": item.external_id,
        "margin": item.margin,
        "cost": item.cost,
        "recorded_at": now,
        "reporting_amount": reporting_amount,
        "reporting_currency": rates.reporting,
        "fx_rate": rate,
        "status": "recorded",
        "refunded_amount": ZERO,
        "refunded_reporting_amount": ZERO,
    }


async def record_transactions(
    *,
    session: AsyncSession,
    items: Sequence[NewTransaction],
    new_customers: Collection[str] = (),
    rates: fx.Rates | None = None,
) -> list[Outcome]:
    """Record the items in the session's transaction; one Outcome per item, in order.
    `new_customers` are customers the caller created in this transaction (not merged,
    no purchases yet, locked by their insert): they are not read back. `rates`: those of
    the items' currencies, when the caller has them."""

    external_ids = {item.external_id for item in items if item.external_id}
    earlier = await repository.transactions_by_external_ids(session, external_ids)
    customers = await repository.lock_customers(session, {item.customer_id for item in items}.difference(new_customers))
    customers.update((id_, {"id": id_, "merged_into": None, "purchase_count": 0}) for id_ in new_customers)
    if rates is None:
        rates = await fx.rates_for(session, {item.currency for item in items})

    outcomes: list[Outcome] = []
    rows: list[dict] = []
    now = utcnow()
    new_ids = iter(uuid7_many(len(items)))  # one each, made in one go
    for item in items:
        external_id = item.external_id
        customer = customers.get(item.customer_id)
        if external_id and external_id in earlier:
            first = earlier[external_id]
            changed = differences(first, item, customer["merged_into"] if customer else None)
            outcomes.append(_conflict(first, external_id, changed) if changed else Outcome("duplicate", first))
            continue
        if customer is None:
            outcomes.append(Outcome("error", field="customer_id", message=f"no customer with id {item.customer_id}"))
            continue
        if customer["merged_into"]:
            refused = merged_error(customer)
            assert refused is not None, "the customer was merged"
            outcomes.append(Outcome("error", field="customer_id", message=refused.detail, refused=refused))
            continue
        row = _new_row(item, rates, now, new_ids)
        if isinstance(row, Outcome):
            outcomes.append(row)
            continue
        rows.append(row)
        outcomes.append(Outcome("created", row))
        if external_id:
            earlier[external_id] = row  # a later item with this id in the same call is a duplicate

    if rows:
        # On PostgreSQL these writes go in two round trips, not five (shared/db/driver.py):
        # the transactions, their events' outbox rows, purchase counts and purchase days in
        # one, the summaries (which read the purchase days) in another.
        async with writes_together(session):
            await repository.insert_transactions(session, rows)
            added = _announce(session, rows, customers)
            await flush_events(session)  # now, not at commit: with the writes above
            await repository.add_purchases(session, added)
            await summaries.add_transactions(session, rows)
        await rescore_customers(session, sorted(added), with_referrers=True)
    return outcomes


def _announce(session: AsyncSession, rows: list[dict], customers: dict[str, dict]) -> dict[str, int]:
    """Emit one event per new transaction (in one pass); return how many each customer got."""

    added: dict[str, int] = {}
    payloads = []
    for row in rows:
        customer_id = row["customer_id"]
        count = added[customer_id] = added.get(customer_id, 0) + 1
        amount = decimal_text(row["amount"])
        reporting_amount = row["reporting_amount"]
        payloads.append(
            {
                "id": row["id"],
                "customer_id": customer_id,
                "amount": amount,
                "currency": row["currency"],
                "occurred_at": row["occurred_at"],
                "external_id": row["external_id"],
                "purchase_count": customers[customer_id]["purchase_count"] + count,
                "margin": decimal_text(row["margin"]),
                "cost": decimal_text(row["cost"]),
                "reporting_amount": amount if reporting_amount is row["amount"] else decimal_text(reporting_amount),
                "reporting_currency": row["reporting_currency"],
            }
        )
    emit_many(session, RECORDED, payloads, [row["customer_id"] for row in rows])
    return added


async def list_transactions(
    *, session: AsyncSession, customer_id: str, before: tuple[datetime, str] | None, limit: int
) -> list:
    await get_customer(session=session, customer_id=customer_id)
    return await repository.list_transactions(session, customer_id=customer_id, before=before, limit=limit)


async def search_transactions(
    *,
    session: AsyncSession,
    customer_id: str | None,
    since: datetime | None,
    until: datetime | None,
    before: tuple[datetime, str] | None,
    limit: int,
) -> list:
    """Transactions across customers, newest first; every filter optional. A customer that
    does not exist is 404 naming `query.customer_id`, as its own transaction list is 404."""

    if since is not None and until is not None and since > until:
        raise field_error("query.from", f"from ({since.isoformat()}) is after to ({until.isoformat()})")
    if customer_id is not None and await customer_repository.get_customer(session, customer_id) is None:
        raise field_error("query.customer_id", f"no customer with id {customer_id}", status=NotFound)
    return await repository.list_transactions(
        session, customer_id=customer_id, before=before, limit=limit, since=since, until=until
    )


def _item_errors(index: int, exc: ValidationError) -> dict:
    """An item's validation errors shaped like the API's 422 body, fields named from the body."""

    return item_errors(exc.errors(), "body", "items", index)


async def record_batch(*, session: AsyncSession, items: Sequence) -> list[dict]:
    """Validate and record a batch item by item: [{index, status, transaction, error}]."""

    answers: list[dict] = [{"index": index, "transaction": None, "error": None} for index in range(len(items))]
    valid: list[tuple[int, TransactionCreate]] = []
    for index, raw in enumerate(items):
        try:
            valid.append((index, TransactionCreate.model_validate(raw)))
        except ValidationError as exc:
            answers[index].update(status="error", error=_item_errors(index, exc))
    outcomes = await record_transactions(session=session, items=[item for _, item in valid])
    for (index, _), outcome in zip(valid, outcomes):
        answer = answers[index]
        answer["status"] = outcome.status
        if outcome.status == "error":
            assert outcome.message is not None, "an error says what is wrong"
            error = outcome.refused or field_error(
                f"body.items.{index}.{outcome.field}", outcome.message, outcome.error or InvalidRequest
            )
            answer["error"] = error.body()
        else:
            answer["transaction"] = TransactionOut.of(outcome.transaction)
    return answers


async def record_one(*, session: AsyncSession, data: TransactionCreate) -> tuple[dict, bool]:
    """Record one purchase: (the transaction, created); the same purchase with its
    external_id again returns the first one with created=False."""

    rates = await fx.rates_for(session, {data.currency})
    outcome = await _record_alone(session, data, rates)
    if outcome is None:
        (outcome,) = await record_transactions(session=session, items=[data], rates=rates)
    if outcome.status == "error":
        if outcome.refused is not None:
            raise outcome.refused
        assert outcome.message is not None, "an error says what is wrong"
        raise field_error(f"body.{outcome.field}", outcome.message, status=outcome.error or InvalidRequest)
    assert outcome.transaction is not None, "created and duplicate carry the stored row"
    return outcome.transaction, outcome.status == "created"


# --- one purchase in one statement (PostgreSQL) ---------------------------------------

# Its customer's row, locked (FOR NO KEY UPDATE: a purchase changes no key, so inserts that
# reference the customer do not conflict) without waiting: a customer busy with another
# write, or one whose row changed after the statement's snapshot was taken (its `xmin`
# differs then), would leave the statement's other parts reading that snapshot, older
# than the lock. No row then, and the purchase takes the locked path.
_LOCK_ALONE = (
    "SELECT c.purchase_count FROM customers AS c WHERE c.id = $1::VARCHAR AND c.merged_into IS NULL"
    " AND c.xmin = (SELECT s.xmin FROM customers AS s WHERE s.id = $1::VARCHAR) FOR NO KEY UPDATE NOWAIT"
)
# The event's purchase_count until the statement puts in the customer's: no count is negative.
_COUNT_IN_SQL = -(2**62)
_COUNT_MARKER = b'"purchase_count":' + str(_COUNT_IN_SQL).encode()
_COUNT_VALUE = """'"purchase_count":' || (SELECT purchase_count + 1 FROM locked)"""


async def _record_alone(session: AsyncSession, item: TransactionCreate, rates: fx.Rates) -> Outcome | None:
    """A purchase through the API on PostgreSQL as one statement in autocommit: the customer's
    lock, the writes and the event's outbox row, the event's purchase_count read from the
    locked row by the statement itself: one round trip where there were four (BEGIN, the
    lock, the writes, COMMIT). identify spent 5-24% less CPU a purchase in the runs of
    docs/benchmarks.md, "Stop 27".

    None where it does not apply; `record_transactions` then records the purchase in a
    transaction, under the customer's lock, and answers as it always did:
    - SQLite, or a session that has sent a statement already (a rate read from the
      database: a currency other than the reporting one);
    - once a model is fitted (a purchase re-scores its customer in its transaction);
    - a purchase with an error (its rate, its amount);
    - whatever stops the statement, which keeps nothing: an unknown or merged customer (no
      locked row, so no event body, which is NOT NULL), a customer locked by another
      write, a recorded external_id (the unique index)."""

    if await current_model(session) is not None:
        return None
    async with writes_alone(session) as alone:
        if alone is None:
            return None
        row = _new_row(item, rates, utcnow(), iter(uuid7_many(1)))
        if isinstance(row, Outcome):
            return None
        customer_id = row["customer_id"]
        try:
            await repository.insert_transactions(session, [row])
            await repository.add_purchases(session, {customer_id: 1})
            await summaries.add_transactions(session, [row])
        except NotAlone:
            return None
        _announce(session, [row], {customer_id: {"purchase_count": _COUNT_IN_SQL - 1}})
        (event,) = take_pending(session)
        outbox = outbox_write(session, event, _COUNT_MARKER, _COUNT_VALUE)
        try:
            # The lock is the main query's: taken before the writes, which run after it.
            parts = [("locked", _LOCK_ALONE, (customer_id,)), ("announced", *outbox)]
            await alone.send(parts, "SELECT purchase_count FROM locked")
        except DBAPIError:  # IntegrityError too: nothing of the statement was kept
            return None
    written(session, 1)
    return Outcome("created", row)
