"""End to end: lifecycle's retention analytics through the gateway, fed by purchases recorded
through it: the cohort matrix, the survival curve and the funnel (the CDNOW cohorts are rebuilt
cell by cell in tests/services/test_lifecycle_analytics.py)."""

from __future__ import annotations

from tests.support import wait_until


async def test_cohorts_survival_and_funnel_through_the_gateway(running_suite):
    async with running_suite.client() as gw:
        for n, months in enumerate([("1997-01", "1997-02"), ("1997-01",), ("1997-02", "1997-04")]):
            customer = await gw.post("/v1/customers", json={"email": f"cohort{n}@example.com"})
            assert customer.status_code == 201, customer.text
            for month in months:
                response = await gw.post(
                    "/v1/transactions",
                    json={
                        "customer_id": customer.json()["id"],
                        "amount": "12.00",
                        "currency": "USD",
                        "occurred_at": f"{month}-15T12:00:00Z",
                        "external_id": f"cohort{n}-{month}",
                    },
                )
                assert response.status_code == 201, response.text

        async def matrix():
            body = (await gw.get("/v1/lifecycle/cohorts", params={"by": "month", "from": "1997-01"})).json()
            cells = [(c["cohort"], c["size"], [m["customers"] for m in c["months"]]) for c in body["cohorts"]]
            return cells if sum(size for _, size, _ in cells) == 3 and len(cells[-1][2]) == 3 else None

        assert await wait_until(matrix, timeout=60, what="the cohorts in lifecycle") == [
            ("1997-01", 2, [2, 1, 0, 0]),
            ("1997-02", 1, [1, 0, 1]),
        ]
        survival = await gw.get("/v1/lifecycle/survival", params={"as_of": "1997-06-01T00:00:00Z"})
        assert survival.status_code == 200, survival.text
        assert (survival.json()["customers"], survival.json()["churned"]) == (3, 0)  # nobody churned: all censored
        funnel = await gw.get("/v1/lifecycle/funnel")
        assert funnel.status_code == 200, funnel.text
        assert [s["stage"] for s in funnel.json()["stages"]][:3] == ["prospect", "new", "active"]
        bad = await gw.get("/v1/lifecycle/cohorts", params={"from": "1997-13"})
        assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "query.from", bad.text
