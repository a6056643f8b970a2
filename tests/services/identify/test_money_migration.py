"""Migration 5c3e9a1f7b20 backfills reporting amounts: transactions in the reporting
currency report their amount; those in another currency (no rate can be known) report
none, and their customers' summaries no longer add their amounts."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import sqlalchemy as sa

from shared.db.database import UTCDateTime
from shared.db.migrations import upgrade

BEFORE = "5b1e0c7a9d42"


def test_the_backfill_keeps_unlike_currencies_out_of_the_sums(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'identify'}.db"
    upgrade("identify", url, revision=BEFORE)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'identify'}.db")
    at = datetime(2026, 2, 1, 10, tzinfo=UTC)
    customers = sa.table(
        "customers",
        *(sa.column(c) for c in ("id", "external_id", "purchase_count")),
        sa.column("created_at", UTCDateTime()),
        sa.column("updated_at", UTCDateTime()),
    )
    transactions = sa.table(
        "transactions",
        *(sa.column(c) for c in ("id", "customer_id", "amount", "currency", "margin")),
        sa.column("occurred_at", UTCDateTime()),
        sa.column("recorded_at", UTCDateTime()),
    )
    days = sa.table("purchase_days", *(sa.column(c) for c in ("customer_id", "day", "purchases", "spend")))
    summaries = sa.table(
        "purchase_summaries",
        *(
            sa.column(c)
            for c in (
                "customer_id",
                "purchases",
                "purchase_days",
                "total_spend",
                "first_day_spend",
                "total_margin",
                "discounted_spend",
                "discount_rate",
            )
        ),
        *(sa.column(c, UTCDateTime()) for c in ("first_purchase_at", "last_purchase_at", "updated_at")),
    )
    with engine.begin() as connection:
        connection.execute(
            customers.insert(),
            [
                {"id": cid, "external_id": cid, "purchase_count": n, "created_at": at, "updated_at": at}
                for cid, n in (("usd-only", 1), ("mixed", 2))
            ],
        )
        connection.execute(
            transactions.insert(),
            [
                {
                    "id": "t1",
                    "customer_id": "usd-only",
                    "amount": 10,
                    "currency": "USD",
                    "margin": 2,
                    "occurred_at": at,
                    "recorded_at": at,
                },
                {
                    "id": "t2",
                    "customer_id": "mixed",
                    "amount": 20,
                    "currency": "USD",
                    "margin": 5,
                    "occurred_at": at,
                    "recorded_at": at,
                },
                {
                    "id": "t3",
                    "customer_id": "mixed",
                    "amount": 1000,
                    "currency": "JPY",
                    "margin": 100,
                    "occurred_at": at.replace(day=3),
                    "recorded_at": at,
                },
            ],
        )
        # The summaries as the old code kept them: 20 USD + 1000 JPY added up as 1020.
        connection.execute(
            days.insert(),
            [
                {"customer_id": "usd-only", "day": date(2026, 2, 1), "purchases": 1, "spend": 10},
                {"customer_id": "mixed", "day": date(2026, 2, 1), "purchases": 1, "spend": 20},
                {"customer_id": "mixed", "day": date(2026, 2, 3), "purchases": 1, "spend": 1000},
            ],
        )
        connection.execute(
            summaries.insert(),
            [
                {
                    "customer_id": "usd-only",
                    "purchases": 1,
                    "purchase_days": 1,
                    "total_spend": 10,
                    "first_day_spend": 10,
                    "total_margin": 2,
                    "discounted_spend": 9.0,
                    "discount_rate": 0.1,
                    "first_purchase_at": at,
                    "last_purchase_at": at,
                    "updated_at": at,
                },
                {
                    "customer_id": "mixed",
                    "purchases": 2,
                    "purchase_days": 2,
                    "total_spend": 1020,
                    "first_day_spend": 20,
                    "total_margin": 105,
                    "discounted_spend": 900.0,
                    "discount_rate": 0.1,
                    "first_purchase_at": at,
                    "last_purchase_at": at.replace(day=3),
                    "updated_at": at,
                },
            ],
        )

    upgrade("identify", url)

    with engine.connect() as connection:
        reported = connection.execute(
            sa.text(
                "SELECT id, reporting_amount, reporting_currency, status, refunded_amount FROM transactions ORDER BY id"
            )
        ).all()
        sums = {
            row.customer_id: row
            for row in connection.execute(
                sa.text(
                    "SELECT customer_id, purchases, purchase_days, total_spend, total_margin, discount_rate "
                    "FROM purchase_summaries"
                )
            )
        }
        spend = connection.execute(
            sa.text("SELECT day, purchases, spend FROM purchase_days WHERE customer_id = 'mixed' ORDER BY day")
        ).all()
    engine.dispose()
    assert [
        (r.id, r.reporting_amount and Decimal(str(r.reporting_amount)), r.reporting_currency, r.status)
        for r in reported
    ] == [
        ("t1", Decimal("10"), "USD", "recorded"),
        ("t2", Decimal("20"), "USD", "recorded"),
        ("t3", None, None, "recorded"),
    ]
    untouched = sums["usd-only"]
    assert (untouched.total_spend, untouched.discount_rate) == (10, 0.1)
    mixed = sums["mixed"]
    # Still two purchases on two days, but only the USD revenue; the next refit recomputes its discounting.
    assert (mixed.purchases, mixed.purchase_days, mixed.total_spend, mixed.total_margin, mixed.discount_rate) == (
        2,
        2,
        20,
        5,
        None,
    )
    assert [(p, s) for _, p, s in spend] == [(1, 20), (1, 0)]
