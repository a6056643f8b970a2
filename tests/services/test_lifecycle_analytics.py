"""lifecycle's retention analytics (issue 15 §5): the cohort matrix from identify's real purchases
and voids, the CDNOW cohorts rebuilt from the shipped file, the Kaplan–Meier curve against one
worked out by hand, and the stage funnel; bad months and dates are 422 naming the field."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from datetime import UTC, datetime
from statistics import NormalDist

from services.lifecycle.analytics.service import apply_purchases
from services.lifecycle.analytics.survival import kaplan_meier, median
from services.lifecycle.models import StageTransition
from shared.db.bulk import bulk_insert
from shared.db.uow import transaction
from shared.events.contracts import CATALOG
from shared.events.envelope import make_event
from tests.services.identify.test_imports import run_import
from tests.services.test_engage import create_customer, start
from tests.support import cdnow_dir, wait_until

Z = NormalDist().inv_cdf(0.975)


async def _buy(identify, customer_id: str, at: str) -> dict:
    response = await identify.client.post(
        "/v1/transactions",
        json={
            "customer_id": customer_id,
            "amount": "10.00",
            "currency": "USD",
            "occurred_at": at,
            "external_id": f"{customer_id}-{at}",
        },
    )
    assert response.status_code == 201, response.text
    return response.json()


async def _matrix_when(client, expected: list[tuple], **params) -> list[tuple]:
    """The matrix as (cohort, size, [(month, customers), …]) rows, once it is `expected`."""

    async def check():
        response = await client.get("/v1/lifecycle/cohorts", params=params)
        assert response.status_code == 200, response.text
        got = [
            (c["cohort"], c["size"], [(m["month"], m["customers"]) for m in c["months"]])
            for c in response.json()["cohorts"]
        ]
        return got if got == expected else None

    return await wait_until(check, timeout=60, what=f"the cohort matrix {expected}")


async def _seed_transitions(lifecycle, rows: list[tuple[str, str | None, str, str]]) -> None:
    """Stage history as lifecycle's stage machine records it (customer, from, to, at)."""

    async with transaction(lifecycle.runtime.db.writer) as session:
        await bulk_insert(
            session,
            StageTransition.__table__,
            ("customer_id", "from_stage", "to_stage", "at", "event_id"),
            [(cid, a, b, datetime.fromisoformat(at), f"seed-{n}") for n, (cid, a, b, at) in enumerate(rows)],
        )


async def test_purchases_and_voids_make_the_cohort_matrix(suite):
    identify = await start(suite, "identify")
    lifecycle = await start(suite, "lifecycle")
    a = await create_customer(identify, email="a@example.com")
    b = await create_customer(identify, email="b@example.com")
    c = await create_customer(identify, email="c@example.com")
    a_first = await _buy(identify, a["id"], "2026-01-05T10:00:00Z")
    await _buy(identify, a["id"], "2026-01-20T10:00:00Z")
    b_first = await _buy(identify, b["id"], "2026-01-15T10:00:00Z")
    # 1 February in UTC, though still January where it was bought: months are UTC's.
    await _buy(identify, c["id"], "2026-01-31T23:30:00-02:00")
    await _buy(identify, b["id"], "2026-02-10T10:00:00Z")
    await _buy(identify, a["id"], "2026-03-02T10:00:00Z")
    await _buy(identify, b["id"], "2026-03-15T10:00:00Z")
    jan, feb, mar = "2026-01", "2026-02", "2026-03"
    await _matrix_when(
        lifecycle.client,
        [(jan, 2, [(jan, 2), (feb, 1), (mar, 2)]), (feb, 1, [(feb, 1), (mar, 0)])],
    )

    # Voids: a keeps January (one purchase left there); b's only January purchase goes, so b
    # moves to the February cohort.
    for voided in (a_first, b_first):
        response = await identify.client.post(f"/v1/transactions/{voided['id']}/void", json={"reason": "typo"})
        assert response.status_code == 200, response.text
    await _matrix_when(
        lifecycle.client,
        [(jan, 1, [(jan, 1), (feb, 0), (mar, 1)]), (feb, 2, [(feb, 2), (mar, 1)])],
    )
    body = (await lifecycle.client.get("/v1/lifecycle/cohorts", params={"from": feb, "to": "2026-12"})).json()
    assert (body["by"], body["from"], body["to"]) == ("month", feb, "2026-12")
    assert body["cohorts"] == [
        {
            "cohort": feb,
            "size": 2,
            "months": [
                {"k": 0, "month": feb, "customers": 2, "share": 1.0},
                {"k": 1, "month": mar, "customers": 1, "share": 0.5},
            ],
        }
    ]

    # The customer's export shows its months (no column of them is personal: erasure keeps them).
    export = (await lifecycle.client.get(f"/internal/customers/{b['id']}/personal-data")).json()
    (months,) = [t for t in export["tables"] if t["table"] == "purchase_months"]
    assert sorted((r["month"], r["cohort"], r["purchases"]) for r in months["rows"]) == [
        (2026 * 12 + 1, 2026 * 12 + 1, 1),
        (2026 * 12 + 2, 2026 * 12 + 1, 1),
    ]
    assert months["personal"] == {}


def _cdnow_matrix(name: str) -> dict[str, dict[str, int]]:
    """A shipped CDNOW file's cohorts computed here, from the raw file alone: month of each
    customer's first purchase → {month: customers buying in it}."""

    bought: dict[str, set[str]] = defaultdict(set)
    for customer_id, date in _cdnow_purchases(name):
        bought[customer_id].add(f"{date[:4]}-{date[4:6]}")
    matrix: dict[str, Counter[str]] = defaultdict(Counter)
    for months in bought.values():
        matrix[min(months)].update(months)
    return {cohort: dict(months) for cohort, months in matrix.items()}


def _cdnow_purchases(name: str) -> list[tuple[str, str]]:
    """(customer id, yyyymmdd) of each purchase line of CDNOW_master.txt (customer, date, cds,
    dollars, after a header line) or CDNOW_sample.txt (master id, sample id, date, cds, dollars)."""

    purchases = []
    with open(cdnow_dir() / name) as file:
        for line in file:
            fields = line.split()
            if fields and fields[0].isdigit():
                purchases.append((fields[0], fields[-3]))
    return purchases


def _cdnow_rows(expected: dict[str, dict[str, int]]) -> list[tuple]:
    """Customers who first bought in January–March 1997, followed to June 1998: 3 cohorts × 18
    months, as _matrix_when compares them."""

    assert sorted(expected) == ["1997-01", "1997-02", "1997-03"]
    months = [f"{1997 + m // 12}-{m % 12 + 1:02d}" for m in range(18)]
    return [
        (cohort, expected[cohort][cohort], [(month, expected[cohort].get(month, 0)) for month in months[k:]])
        for k, cohort in enumerate(sorted(expected))
    ]


async def test_the_cdnow_cohorts_rebuilt_from_the_shipped_file(suite):
    identify = await start(suite, "identify")
    lifecycle = await start(suite, "lifecycle")
    with open(cdnow_dir() / "CDNOW_sample.txt", "rb") as file:
        job = await run_import(
            identify.client,
            file.read(),
            filename="CDNOW_sample.txt",
            columns="master_id,sample_id,date,cds,dollars",
            mapping={"master_id": "customer_external_id", "date": "occurred_at", "dollars": "amount"},
            currency="USD",
            create_customers=True,
        )
    assert (job["status"], job["recorded"], job["customers_created"]) == ("done", 6919, 2357)

    expected = _cdnow_matrix("CDNOW_sample.txt")
    rows = _cdnow_rows(expected)
    assert sum(size for _, size, _ in rows) == 2357
    await _matrix_when(lifecycle.client, rows, by="month", **{"from": "1997-01", "to": "1997-03"})

    body = (await lifecycle.client.get("/v1/lifecycle/cohorts")).json()
    for cohort in body["cohorts"]:
        size = expected[cohort["cohort"]][cohort["cohort"]]
        for k, cell in enumerate(cohort["months"]):
            assert cell["k"] == k
            assert cell["share"] == expected[cohort["cohort"]].get(cell["month"], 0) / size


async def test_the_cdnow_cohorts_of_the_whole_master_file(suite):
    """The whole shipped CDNOW_master.txt (69,659 purchases of 23,570 customers), cell by cell.

    The sample test above takes the whole path (identify's import, the events, the consumer);
    through it the master costs ~55 s of a `make test` kept under ten minutes. This one hands
    the master's purchases, as identify's events, to the step that keeps the purchase months
    (analytics' consumer handler, in batches as the consumer gets them) and reads the matrix
    through the API."""

    lifecycle = await start(suite, "lifecycle")
    purchases = _cdnow_purchases("CDNOW_master.txt")
    assert len(purchases) == 69659
    contract = CATALOG["crm.identify.transaction.recorded"]
    counts: Counter[str] = Counter()
    events = []
    for n, (customer_id, date) in enumerate(purchases):
        counts[customer_id] += 1
        data = {
            "id": f"t-{n}",
            "customer_id": customer_id,
            "amount": "1",
            "currency": "USD",
            "occurred_at": f"{date[:4]}-{date[4:6]}-{date[6:]}T12:00:00Z",
            "purchase_count": counts[customer_id],
        }
        cloud_event = make_event(service="identify", type=contract.subject, data=data, subject=customer_id)
        events.append(contract.read(cloud_event))
    for start_at in range(0, len(events), 1000):
        async with transaction(lifecycle.runtime.db.writer) as session:
            await apply_purchases(session=session, events=events[start_at : start_at + 1000])

    rows = _cdnow_rows(_cdnow_matrix("CDNOW_master.txt"))
    assert sum(size for _, size, _ in rows) == 23570  # every CDNOW customer first bought in Q1 1997
    await _matrix_when(lifecycle.client, rows, by="month", **{"from": "1997-01", "to": "1997-03"})


def test_kaplan_meier_against_a_hand_worked_example():
    # Seven customers: churned after 2, 3, 3 and 6 days; observed without churning for 3, 5 and 8.
    points = kaplan_meier(Counter({2: 1, 3: 2, 6: 1}), Counter({3: 1, 5: 1, 8: 1}))
    assert [(p.t_days, p.at_risk, p.events, p.censored) for p in points] == [
        (2, 7, 1, 0),
        (3, 6, 2, 1),  # the censored customer at 3 is still at risk at 3
        (5, 3, 0, 1),
        (6, 2, 1, 0),
        (8, 1, 0, 1),
    ]
    # S = 6/7, then × 4/6, unchanged by the censoring at 5, then × 1/2.
    expected = [6 / 7, 4 / 7, 4 / 7, 2 / 7, 2 / 7]
    assert all(math.isclose(p.survival, s, rel_tol=1e-12) for p, s in zip(points, expected, strict=True))
    assert median(points) == 6
    # Greenwood: Σ d / (n (n − d)) = 1/42, + 2/24, (no event at 5), + 1/2; on the log(−log) scale.
    for point, s, greenwood in zip(
        points, expected, [1 / 42, 1 / 42 + 1 / 12, 1 / 42 + 1 / 12, 1 / 42 + 1 / 12 + 1 / 2, 1 / 42 + 1 / 12 + 1 / 2]
    ):
        spread = Z * math.sqrt(greenwood) / -math.log(s)
        assert math.isclose(point.lower, s ** math.exp(spread), rel_tol=1e-9)
        assert math.isclose(point.upper, s ** math.exp(-spread), rel_tol=1e-9)
        assert point.lower < s < point.upper
    # Everyone churned: the curve reaches 0 with a closed interval, and the median is the last day.
    final = kaplan_meier(Counter({1: 1, 4: 1}), Counter())
    assert [p.survival for p in final] == [0.5, 0.0] and (final[1].lower, final[1].upper) == (0.0, 0.0)
    assert median(final) == 1
    assert median(kaplan_meier(Counter({1: 1}), Counter({2: 5}))) is None


async def test_survival_from_first_purchase_to_churned_censored_at_as_of(suite):
    identify = await start(suite, "identify")
    lifecycle = await start(suite, "lifecycle")
    d = [await create_customer(identify, email=f"d{n}@example.com") for n in range(5)]
    await _buy(identify, d[0]["id"], "2026-01-01T00:00:00Z")
    await _buy(identify, d[1]["id"], "2026-01-01T00:00:00Z")
    await _buy(identify, d[1]["id"], "2026-01-03T00:00:00Z")  # only the first purchase starts the clock
    await _buy(identify, d[2]["id"], "2026-01-06T00:00:00Z")
    await _buy(identify, d[3]["id"], "2026-01-16T00:00:00Z")
    await _buy(identify, d[4]["id"], "2026-03-01T00:00:00Z")  # after the as-of date: not in the curve
    await _matrix_when(
        lifecycle.client,
        [("2026-01", 4, [("2026-01", 4), ("2026-02", 0), ("2026-03", 0)]), ("2026-03", 1, [("2026-03", 1)])],
    )
    await _seed_transitions(
        lifecycle,
        [
            (d[0]["id"], "at_risk", "churned", "2026-01-11T12:00:00+00:00"),  # 10.5 days: day 10
            (d[1]["id"], "at_risk", "churned", "2026-01-21T00:00:00+00:00"),  # day 20
            (d[1]["id"], "churned", "won_back", "2026-01-25T00:00:00+00:00"),
            (d[1]["id"], "at_risk", "churned", "2026-01-30T00:00:00+00:00"),  # only the first churn counts
            (d[3]["id"], "at_risk", "churned", "2026-02-10T00:00:00+00:00"),  # after as_of: censored at day 20
        ],
    )
    response = await lifecycle.client.get("/v1/lifecycle/survival", params={"as_of": "2026-02-05T00:00:00Z"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["customers"], body["churned"], body["censored"], body["median_days"]) == (4, 2, 2, 20)
    # By hand: 4 at risk, one churns at day 10 (S = 3/4); 3 at risk at day 20, one churns and one is
    # censored (S = 3/4 × 2/3 = 1/2); d2 is censored at day 30 (2026-01-06 to as_of).
    got = [(p["t_days"], p["at_risk"], p["events"], p["censored"], p["survival"]) for p in body["points"]]
    assert got == [(10, 4, 1, 0, 0.75), (20, 3, 1, 1, 0.5), (30, 1, 0, 1, 0.5)]
    spread = Z * math.sqrt(1 / 12 + 1 / 6) / math.log(2)
    assert math.isclose(body["points"][1]["lower"], 0.5 ** math.exp(spread), rel_tol=1e-9)
    assert math.isclose(body["points"][1]["upper"], 0.5 ** math.exp(-spread), rel_tol=1e-9)

    # Before anyone churned, everyone is censored and the curve stays at 1.
    early = (await lifecycle.client.get("/v1/lifecycle/survival", params={"as_of": "2026-01-10T00:00:00Z"})).json()
    assert (early["customers"], early["churned"], early["median_days"]) == (3, 0, None)
    assert {p["survival"] for p in early["points"]} == {1.0}


async def test_the_funnel_counts_entries_conversions_and_median_times_in_the_window(suite):
    lifecycle = await start(suite, "lifecycle")
    await _seed_transitions(
        lifecycle,
        [
            ("x", None, "prospect", "2025-01-01T00:00:00+00:00"),
            ("x", "prospect", "new", "2025-01-03T00:00:00+00:00"),
            ("x", "new", "active", "2025-01-13T00:00:00+00:00"),
            ("y", None, "prospect", "2025-01-02T00:00:00+00:00"),
            ("y", "prospect", "new", "2025-01-05T00:00:00+00:00"),
            ("z", None, "prospect", "2025-01-04T00:00:00+00:00"),
            ("w", "prospect", "new", "2024-12-30T00:00:00+00:00"),  # before the window
            ("w", "new", "active", "2025-01-02T00:00:00+00:00"),  # its entry into new is not in the window
            ("v", None, "prospect", "2025-02-01T00:00:00+00:00"),  # at `to`: not in the window
        ],
    )
    window = {"from": "2025-01-01T00:00:00Z", "to": "2025-02-01T00:00:00Z"}
    response = await lifecycle.client.get("/v1/lifecycle/funnel", params=window)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["from"], body["to"]) == ("2025-01-01T00:00:00Z", "2025-02-01T00:00:00Z")
    # In the stage at `to`: x and w active, y new, z prospect (v only enters at `to`).
    assert [(s["stage"], s["entered"], s["customers"], s["in_stage"]) for s in body["stages"]] == [
        ("prospect", 3, 3, 1),
        ("new", 2, 2, 1),
        ("active", 2, 2, 2),
        ("loyal", 0, 0, 0),
        ("at_risk", 0, 0, 0),
        ("churned", 0, 0, 0),
        ("won_back", 0, 0, 0),
    ]
    assert body["moves"] == [
        {"from": "prospect", "to": "new", "moved": 2, "conversion": 2 / 3, "median_days": 2.5},
        {"from": "new", "to": "active", "moved": 1, "conversion": 0.5, "median_days": 10.0},
    ]


async def test_bad_months_and_dates_are_422_naming_the_field(suite):
    lifecycle = await start(suite, "lifecycle")
    client = lifecycle.client
    cases = [
        ("/v1/lifecycle/cohorts", {"from": "1997-13"}, "query.from"),
        ("/v1/lifecycle/cohorts", {"to": "97-01"}, "query.to"),
        ("/v1/lifecycle/cohorts", {"by": "week"}, "query.by"),
        ("/v1/lifecycle/cohorts", {"from": "1997-03", "to": "1997-01"}, "query.to"),
        ("/v1/lifecycle/cohorts", {"month": "1997-01"}, "query.month"),
        ("/v1/lifecycle/survival", {"as_of": "2026-01-01T00:00:00"}, "query.as_of"),  # no time zone
        ("/v1/lifecycle/survival", {"as_of": "soon"}, "query.as_of"),
        ("/v1/lifecycle/funnel", {"from": "2025-02-01T00:00:00Z", "to": "2025-01-01T00:00:00Z"}, "query.to"),
        ("/v1/lifecycle/funnel", {"from": "yesterday"}, "query.from"),
    ]
    for path, params, field in cases:
        response = await client.get(path, params=params)
        assert response.status_code == 422, (path, params, response.text)
        body = response.json()
        assert body["error"] == "validation_error" and field in [d["field"] for d in body["detail"]], (params, body)
    empty = (await client.get("/v1/lifecycle/cohorts")).json()
    assert empty == {"by": "month", "from": None, "to": None, "cohorts": []}
    nobody = (await client.get("/v1/lifecycle/survival")).json()
    assert (nobody["customers"], nobody["median_days"], nobody["points"]) == (0, None, [])
    assert datetime.fromisoformat(nobody["as_of"]) <= datetime.now(UTC)  # as of now by default
