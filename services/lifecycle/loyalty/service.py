"""The loyalty programme: points earned per purchase into an append-only ledger with expiry,
tiers, and redemptions for the offers value sells for points (docs/lifecycle.md "Loyalty
programme").

The ledger. Every change of a customer's points is one entry (kind, signed points, the
balance after it, when it took effect), announced as crm.lifecycle.loyalty.points_changed.
An entry that brings points in (`earned` on a purchase, `credited` by a points offer) is a
*lot*: it keeps what is left of it (`remaining`) and when it expires. Points going out are
taken from lots, so the balance is always the sum of the lots' remaining points:

- a redemption takes from the lots that expire first (never-expiring ones last);
- a refund takes back the purchase's points in proportion to the money refunded
  (floor(earned × refunded so far / purchase amount), less what earlier refunds took), first
  from the purchase's own lot, then from the lots that expire first; a void takes back what
  the purchase earned and refunds did not take yet;
- the balance never goes below 0: points already spent are not clawed back (the shortfall is
  forgiven; refunds' bookkeeping still counts them as taken, so a later refund or void of the
  same purchase does not take them again);
- a lot expires, whole or what is left of it, `expiry_months` after the purchase (or the
  offer): an `expired` entry dated at the expiry instant. The sweep writes them (hourly, and
  POST /v1/loyalty/sweeps), and so does every write for the customer before it changes
  anything; a read between sweeps already leaves out what has expired. A lot expires once:
  the entry's key is the lot's id, and its remaining becomes 0.

Tiers. By points over the last 12 months (earned and credited, less what refunds and voids
took back; spending and expiry do not lower it) or by predicted CLV (identify's scores), as
the programme says; the highest tier whose threshold the customer reaches, none below the
lowest. Re-judged when the customer's points change or, for CLV, its score does; the sweep
re-judges every account (points age out of the 12 months, thresholds change).
crm.lifecycle.loyalty.tier_changed announces each change.

Redemptions. lifecycle knows value's offer templates from crm.value.offer_template.changed
(value's read model here: `loyalty_rewards`); a template with a `points_price` can be bought
for that many points. lifecycle debits first (a `redeemed` entry and
crm.lifecycle.loyalty.points_redeemed, in one transaction), then value issues the offer
(crm.value.offer.issued naming the redemption) or refuses it
(crm.value.loyalty_redemption.refused): the points go back to the lots they came from, as a
`returned` entry, except those of lots that expired meanwhile (they would have expired).
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.lifecycle.loyalty import repository
from services.lifecycle.loyalty.schemas import ProgrammeIn
from services.lifecycle.models import aliases, profiles
from shared.db.database import utcnow
from shared.db.ids import uuid7
from shared.events.contracts import (
    CustomerScored,
    LoyaltyRedemptionRefused,
    OfferIssued,
    OfferTemplateChanged,
    TransactionRecorded,
    TransactionRefunded,
    TransactionVoided,
)
from shared.events.customer_aliases import Merge
from shared.events.envelope import Event
from shared.events.messaging import emit, emit_many
from shared.http.errors import Conflict, field_error

POINTS_CHANGED = "crm.lifecycle.loyalty.points_changed"
POINTS_REDEEMED = "crm.lifecycle.loyalty.points_redeemed"
TIER_CHANGED = "crm.lifecycle.loyalty.tier_changed"
TEMPLATE_CHANGED = "crm.value.offer_template.changed"
SWEEP_PAGE = 1000

# The programme until the first PUT /v1/loyalty/programme.
DEFAULT: dict[str, Any] = {
    "version": 0,
    "points_per_unit": Decimal(1),
    "expiry_months": 12,
    "tier_basis": "points_12m",
    "tiers": [
        {"name": "bronze", "threshold": 0},
        {"name": "silver", "threshold": 1000},
        {"name": "gold", "threshold": 5000},
    ],
    "updated_at": None,
}


def add_months(when: datetime, months: int) -> datetime:
    """`when` moved by whole calendar months (the 31st becomes the month's last day)."""

    index = when.year * 12 + when.month - 1 + months
    year, month = divmod(index, 12)
    day = min(when.day, calendar.monthrange(year, month + 1)[1])
    return when.replace(year=year, month=month + 1, day=day)


# --- the programme -----------------------------------------------------------------------


async def programme(session: AsyncSession) -> dict[str, Any]:
    return await repository.read_programme(session) or dict(DEFAULT)


def present_programme(row: dict[str, Any], members: dict[str, int] | None = None) -> dict[str, Any]:
    """The programme as the API shows it; with `members`, each tier's count of customers."""
    return {
        "version": row["version"],
        "points_per_unit": format(Decimal(row["points_per_unit"]).normalize(), "f"),
        "expiry_months": row["expiry_months"],
        "tier_basis": row["tier_basis"],
        "tiers": [
            {
                "name": t["name"],
                "threshold": t["threshold"],
                "members": None if members is None else members.get(t["name"], 0),
            }
            for t in row["tiers"]
        ],
        "updated_at": row["updated_at"],
    }


async def get_programme(*, session: AsyncSession) -> dict[str, Any]:
    """The programme, and how many customers each tier holds as the last judgement left them
    (a PUT's new thresholds reach the counts with the next sweep, as they reach the accounts)."""
    return present_programme(await programme(session), await repository.tier_members(session))


async def set_programme(*, session: AsyncSession, data: ProgrammeIn) -> dict[str, Any]:
    """The new programme (a new version). The earning rule and expiry apply to points earned from
    now on; tiers are re-judged by the next sweep (POST /v1/loyalty/sweeps runs one now)."""

    current = await repository.read_programme(session, lock=True)
    row = {
        "version": (current["version"] if current else 0) + 1,
        "points_per_unit": data.points_per_unit,
        "expiry_months": data.expiry_months,
        "tier_basis": data.tier_basis,
        "tiers": [{"name": t.name, "threshold": t.threshold} for t in data.tiers],
        "updated_at": utcnow(),
    }
    await repository.save_programme(session, row, exists=current is not None)
    return present_programme(row)


def tier_for(prog: dict[str, Any], value: float | int | None) -> str | None:
    """The highest tier whose threshold `value` reaches; None below the lowest (or no value)."""

    if value is None:
        return None
    reached = None
    for tier in prog["tiers"]:
        if Decimal(str(value)) >= Decimal(str(tier["threshold"])):
            reached = tier["name"]
    return reached


# --- the book: some customers' accounts and lots, changed in memory, written at once ---


class Book:
    """The accounts and lots of the customers a write touches, with the entries it makes.

    Opened with the accounts locked (PostgreSQL: FOR UPDATE in id order), so the consumer,
    the sweep and a redemption never interleave on one customer's points."""

    def __init__(self, prog: dict[str, Any], now: datetime):
        self.prog = prog
        self.now = now
        self.accounts: dict[str, dict[str, Any]] = {}
        self.new_accounts: set[str] = set()
        self.lots: dict[str, dict[str, Any]] = {}
        # {transaction id: the lot its purchase earned}
        self.purchases: dict[str, dict[str, Any]] = {}
        self.changed_lots: set[str] = set()
        self.entries: list[dict[str, Any]] = []
        self.new_lots: set[str] = set()
        self.keys: set[str] = set()
        self.touched: set[str] = set()

    @classmethod
    async def open(
        cls,
        session: AsyncSession,
        prog: dict[str, Any],
        now: datetime,
        customer_ids: Iterable[str],
        *,
        purchase_ids: Iterable[str] = (),
        lot_ids: Iterable[str] = (),
        keys: Iterable[str] = (),
        with_lots: bool = True,
    ) -> Book:
        book = cls(prog, now)
        ids = set(customer_ids)
        book.accounts = await repository.lock_accounts(session, ids)
        for lot in [
            *(await repository.open_lots(session, ids) if with_lots else []),
            *await repository.purchase_lots(session, purchase_ids),
            *await repository.lots_by_id(session, lot_ids),
        ]:
            book._hold(lot)
        book.keys = await repository.existing_keys(session, keys)
        return book

    def _hold(self, lot: dict[str, Any]) -> None:
        self.lots[lot["entry_id"]] = lot
        if lot["kind"] == "earned" and lot["source_id"] is not None:
            self.purchases[lot["source_id"]] = lot

    def account(self, customer_id: str) -> dict[str, Any]:
        account = self.accounts.get(customer_id)
        if account is None:
            account = self.accounts[customer_id] = {
                "customer_id": customer_id,
                "balance": 0,
                "tier": None,
                "tier_since": None,
                "updated_at": self.now,
            }
            self.new_accounts.add(customer_id)
        return account

    def balance(self, customer_id: str) -> int:
        return int(self.account(customer_id)["balance"])

    def _entry(
        self,
        customer_id: str,
        kind: str,
        points: int,
        *,
        at: datetime,
        key: str,
        source_id: str | None,
        event_id: str | None,
        expires_at: datetime | None = None,
        lot: bool = False,
        basis: Decimal | None = None,
    ) -> dict[str, Any] | None:
        if key in self.keys or (points == 0 and not lot):
            return None
        self.keys.add(key)
        account = self.account(customer_id)
        account["balance"] += points
        account["updated_at"] = self.now
        self.touched.add(customer_id)
        row = {
            "entry_id": uuid7(),
            "customer_id": customer_id,
            "kind": kind,
            "points": points,
            "balance": account["balance"],
            "at": at,
            "source_key": key,
            "source_id": source_id,
            "source_event_id": event_id,
            "expires_at": expires_at,
            "remaining": points if lot else None,
            "taken_back": 0,
            "basis": basis,
        }
        self.entries.append(row)
        if lot:
            self._hold(row)
            self.new_lots.add(row["entry_id"])
        return row

    def add_lot(
        self,
        customer_id: str,
        kind: str,
        points: int,
        *,
        at: datetime,
        key: str,
        source_id: str,
        event_id: str | None,
        basis: Decimal | None = None,
    ) -> None:
        months = self.prog["expiry_months"]
        expires_at = add_months(at, months) if months else None
        self._entry(
            customer_id,
            kind,
            points,
            at=at,
            key=key,
            source_id=source_id,
            event_id=event_id,
            expires_at=expires_at,
            lot=True,
            basis=basis,
        )

    def _open_lots(self, customer_id: str, first: str | None = None) -> list[dict[str, Any]]:
        lots = [
            lot
            for lot in self.lots.values()
            if lot["customer_id"] == customer_id and (lot["remaining"] or 0) > 0 and not self._expired(lot)
        ]
        lots.sort(
            key=lambda lot: (
                lot["entry_id"] != first,
                lot["expires_at"] is None,
                lot["expires_at"] or self.now,
                lot["entry_id"],
            )
        )
        return lots

    def _expired(self, lot: dict[str, Any]) -> bool:
        return lot["expires_at"] is not None and lot["expires_at"] <= self.now

    def _change_lot(self, lot: dict[str, Any], **values: int) -> None:
        lot.update(values)
        if lot["entry_id"] not in self.new_lots:
            self.changed_lots.add(lot["entry_id"])

    def take(
        self,
        customer_id: str,
        points: int,
        kind: str,
        *,
        at: datetime,
        key: str,
        source_id: str | None,
        event_id: str | None,
        first: str | None = None,
    ) -> dict[str, int]:
        """Take up to `points` (never below a 0 balance) from the customer's lots, `first`'s
        first, then those expiring first: {lot id: points taken}."""

        wanted = min(points, self.balance(customer_id))
        if wanted <= 0 or key in self.keys:
            return {}
        taken: dict[str, int] = {}
        for lot in self._open_lots(customer_id, first):
            if wanted == 0:
                break
            part = min(wanted, lot["remaining"])
            self._change_lot(lot, remaining=lot["remaining"] - part)
            taken[lot["entry_id"]] = part
            wanted -= part
        total = sum(taken.values())
        self._entry(customer_id, kind, -total, at=at, key=key, source_id=source_id, event_id=event_id)
        return taken

    def take_back(self, lot: dict[str, Any], target: int, kind: str, *, at: datetime, key: str, event_id: str) -> None:
        """Take a purchase's points back (a refund, a void) until `target` of them are taken in all."""

        owed = min(target, lot["points"]) - lot["taken_back"]
        if owed <= 0:
            return
        self._change_lot(lot, taken_back=lot["taken_back"] + owed)
        self.take(
            lot["customer_id"],
            owed,
            kind,
            at=at,
            key=key,
            source_id=lot["source_id"],
            event_id=event_id,
            first=lot["entry_id"],
        )

    def give_back(
        self, customer_id: str, allocation: dict[str, int], *, at: datetime, key: str, source_id: str, event_id: str
    ) -> int:
        """Return a refused redemption's points to the lots they came from (not to lots expired since)."""

        if key in self.keys:
            return 0
        total = 0
        for entry_id, points in allocation.items():
            lot = self.lots.get(entry_id)
            if lot is None or lot["customer_id"] != customer_id or self._expired(lot):
                continue
            self._change_lot(lot, remaining=lot["remaining"] + points)
            total += points
        self._entry(customer_id, "returned", total, at=at, key=key, source_id=source_id, event_id=event_id)
        return total

    def expire_due(self) -> int:
        """An `expired` entry for what is left of each lot past its expiry, dated at the expiry."""

        due = [lot for lot in self.lots.values() if (lot["remaining"] or 0) > 0 and self._expired(lot)]
        due.sort(key=lambda lot: (lot["expires_at"], lot["entry_id"]))
        for lot in due:
            points = lot["remaining"]
            self._change_lot(lot, remaining=0)
            self._entry(
                lot["customer_id"],
                "expired",
                -points,
                at=lot["expires_at"],
                key=f"expired:{lot['entry_id']}",
                source_id=lot["entry_id"],
                event_id=None,
            )
        return len(due)

    async def close(
        self, session: AsyncSession, *, judge: Iterable[str] = (), clv: dict[str, float | None] | None = None
    ) -> int:
        """Write the entries, lots and accounts, announce the entries, re-judge the tiers of the
        touched customers and of `judge`; the number of tier changes."""

        await repository.insert_entries(session, self.entries)
        await repository.update_lots(session, [self.lots[entry_id] for entry_id in sorted(self.changed_lots)])
        emit_many(
            session,
            POINTS_CHANGED,
            [
                {
                    "entry_id": e["entry_id"],
                    "customer_id": e["customer_id"],
                    "kind": e["kind"],
                    "points": e["points"],
                    "balance": e["balance"],
                    "source_event_id": e["source_event_id"],
                    "expires_at": e["expires_at"],
                    "at": e["at"],
                }
                for e in self.entries
            ],
            [e["customer_id"] for e in self.entries],
        )
        changes = await self._judge(session, self.touched | set(judge), clv or {})
        await repository.insert_accounts(session, [self.accounts[cid] for cid in sorted(self.new_accounts)])
        await repository.update_accounts(
            session, [self.accounts[cid] for cid in sorted(self.touched | set(judge)) if cid not in self.new_accounts]
        )
        return changes

    async def _judge(self, session: AsyncSession, customer_ids: set[str], clv: dict[str, float | None]) -> int:
        if not customer_ids:
            return 0
        if self.prog["tier_basis"] == "clv":
            missing = customer_ids - clv.keys()
            known = await profiles.of(session, missing) if missing else {}
            values: dict[str, Any] = {
                cid: clv.get(cid, (known.get(cid) or {}).get("predicted_clv")) for cid in customer_ids
            }
        else:
            points = await repository.points_since(session, customer_ids, add_months(self.now, -12))
            values = {cid: points.get(cid, 0) for cid in customer_ids}
        changes = []
        for cid in sorted(customer_ids):
            account = self.account(cid)
            tier = tier_for(self.prog, values[cid])
            if tier != account["tier"]:
                changes.append({"customer_id": cid, "from_tier": account["tier"], "to_tier": tier, "at": self.now})
                account.update(tier=tier, tier_since=self.now, updated_at=self.now)
        emit_many(session, TIER_CHANGED, changes, [c["customer_id"] for c in changes])
        return len(changes)


# --- the consumer: purchases, refunds, voids, points offers, value's answers --------------


def _points_for(prog: dict[str, Any], amount: Decimal) -> int:
    return int((amount * Decimal(prog["points_per_unit"])).to_integral_value(rounding=ROUND_FLOOR))


async def apply_events(*, session: AsyncSession, events: list[Event[Any]]) -> None:
    """Apply a micro-batch in stream order."""

    templates = [e.data for e in events if isinstance(e.data, OfferTemplateChanged)]
    if templates:
        await repository.upsert_rewards(session, [_reward(t) for t in templates])
    prog = await programme(session)
    # Scores matter only to CLV tiers (a refit announces many).
    events = [
        e
        for e in events
        if not isinstance(e.data, OfferTemplateChanged)
        and (prog["tier_basis"] == "clv" or not isinstance(e.data, CustomerScored))
    ]
    if not events:
        return
    now = utcnow()
    customers = {e.customer_id for e in events if e.customer_id is not None}
    purchase_ids = {
        e.data.transaction_id for e in events if isinstance(e.data, (TransactionRefunded, TransactionVoided))
    }
    redemption_ids = {e.data.redemption_id for e in events if isinstance(e.data, LoyaltyRedemptionRefused)} | {
        e.data.redemption_id for e in events if isinstance(e.data, OfferIssued) and e.data.redemption_id
    }
    redemptions = await repository.redemptions_by_id(session, redemption_ids)
    book = await Book.open(
        session,
        prog,
        now,
        customers,
        purchase_ids=purchase_ids,
        lot_ids={lot for r in redemptions.values() for lot in r["allocation"]},
        keys=[key for e in events for key in _keys(e)],
    )
    book.expire_due()
    clv: dict[str, float | None] = {}
    for event in events:
        data = event.data
        if isinstance(data, TransactionRecorded):
            _earn(book, event, data)
        elif isinstance(data, TransactionRefunded):
            _refund(book, event, data)
        elif isinstance(data, TransactionVoided):
            _void(book, event, data)
        elif isinstance(data, OfferIssued):
            _offer(book, event, data, redemptions)
        elif isinstance(data, LoyaltyRedemptionRefused):
            _refused(book, event, data, redemptions)
        elif isinstance(data, CustomerScored):
            clv[data.customer_id] = data.predicted_clv
    book.expire_due()
    await book.close(session, judge=clv.keys(), clv=clv)
    for redemption in redemptions.values():
        if redemption.get("settled"):
            await repository.settle_redemption(session, redemption)


def _keys(event: Event[Any]) -> list[str]:
    data = event.data
    if isinstance(data, TransactionRecorded):
        return [f"earned:{data.id}"]
    if isinstance(data, TransactionRefunded):
        return [f"refunded:{data.refund_id}"]
    if isinstance(data, TransactionVoided):
        return [f"voided:{data.transaction_id}"]
    if isinstance(data, OfferIssued):
        return [f"credited:{data.id}"]
    if isinstance(data, LoyaltyRedemptionRefused):
        return [f"returned:{data.redemption_id}"]
    return []


def _reward(t: OfferTemplateChanged) -> dict[str, Any]:
    return {
        "template_id": t.id,
        "kind": t.kind,
        "title": t.title,
        "points_price": t.points_price,
        "valid_from": t.valid_from,
        "valid_until": t.valid_until,
        "changed_at": t.changed_at,
    }


def _earn(book: Book, event: Event[Any], data: TransactionRecorded) -> None:
    # Only reporting amounts add up (shared/decisions.md); an older producer's purchase without one,
    # or its negative "refund", earns nothing.
    if data.reporting_amount is None or data.reporting_amount <= 0:
        return
    points = _points_for(book.prog, data.reporting_amount)
    if points > 0:
        book.add_lot(
            data.customer_id,
            "earned",
            points,
            at=data.occurred_at,
            key=f"earned:{data.id}",
            source_id=data.id,
            event_id=event.id,
            basis=data.amount,
        )


def _purchase_lot(book: Book, transaction_id: str) -> dict[str, Any] | None:
    return book.purchases.get(transaction_id)


def _refund(book: Book, event: Event[Any], data: TransactionRefunded) -> None:
    lot = _purchase_lot(book, data.transaction_id)
    if lot is None or not lot["basis"]:
        return
    refunded = data.refunded_amount
    if refunded is None:  # an older producer: this refund on top of what earlier ones took
        share = Decimal(lot["points"]) * data.amount / Decimal(lot["basis"])
        target = lot["taken_back"] + int(share.to_integral_value(rounding=ROUND_FLOOR))
    else:
        share = Decimal(lot["points"]) * min(refunded / Decimal(lot["basis"]), Decimal(1))
        target = int(share.to_integral_value(rounding=ROUND_FLOOR))
    book.take_back(lot, target, "refunded", at=data.occurred_at, key=f"refunded:{data.refund_id}", event_id=event.id)


def _void(book: Book, event: Event[Any], data: TransactionVoided) -> None:
    lot = _purchase_lot(book, data.transaction_id)
    if lot is not None:
        book.take_back(
            lot, lot["points"], "voided", at=data.voided_at, key=f"voided:{data.transaction_id}", event_id=event.id
        )


def _offer(book: Book, event: Event[Any], data: OfferIssued, redemptions: dict[str, dict[str, Any]]) -> None:
    redemption = redemptions.get(data.redemption_id) if data.redemption_id else None
    if redemption is not None and redemption["status"] == "pending":
        redemption.update(status="issued", offer_id=data.id, settled_at=book.now, settled=True)
    if data.points and data.points > 0:
        book.add_lot(
            data.customer_id,
            "credited",
            data.points,
            at=data.issued_at,
            key=f"credited:{data.id}",
            source_id=data.id,
            event_id=event.id,
        )


def _refused(
    book: Book, event: Event[Any], data: LoyaltyRedemptionRefused, redemptions: dict[str, dict[str, Any]]
) -> None:
    redemption = redemptions.get(data.redemption_id)
    if redemption is None or redemption["status"] != "pending":
        return
    redemption.update(status="refused", reason=data.reason[:40], settled_at=book.now, settled=True)
    book.give_back(
        redemption["customer_id"],
        redemption["allocation"],
        at=data.refused_at,
        key=f"returned:{data.redemption_id}",
        source_id=data.redemption_id,
        event_id=event.id,
    )


# --- redemptions ----------------------------------------------------------------------


async def redeem(*, session: AsyncSession, customer_id: str, template_id: str) -> dict[str, Any]:
    """Debit the template's points price and ask value for the offer; 409 `insufficient_points`
    (nothing written) when the balance is short."""

    await aliases.refuse_merged(session, customer_id)
    if await profiles.get(session, customer_id) is None:
        raise await aliases.not_found_or_merged(session, customer_id)
    reward = await repository.read_reward(session, template_id)
    if reward is None or reward["points_price"] is None:
        raise field_error("body.template_id", f"no offer template {template_id} is sold for points")
    now = utcnow()
    if reward["valid_until"] is not None and reward["valid_until"] <= now:
        raise Conflict(
            f"offer template {template_id} was valid until {reward['valid_until'].isoformat()}",
            error="template_expired",
        )
    price = int(reward["points_price"])
    book = await Book.open(session, await programme(session), now, [customer_id])
    book.expire_due()
    balance = book.balance(customer_id)
    if balance < price:
        raise Conflict(
            f"offer template {template_id} costs {price} points; customer {customer_id} has {balance}",
            error="insufficient_points",
        )
    redemption_id = uuid7()
    allocation = book.take(
        customer_id, price, "redeemed", at=now, key=f"redeemed:{redemption_id}", source_id=redemption_id, event_id=None
    )
    row = {
        "redemption_id": redemption_id,
        "customer_id": customer_id,
        "template_id": template_id,
        "points": price,
        "status": "pending",
        "offer_id": None,
        "reason": None,
        "allocation": allocation,
        "created_at": now,
        "settled_at": None,
    }
    await repository.insert_redemption(session, row)
    await book.close(session)
    emit(
        session,
        POINTS_REDEEMED,
        {
            "redemption_id": redemption_id,
            "customer_id": customer_id,
            "template_id": template_id,
            "points": price,
            "redeemed_at": now,
        },
        subject=customer_id,
    )
    return {**row, "balance": book.balance(customer_id)}


# --- reading ----------------------------------------------------------------------------


async def loyalty_of(*, session: AsyncSession, customer_id: str, before_id: str | None, limit: int) -> dict[str, Any]:
    """The balance (less what expired since the last write), the tier, and a page of the ledger."""

    account = await repository.read_account(session, customer_id)
    if account is None and await profiles.get(session, customer_id) is None:
        raise await aliases.not_found_or_merged(session, customer_id)
    prog = await programme(session)
    now = utcnow()
    balance = 0
    if account is not None:
        balance = account["balance"] - await repository.due_points(session, customer_id, now)
    points = None
    if prog["tier_basis"] == "points_12m":
        points = (await repository.points_since(session, [customer_id], add_months(now, -12))).get(customer_id, 0)
    return {
        "customer_id": customer_id,
        "balance": balance,
        "tier": account["tier"] if account else None,
        "tier_since": account["tier_since"] if account else None,
        "tier_basis": prog["tier_basis"],
        "points_last_12_months": points,
        "entries": await repository.ledger_page(session, customer_id, before_id=before_id, limit=limit),
    }


# --- the sweep ----------------------------------------------------------------------------


async def sweep(*, session: AsyncSession, now: datetime | None = None) -> dict[str, int]:
    """Expire every lot past its expiry and re-judge every account's tier. Idempotent: a lot
    expires once, and a tier unchanged is not announced again."""

    now = now or utcnow()
    prog = await programme(session)
    expired = changes = 0
    while due := await repository.customers_with_due_lots(session, now, SWEEP_PAGE):
        book = await Book.open(session, prog, now, due)
        expired += book.expire_due()
        changes += await book.close(session)
    after = None
    while page := await repository.accounts_after(session, after, SWEEP_PAGE):
        ids = [row["customer_id"] for row in page]
        book = await Book.open(session, prog, now, ids, with_lots=False)
        changes += await book.close(session, judge=ids)
        after = ids[-1]
    return {"expired_entries": expired, "tier_changes": changes}


# --- merges ---------------------------------------------------------------------------------


async def follow_loyalty_merge(session: AsyncSession, merge: Merge) -> None:
    """A merge step: the survivor gets the merged customers' ledgers, lots, redemptions and balances."""

    survivor, merged = merge.survivor_id, merge.merged_ids
    accounts = await repository.lock_accounts(session, [survivor, *merged])
    if not any(cid in accounts for cid in merged):
        return
    await repository.move_to_survivor(session, merged_ids=merged, survivor_id=survivor)
    book = await Book.open(session, await programme(session), utcnow(), [survivor])
    account = book.account(survivor)
    account["balance"] = sum(int(row["balance"]) for row in accounts.values())
    book.expire_due()
    await book.close(session, judge=[survivor])
