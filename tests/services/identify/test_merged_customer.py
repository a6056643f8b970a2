"""One rule for a merged customer everywhere in identify: it takes no new data. Every write
that names one answers 409 `customer_merged` with the survivor's id in the detail, from
one error (services/identify/customers/service.py); a batch answers it for the item, and
an import rejects the row with the same words. One test per route family."""

from __future__ import annotations

from tests.services.identify.test_imports import run_import


async def _merged(identify) -> tuple[str, str]:
    """(survivor, merged) after a real merge; the merged customer keeps its external id
    (m-1), since the survivor has one of its own."""

    client = identify.client
    ids = []
    for external_id in ("s-1", "m-1"):
        response = await client.post("/v1/customers", json={"external_id": external_id})
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    survivor, merged = ids
    response = await client.post(f"/v1/customers/{survivor}/merge", json={"merge": [merged]})
    assert response.status_code == 200, response.text
    return survivor, merged


def _refused(response, merged: str, survivor: str) -> None:
    assert response.status_code == 409, response.text
    assert_merged_error(response.json(), merged, survivor)


def assert_merged_error(body: dict, merged: str, survivor: str) -> None:
    assert body["error"] == "customer_merged", body
    assert f"customer {merged} was merged into {survivor}" in body["detail"], body


def _purchase(customer_id: str) -> dict:
    return {"customer_id": customer_id, "amount": "5", "currency": "USD", "occurred_at": "2026-03-01T10:00:00Z"}


async def test_customers_a_merged_customer_cannot_be_changed(suite):
    identify = await suite.start("identify")
    survivor, merged = await _merged(identify)

    _refused(await identify.client.patch(f"/v1/customers/{merged}", json={"name": "Someone"}), merged, survivor)
    # Reading it still works, and names the survivor.
    assert (await identify.client.get(f"/v1/customers/{merged}")).json()["merged_into"] == survivor


async def test_transactions_a_merged_customer_records_no_purchase_alone_or_in_a_batch(suite):
    identify = await suite.start("identify")
    client = identify.client
    survivor, merged = await _merged(identify)

    _refused(await client.post("/v1/transactions", json=_purchase(merged)), merged, survivor)

    batch = await client.post("/v1/transactions:batch", json={"items": [_purchase(survivor), _purchase(merged)]})
    assert batch.status_code == 200, batch.text
    created, refused = batch.json()["items"]
    assert created["status"] == "created"
    assert refused["status"] == "error" and refused["transaction"] is None
    assert_merged_error(refused["error"], merged, survivor)
    assert (await client.get(f"/v1/customers/{merged}")).json()["purchase_count"] == 0


async def test_resolution_a_merged_customer_is_neither_merged_into_nor_merged_again(suite):
    identify = await suite.start("identify")
    client = identify.client
    survivor, merged = await _merged(identify)
    other = (await client.post("/v1/customers", json={"external_id": "o-1"})).json()["id"]

    _refused(await client.post(f"/v1/customers/{merged}/merge", json={"merge": [other]}), merged, survivor)
    _refused(await client.post(f"/v1/customers/{other}/merge", json={"merge": [merged]}), merged, survivor)


async def test_portfolio_a_merged_customer_has_no_costs(suite):
    identify = await suite.start("identify")
    client = identify.client
    survivor, merged = await _merged(identify)

    _refused(await client.get(f"/v1/customers/{merged}/costs"), merged, survivor)
    _refused(await client.put(f"/v1/customers/{merged}/costs", json={"acquisition": "10"}), merged, survivor)


async def test_imports_reject_a_merged_customers_rows_with_the_same_words(suite):
    identify = await suite.start("identify")
    survivor, merged = await _merged(identify)
    csv = "customer_external_id,occurred_at,amount,currency\nm-1,2026-01-05,10,USD\ns-1,2026-01-05,10,USD\n"

    job = await run_import(identify.client, csv)

    assert (job["status"], job["recorded"], job["rejected"]) == ("done", 1, 1), job
    (error,) = job["errors"]
    assert error["line"] == 2
    assert error["reason"] == f"customer {merged} was merged into {survivor}; use {survivor} instead"
