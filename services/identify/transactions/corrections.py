"""Refunds and voids: how a recorded purchase is corrected (amounts are never negative).

- A refund gives back part or all of a purchase, at the purchase's own exchange rate (so
  a purchase refunded in full nets to exactly 0 in the reporting currency). It lowers the
  customer's revenue (summaries' spend, CLV, Pareto) but not the purchase count: the
  purchase happened. Its margin shrinks by the share refunded; its cost stays (serving
  the sale cost what it cost).
- A void says the purchase was recorded in error: it leaves purchase counts, purchase
  days, summaries and scores, and its external_id stays taken (posting it again answers
  the voided transaction, as any duplicate does).

Each is one write with its event (crm.identify.transaction.refunded / .voided); the
customer's summaries are rebuilt from its transactions and the customer re-scored.
Lifecycle stages never move back because of either.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from services.identify.models import Refund, Transaction
from services.identify.money import fx
from services.identify.money.schemas import decimal_text
from services.identify.portfolio import summaries
from services.identify.portfolio.scoring import rescore_customers
from services.identify.transactions import repository
from services.identify.transactions.schemas import RefundCreate
from shared.db.database import utcnow
from shared.db.ids import uuid7
from shared.events.messaging import emit
from shared.http.errors import Conflict, NotFound, field_error

REFUNDED = "crm.identify.transaction.refunded"
VOIDED = "crm.identify.transaction.voided"
CLOCK_SKEW = timedelta(minutes=5)  # a refund "now" on a client whose clock runs a little ahead


async def _transaction(session: AsyncSession, transaction_id: str) -> Transaction:
    transaction = await repository.lock_transaction(session, transaction_id)
    if transaction is None:
        raise NotFound(f"no transaction with id {transaction_id}")
    return transaction


def _voided(transaction: Transaction, doing: str) -> Conflict:
    assert transaction.voided_at is not None, "called for a voided transaction"
    return Conflict(
        f"transaction {transaction.id} was voided at {transaction.voided_at.isoformat()}; {doing}",
        error="transaction_voided",
    )


async def refund(*, session: AsyncSession, transaction_id: str, data: RefundCreate) -> tuple[Refund, Transaction, bool]:
    """Record a refund: (the refund, its purchase, created); the same external_id again
    returns the first refund with created=False."""

    transaction = await _transaction(session, transaction_id)
    if data.external_id:
        earlier = await repository.refund_by_external_id(session, data.external_id)
        if earlier is not None:
            if earlier.transaction_id != transaction_id:
                raise field_error(
                    "body.external_id",
                    f"already the key of refund {earlier.id} of transaction {earlier.transaction_id}",
                    status=Conflict,
                )
            return earlier, transaction, False
    if transaction.status == "voided":
        raise _voided(transaction, "a voided purchase has nothing to refund")
    left = transaction.amount - transaction.refunded_amount
    if data.amount > left:
        raise field_error(
            "body.amount", f"at most {decimal_text(left)} {transaction.currency} of this purchase is left to refund"
        )
    now = utcnow()
    occurred_at = data.occurred_at or now
    if occurred_at.tzinfo is None:
        raise field_error("body.occurred_at", "needs a time zone (e.g. 2024-05-01T10:00:00Z)")
    if occurred_at < transaction.occurred_at:
        raise field_error(
            "body.occurred_at", f"must not be before the purchase ({transaction.occurred_at.isoformat()})"
        )
    if occurred_at > now + CLOCK_SKEW:
        raise field_error("body.occurred_at", "must not be in the future")

    reporting = None
    if transaction.reporting_amount is not None:
        assert transaction.fx_rate is not None, "a reporting amount is recorded with its rate"
        # The last of a purchase takes exactly what is left: no rounding residue.
        reporting = (
            transaction.reporting_amount - transaction.refunded_reporting_amount
            if data.amount == left
            else fx.convert(data.amount, transaction.fx_rate)
        )
        transaction.refunded_reporting_amount += reporting
    transaction.refunded_amount += data.amount
    refund_row = Refund(
        id=uuid7(),
        transaction_id=transaction.id,
        amount=data.amount,
        reporting_amount=reporting,
        reason=data.reason,
        occurred_at=occurred_at,
        external_id=data.external_id,
        recorded_at=now,
    )
    await repository.add_refund(session, refund_row)
    await _restate(session, transaction.customer_id)
    emit(
        session,
        REFUNDED,
        {
            "refund_id": refund_row.id,
            "transaction_id": transaction.id,
            "customer_id": transaction.customer_id,
            "amount": decimal_text(data.amount),
            "currency": transaction.currency,
            "reporting_amount": decimal_text(reporting),
            "reporting_currency": transaction.reporting_currency,
            "refunded_amount": decimal_text(transaction.refunded_amount),
            "reason": data.reason,
            "occurred_at": occurred_at,
            "external_id": data.external_id,
        },
        subject=transaction.customer_id,
    )
    return refund_row, transaction, True


async def void(*, session: AsyncSession, transaction_id: str, reason: str) -> Transaction:
    """Mark a purchase recorded in error: out of counts, summaries and scores."""

    transaction = await _transaction(session, transaction_id)
    if transaction.status == "voided":
        raise _voided(transaction, "it cannot be voided twice")
    now = utcnow()
    transaction.status = "voided"
    transaction.voided_at = now
    transaction.void_reason = reason
    await session.flush()
    purchase_count = await repository.remove_purchase(session, transaction.customer_id)
    await _restate(session, transaction.customer_id)
    emit(
        session,
        VOIDED,
        {
            "transaction_id": transaction.id,
            "customer_id": transaction.customer_id,
            "amount": decimal_text(transaction.amount),
            "currency": transaction.currency,
            "reporting_amount": decimal_text(transaction.reporting_amount),
            "reporting_currency": transaction.reporting_currency,
            "refunded_amount": decimal_text(transaction.refunded_amount),
            "reason": reason,
            "voided_at": now,
            "purchase_count": purchase_count,
            "purchased_at": transaction.occurred_at,
        },
        subject=transaction.customer_id,
    )
    return transaction


async def _restate(session: AsyncSession, customer_id: str) -> None:
    """The customer's summaries from its transactions as they now stand, and its scores."""

    await session.flush()
    await summaries.rebuild_summaries(session, [customer_id])
    if not await repository.has_summary(session, customer_id):
        await repository.drop_scores(session, customer_id)  # no purchase left: unscored, as before the first
    await rescore_customers(session, [customer_id], with_referrers=True)


async def refunds(*, session: AsyncSession, transaction_id: str, after: tuple[datetime, str] | None, limit: int):
    """(the purchase, a page of its refunds oldest first)."""
    transaction = await session.get(Transaction, transaction_id)
    if transaction is None:
        raise NotFound(f"no transaction with id {transaction_id}")
    return transaction, await repository.list_refunds(session, transaction_id=transaction_id, after=after, limit=limit)
