"""Dates a client gives are bounded (VALUECHAIN_IDENTIFY_DATE_FLOOR, now plus
VALUECHAIN_IDENTIFY_DATE_SKEW_S) on every path, and scoring survives any date at all:
a purchase dated 9999 was a plain-text 500 that lost the whole batch or import."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest

from services.identify import settings
from services.identify.imports.parsing import ImportedTransaction
from services.identify.portfolio.repository import CustomerArrays
from services.identify.portfolio.summaries import discount_factor
from services.identify.transactions.schemas import TransactionCreate
from services.identify.transactions.service import record_transactions
from shared.db.database import utcnow
from shared.db.uow import transaction
from tests.services.identify.test_imports import run_import
from tests.services.identify.test_portfolio import SMALL_PORTFOLIO_END, create_customer, refit, small_portfolio

FAR_FUTURE = "9999-12-31T23:59:59Z"


def purchase(customer_id: str, occurred_at: str, **fields) -> dict:
    return {"customer_id": customer_id, "amount": "10", "currency": "USD", "occurred_at": occurred_at, **fields}


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


async def test_occurred_at_outside_the_bounds_is_a_422_naming_the_field_and_the_bounds(suite):
    identify = await suite.start("identify")
    client = identify.client
    ada = await create_customer(client, external_id="ada")
    now = utcnow()
    for bad in (
        FAR_FUTURE,
        "0001-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "2099-01-01T00:00:00+05:00",
        iso(now + timedelta(days=2)),
    ):
        response = await client.post("/v1/transactions", json=purchase(ada, bad))
        assert response.status_code == 422, (bad, response.text)
        (error,) = response.json()["detail"]
        assert error["field"] == "body.occurred_at", bad
        assert "1970-01-01T00:00:00Z" in error["message"] and "clock skew" in error["message"]
    for good in ("1970-01-01T00:00:00Z", iso(now + timedelta(hours=1))):
        response = await client.post("/v1/transactions", json=purchase(ada, good))
        assert response.status_code == 201, (good, response.text)


async def test_a_far_future_item_fails_alone_in_a_batch(suite):
    identify = await suite.start("identify")
    client = identify.client
    ids = await small_portfolio(client)
    assert (await refit(client, calibration_end=SMALL_PORTFOLIO_END, time_unit="day"))["status"] == "done"
    items = [purchase(ids[i], f"2026-06-2{i}T10:00:00Z") for i in range(4)]
    items.insert(2, purchase(ids[9], FAR_FUTURE))
    response = await client.post("/v1/transactions:batch", json={"items": items})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [item["status"] for item in body["items"]] == ["created", "created", "error", "created", "created"]
    assert body["items"][2]["error"]["detail"][0]["field"] == "body.items.2.occurred_at"
    for i in range(4):
        customer = (await client.get(f"/v1/customers/{ids[i]}")).json()
        assert customer["purchase_count"] == 2 + i % 5  # small_portfolio's 1 + i % 5, and this one


async def test_an_import_rejects_the_rows_out_of_bounds_with_their_line_and_goes_on(suite):
    identify = await suite.start("identify")
    client = identify.client
    content = (
        "customer_external_id,occurred_at,amount,currency\n"
        "a,2026-01-05,10,USD\n"
        "b,99991231,10,USD\n"
        "c,0001-01-01,10,USD\n"
        "d,2026-01-06T10:00:00Z,10,USD\n"
    )
    job = await run_import(client, content, create_customers=True)
    assert job["status"] == "done", job
    assert (job["recorded"], job["rejected"]) == (2, 2)
    reasons = {error["line"]: error["reason"] for error in job["errors"]}
    assert set(reasons) == {3, 4}
    assert reasons[3].startswith("occurred_at '99991231' must be from 1970-01-01T00:00:00Z")


async def test_calibration_end_is_bounded_like_occurred_at(suite):
    identify = await suite.start("identify")
    client = identify.client
    tomorrow = (utcnow() + timedelta(days=1)).date()
    for bad in ("9999-12-31", "1969-12-31", str(tomorrow + timedelta(days=1))):
        response = await client.post("/v1/portfolio/refits", json={"calibration_end": bad})
        assert response.status_code == 422, (bad, response.text)
        (error,) = response.json()["detail"]
        assert error["field"] == "body.calibration_end"
        assert f"from 1970-01-01 to {tomorrow}" in error["message"]
    assert (await client.post("/v1/portfolio/refits", json={"calibration_end": str(tomorrow)})).status_code == 202


async def test_scoring_survives_a_purchase_dated_9999_already_stored(suite):
    """Stored before the bounds existed (or past them): re-scoring used to raise OverflowError.
    (Not 9999-12-31: asyncpg stores date.max as PostgreSQL's `infinity`, a date no
    arithmetic takes, and purchase_days keeps the day.)"""

    identify = await suite.start("identify")
    client = identify.client
    ids = await small_portfolio(client)
    assert (await refit(client, calibration_end=SMALL_PORTFOLIO_END, time_unit="day"))["status"] == "done"
    far = ImportedTransaction(
        ids[0], amount=Decimal(5), currency="USD", occurred_at=datetime(9999, 12, 30, 23, 59, 59, tzinfo=UTC)
    )
    async with transaction(identify.runtime.db.writer) as session:
        (outcome,) = await record_transactions(session=session, items=[far])
    assert outcome.status == "created"
    scores = (await client.get(f"/v1/customers/{ids[0]}")).json()["scores"]
    assert scores["historic_clv"] is None  # beyond a float: null, not a 500
    assert (await refit(client, calibration_end=SMALL_PORTFOLIO_END, time_unit="day"))["status"] == "done"


def test_compounding_overflows_to_infinity_not_to_an_exception():
    arrays = CustomerArrays(["c"], *([np.ones(1)] * 12))
    arrays.compound_to(2_932_896, 0.10)  # 9999-12-31
    assert np.isinf(arrays.compounded_spend[0])
    assert discount_factor(date(1, 1, 1), 1.0) == float("inf")
    assert discount_factor(date(9999, 12, 31), 0.10) == 0.0


def test_the_bounds_are_settings(monkeypatch):
    monkeypatch.setenv("VALUECHAIN_IDENTIFY_DATE_FLOOR", "2000-01-01T00:00:00")  # no zone: UTC
    monkeypatch.setenv("VALUECHAIN_IDENTIFY_DATE_SKEW_S", "0")
    body = {"customer_id": "c", "amount": "1", "currency": "USD"}
    for refused in ("1999-12-31T23:59:59Z", iso(utcnow() + timedelta(minutes=1))):
        with pytest.raises(ValueError, match="must be from 2000-01-01T00:00:00Z to now plus"):
            TransactionCreate.model_validate({**body, "occurred_at": refused})
    TransactionCreate.model_validate({**body, "occurred_at": "2000-01-01T00:00:00Z"})
    with pytest.raises(ValueError):
        settings.PortfolioSettings(date_skew_s=31 * 86400)  # a month ahead is no clock skew
