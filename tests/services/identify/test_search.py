"""Finding customers: exact filters, substring search (FTS5 trigram on SQLite, pg_trgm on
PostgreSQL: the same answers for one data set, run on both), facets, sorts with stable
cursors, the index kept current by every write path, and the exports."""

from __future__ import annotations

import csv
import io
import json
import sqlite3

import pytest
from sqlalchemy import insert, text

from services.identify.models import CustomerKind, CustomerScore
from services.identify.search import export, repository
from shared.db.database import utcnow
from shared.db.migrations import upgrade
from tests.services.identify.test_imports import run_import

# label -> the customer's fields. Names, emails, phones and ids hold what a search must
# take literally: LIKE's % and _, FTS5's quotes, operators, column filters and stars.
PEOPLE = {
    "ada": dict(email="Ada.Lovelace@Example.com", name="Ada Lovelace", phone="(415) 555-2671", external_id="shop-1"),
    "grace": dict(email="grace@navy.example", name="Grace Hopper", phone="+44 20 7946 0958"),
    "percent": dict(email="deals@example.org", name="50% Off Club", external_id="promo_50"),
    "under": dict(email="a_b@example.org", name="Under Score"),
    "quote": dict(email="quote@example.org", name='The "Quoted" Shop'),
    "ops": dict(email="ops@example.org", name="Tom OR Jerry NEAR(cat) name:x*", external_id="ops-OR-1"),
    "jose": dict(email="jose@example.es", name="José Núñez"),
    "lovelace2": dict(external_id="LOVELACE-archive", name=None),
    "plain": dict(email="zed@example.net", name="Zed", phone="020 7946 0000"),
}

# q -> the labels it must find, on every database.
SEARCHES = {
    "lovelace": {"ada", "lovelace2"},
    "LOVELACE": {"ada", "lovelace2"},
    "ace.lo": set(),  # "Ada Lovelace" / "ada.lovelace@": the dot is in the email only
    "a.lo": {"ada"},
    "example.org": {"percent", "under", "quote", "ops"},
    "50%": {"percent"},
    "0% o": {"percent"},
    "a_b": {"under"},
    "_50": {"percent"},
    '"quoted"': {"quote"},
    'e "q': {"quote"},
    "OR Jerry": {"ops"},
    "NEAR(cat)": {"ops"},
    "name:x*": {"ops"},
    "-or-": {"ops"},
    "555-2671": {"ada"},
    "4155552671": {"ada"},  # the E.164 form of "(415) 555-2671"
    "+44207946": {"grace"},
    "núñ": {"jose"},
    "josé": {"jose"},
    "shop": {"ada", "quote"},
    "zzz": set(),
    "  zed  ": {"plain"},  # trimmed
    "%%%": set(),
    "___": set(),
}


async def _people(client, people=PEOPLE) -> dict[str, str]:
    ids = {}
    for label, fields in people.items():
        body = {key: value for key, value in fields.items() if value is not None}
        response = await client.post("/v1/customers", json=body)
        assert response.status_code == 201, response.text
        ids[label] = response.json()["id"]
    return ids


async def _all(client, **params) -> list[dict]:
    """Every page of GET /v1/customers with these params, in order."""

    items, cursor = [], None
    while True:
        response = await client.get("/v1/customers", params={**params, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.text
        page = response.json()
        items.extend(page["items"])
        if not (cursor := page["next_cursor"]):
            return items


async def _labels(client, ids, **params) -> set[str]:
    by_id = {customer_id: label for label, customer_id in ids.items()}
    return {by_id[item["id"]] for item in await _all(client, **params)}


async def test_substring_search_finds_the_same_customers_on_every_database(suite):
    identify = await suite.start("identify")
    ids = await _people(identify.client)
    for q, expected in SEARCHES.items():
        assert await _labels(identify.client, ids, q=q, limit=2) == expected, q


async def test_exact_filters_combine_with_search(suite):
    identify = await suite.start("identify")
    client = identify.client
    ids = await _people(client)
    assert await _labels(client, ids, email="ada.lovelace@example.COM") == {"ada"}
    assert await _labels(client, ids, external_id="shop-1") == {"ada"}
    assert await _labels(client, ids, external_id="SHOP-1") == set()  # external ids are exact
    assert await _labels(client, ids, phone="+1 415-555-2671") == {"ada"}
    assert await _labels(client, ids, phone="004420 7946 0958") == {"grace"}
    assert await _labels(client, ids, q="lovelace", external_id="LOVELACE-archive") == {"lovelace2"}
    assert await _labels(client, ids, q="lovelace", email="grace@navy.example") == set()


async def test_the_index_follows_create_patch_merge_and_imports(suite):
    identify = await suite.start("identify")
    client = identify.client
    ids = await _people(
        client,
        {
            "a": dict(email="first@example.com", name="Margaret Hamilton"),
            "b": dict(email="second@example.com", name="Katherine Johnson"),
        },
    )
    assert await _labels(client, ids, q="hamilton") == {"a"}

    response = await client.patch(
        f"/v1/customers/{ids['a']}", json={"name": "Margaret Heafield", "phone": "415 555 0199"}
    )
    assert response.status_code == 200, response.text
    assert await _labels(client, ids, q="hamilton") == set()
    assert await _labels(client, ids, q="heafield") == {"a"}
    assert await _labels(client, ids, q="4155550199") == {"a"}  # the phone's E.164 form follows the phone
    response = await client.patch(f"/v1/customers/{ids['a']}", json={"phone": None})
    assert response.status_code == 200, response.text
    assert await _labels(client, ids, q="4155550199") == set()

    response = await client.post(f"/v1/customers/{ids['a']}/merge", json={"merge": [ids["b"]]})
    assert response.status_code == 200, response.text
    assert await _labels(client, ids, q="johnson") == set()  # merged: reached through its survivor only
    assert await _labels(client, ids, q="example.com") == {"a"}

    job = await run_import(
        client,
        "client,when,total\nimported-77,2026-01-05,10.00\n",
        mapping={"client": "customer_external_id", "when": "occurred_at", "total": "amount"},
        currency="USD",
        create_customers=True,
    )
    assert job["status"] == "done" and job["customers_created"] == 1, job
    found = await _all(client, q="ted-7")
    assert [c["external_id"] for c in found] == ["imported-77"]
    if identify.settings.database_url.startswith("sqlite"):  # every customer is in the index, once
        async with identify.runtime.db.reader() as session:
            indexed = (
                await session.execute(text("SELECT count(*), count(DISTINCT customer_id) FROM customer_search_rows"))
            ).one()
            customers = (await session.execute(text("SELECT count(*) FROM customers"))).scalar()
        assert tuple(indexed) == (customers, customers) == (3, 3)


def test_the_search_index_and_its_triggers_exist_at_head(tmp_path):
    """A batch migration that rebuilds `customers` on SQLite drops its triggers: this
    fails if one did, instead of a search that silently stops seeing new customers."""

    url = f"sqlite+aiosqlite:///{tmp_path / 'identify.db'}"
    upgrade("identify", url, "5b7e2c1d9a40")
    with sqlite3.connect(tmp_path / "identify.db") as db:  # a customer from before the index
        db.execute(
            "INSERT INTO customers (id, email, email_key, name, purchase_count, created_at, updated_at) "
            "VALUES ('old-1', 'old@example.com', 'old@example.com', 'Old Timer', 0, "
            "'2026-01-01 00:00:00', '2026-01-01 00:00:00')"
        )
    upgrade("identify", url)
    with sqlite3.connect(tmp_path / "identify.db") as db:
        triggers = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
        found = db.execute(
            "SELECT r.customer_id FROM customer_search s JOIN customer_search_rows r ON r.id = s.rowid "
            "WHERE customer_search MATCH '\"timer\"'"
        ).fetchall()
    assert {"customer_search_update", "customer_search_delete"} <= triggers
    assert found == [("old-1",)]


# --- facets and sorts -------------------------------------------------------------------


async def _scored_portfolio(identify) -> dict[str, str]:
    """Six customers: scores (segment, predicted CLV, kinds) written as a refit would,
    purchases through the API; `none` has no name, no score and no purchase."""

    client = identify.client
    ids = await _people(
        client,
        {
            "a": dict(email="a@example.com", name="Alma"),
            "b": dict(email="b@example.com", name="bea"),
            "c": dict(email="c@example.com", name="Carl"),
            "d": dict(email="d@example.com", name="Dora"),
            "e": dict(email="e@example.com", name="Carl"),
            "none": dict(external_id="no-name"),
        },
    )
    scores = {
        "a": ("champions", 500.0),
        "b": ("lost", 10.0),
        "c": ("champions", 120.0),
        "d": ("lost", None),
        "e": ("champions", 120.0),
    }
    async with identify.runtime.db.writer() as session:
        for label, (segment, clv) in scores.items():
            kinds = ["high_future_value"] if label in ("a", "c") else []
            await session.execute(
                insert(CustomerScore).values(
                    customer_id=ids[label],
                    segment=segment,
                    predicted_clv=clv,
                    kinds=kinds,
                    evidence={},
                    scored_at=utcnow(),
                )
            )
            for kind in kinds:
                await session.execute(insert(CustomerKind).values(customer_id=ids[label], kind=kind, rank_value=clv))
        await session.commit()
    for n, (label, day) in enumerate(
        (("a", "2026-03-01"), ("a", "2026-05-01"), ("b", "2025-01-10"), ("c", "2026-04-15"), ("d", "2026-02-01"))
    ):
        response = await client.post(
            "/v1/transactions",
            json={
                "customer_id": ids[label],
                "amount": "10",
                "currency": "USD",
                "occurred_at": f"{day}T12:00:00Z",
                "external_id": f"t-{n}",
            },
        )
        assert response.status_code == 201, response.text
    return ids


async def test_facets_filter_and_combine(suite):
    identify = await suite.start("identify")
    client = identify.client
    ids = await _scored_portfolio(identify)
    assert await _labels(client, ids, segment="champions") == {"a", "c", "e"}
    assert await _labels(client, ids, kind="high_future_value") == {"a", "c"}
    assert await _labels(client, ids, min_clv=100) == {"a", "c", "e"}
    assert await _labels(client, ids, min_clv=100, max_clv=120) == {"c", "e"}
    assert await _labels(client, ids, max_clv=100) == {"b"}
    assert await _labels(client, ids, last_purchase_after="2026-03-01T12:00:00Z") == {"a", "c"}
    assert await _labels(client, ids, last_purchase_before="2026-03-01T00:00:00+00:00") == {"b", "d"}
    assert await _labels(
        client, ids, last_purchase_after="2026-01-01T00:00:00Z", last_purchase_before="2026-04-16T00:00:00Z"
    ) == {"c", "d"}
    assert await _labels(
        client, ids, segment="champions", last_purchase_after="2026-01-01T00:00:00Z", q="example.com"
    ) == {"a", "c"}
    listed = (await client.get("/v1/customers", params={"email": "a@example.com"})).json()["items"]
    assert listed[0]["scores"]["segment"] == "champions" and listed[0]["scores"]["predicted_clv"] == 500.0


async def test_a_dense_last_purchase_range_finds_the_same_customers(suite, monkeypatch):
    """Past DENSE_RANGE customers in a range, SQLite checks the range per customer
    (an EXISTS) instead of through its index: the answers must not change."""

    identify = await suite.start("identify")
    ids = await _scored_portfolio(identify)
    ranges = (
        {"last_purchase_after": "2026-03-01T12:00:00Z"},
        {"last_purchase_before": "2026-03-01T00:00:00Z"},
        {"last_purchase_after": "2026-01-01T00:00:00Z", "last_purchase_before": "2026-04-16T00:00:00Z"},
    )
    sparse = [[await _labels(identify.client, ids, **r, sort=s) for s in ("name", "-clv")] for r in ranges]
    monkeypatch.setattr(repository, "DENSE_RANGE", 1)
    dense = [[await _labels(identify.client, ids, **r, sort=s) for s in ("name", "-clv")] for r in ranges]
    assert dense == sparse and sparse[2][0] == {"c", "d"}


async def test_a_common_search_term_under_a_sort_finds_the_same_customers_in_the_same_order(suite, monkeypatch):
    """Past DENSE_MATCHES matches, SQLite walks the sort's index and checks each
    customer against the matches: the pages must not change."""

    identify = await suite.start("identify")
    await _scored_portfolio(identify)
    cases = [
        dict(q="example.com", sort=s, **extra)
        for s in ("name", "-clv", "last_purchase", "-created_at")
        for extra in ({}, {"segment": "champions"})
    ]
    sparse = [[c["id"] for c in await _all(identify.client, limit=2, **case)] for case in cases]
    monkeypatch.setattr(repository, "DENSE_MATCHES", 1)
    dense = [[c["id"] for c in await _all(identify.client, limit=2, **case)] for case in cases]
    assert dense == sparse and len(sparse[0]) == 5 and len(sparse[1]) == 3


@pytest.mark.parametrize(
    "sort, expected",
    [
        ("name", ["a", "c", "e", "d", "b", "none"]),  # code point order: uppercase first; no name last
        ("-name", ["b", "d", "e", "c", "a", "none"]),
        ("clv", ["b", "c", "e", "a", "d", "none"]),  # d is scored without a CLV, `none` is not scored
        ("-clv", ["a", "e", "c", "b", "d", "none"]),
        ("last_purchase", ["b", "d", "c", "a", "e", "none"]),
        ("-last_purchase", ["a", "c", "d", "b", "none", "e"]),
        ("created_at", ["a", "b", "c", "d", "e", "none"]),
        ("-created_at", ["none", "e", "d", "c", "b", "a"]),
    ],
)
async def test_sorts_page_with_stable_cursors_and_nulls_last(suite, sort, expected):
    identify = await suite.start("identify")
    ids = await _scored_portfolio(identify)
    by_id = {customer_id: label for label, customer_id in ids.items()}
    # Ties (same name, same CLV) and the NULLs are ordered by id, in the sort's direction.
    order = [by_id[item["id"]] for item in await _all(identify.client, sort=sort, limit=1)]
    tie = sorted(["c", "e"], key=ids.get, reverse=sort.startswith("-"))
    nulls = sorted(
        ["d", "none"] if "clv" in sort else ["e", "none"] if "last" in sort else ["none"],
        key=ids.get,
        reverse=sort.startswith("-"),
    )
    expected = _with_ties(expected, tie if sort.lstrip("-") in ("name", "clv") else None, nulls)
    assert order == expected
    assert [by_id[i["id"]] for i in await _all(identify.client, sort=sort, limit=4)] == expected


def _with_ties(expected, tie, nulls):
    """The expected order with the tied pair and the NULL rows put in id order."""

    out = list(expected)
    if tie:
        positions = sorted(out.index(label) for label in tie)
        for position, label in zip(positions, tie):
            out[position] = label
    positions = sorted(out.index(label) for label in nulls)
    for position, label in zip(positions, nulls):
        out[position] = label
    return out


@pytest.fixture(scope="module")
async def refusing_identify(module_suite):
    """identify, started once for the refusals below."""

    return await module_suite.start("identify")


@pytest.mark.parametrize(
    "params, field",
    [
        ({"q": "ab"}, "query.q"),
        ({"q": "  ab  "}, "query.q"),
        ({"q": "a\x01bc"}, "query.q"),
        ({"q": "x" * 201}, "query.q"),
        ({"sort": "age"}, "query.sort"),
        ({"sort": "--clv"}, "query.sort"),
        ({"segment": "vips"}, "query.segment"),
        ({"kind": "whale"}, "query.kind"),
        ({"phone": "not a phone"}, "query.phone"),
        ({"min_clv": "nan"}, "query.min_clv"),
        ({"min_clv": "ten"}, "query.min_clv"),
        ({"min_clv": "10", "max_clv": "5"}, "query.max_clv"),
        ({"last_purchase_before": "2026-01-01T00:00:00"}, "query.last_purchase_before"),
        ({"last_purchase_after": "yesterday"}, "query.last_purchase_after"),
        ({"email": " "}, "query.email"),
    ],
)
async def test_invalid_values_are_422_naming_the_field(refusing_identify, params, field):
    identify = refusing_identify
    for path in ("/v1/customers", "/v1/customers/export"):
        response = await identify.client.get(path, params=params)
        assert response.status_code == 422, (path, response.text)
        assert [d["field"] for d in response.json()["detail"]] == [field], response.text


async def test_a_cursor_of_another_sort_is_422_naming_cursor(suite):
    identify = await suite.start("identify")
    await _people(identify.client)
    page = (await identify.client.get("/v1/customers", params={"sort": "-clv", "limit": 1})).json()
    for sort in ("clv", "name", None):
        response = await identify.client.get(
            "/v1/customers", params={"cursor": page["next_cursor"], **({"sort": sort} if sort else {})}
        )
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["field"] == "query.cursor"
    again = await identify.client.get("/v1/customers", params={"cursor": page["next_cursor"], "sort": "-clv"})
    assert again.status_code == 200


# --- exports ----------------------------------------------------------------------------


async def test_the_customer_export_streams_every_chunk_with_scores_and_neutralised_cells(suite, monkeypatch):
    monkeypatch.setattr(export, "CHUNK_ROWS", 2)
    identify = await suite.start("identify")
    client = identify.client
    ids = await _scored_portfolio(identify)
    formula = await _people(
        client, {"f": dict(email="f@example.com", name='=HYPERLINK("http://x")', external_id="+1-evil", phone="-2")}
    )
    ids.update(formula)

    response = await client.get("/v1/customers/export", params={"format": "csv", "sort": "-clv"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"].startswith('attachment; filename="customers-')
    assert response.headers["content-disposition"].endswith('.csv"')
    rows = list(csv.DictReader(io.StringIO(response.text)))
    listed = [c["id"] for c in await _all(client, sort="-clv")]
    assert [row["id"] for row in rows] == listed and len(rows) == 7  # four chunks of two
    by_id = {row["id"]: row for row in rows}
    a = by_id[ids["a"]]
    assert (a["segment"], a["predicted_clv"], a["kinds"], a["purchases"]) == (
        "champions",
        "500.0",
        "high_future_value",
        "2",
    )
    assert a["last_purchase_at"].startswith("2026-05-01T12:00:00")
    f = by_id[ids["f"]]
    assert (f["name"], f["external_id"], f["phone"]) == ('\'=HYPERLINK("http://x")', "'+1-evil", "'-2")

    response = await client.get("/v1/customers/export", params={"format": "ndjson", "segment": "champions"})
    assert response.status_code == 200 and response.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert {line["id"] for line in lines} == {ids["a"], ids["c"], ids["e"]}
    response = await client.get("/v1/customers/export", params={"format": "ndjson", "q": "hyperlink"})
    assert [json.loads(line)["name"] for line in response.text.splitlines()] == ['=HYPERLINK("http://x")']

    bad = await client.get("/v1/customers/export", params={"format": "xlsx"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "query.format"
    # The literal path wins over /v1/customers/{customer_id}.
    assert (await client.get("/v1/customers/export")).headers["content-type"].startswith("text/csv")


async def test_the_transaction_export_streams_a_period(suite, monkeypatch):
    monkeypatch.setattr(export, "CHUNK_ROWS", 2)
    identify = await suite.start("identify")
    client = identify.client
    buyers = [(await client.post("/v1/customers", json={"external_id": f"buyer-{n}"})).json()["id"] for n in (1, 2)]
    rate = await client.put("/v1/fx-rates", json=[{"currency": "EUR", "date": "2026-01-01", "rate": "1.1"}])
    assert rate.status_code == 200, rate.text
    for day in range(1, 8):
        for n, buyer in enumerate(buyers):
            response = await client.post(
                "/v1/transactions",
                json={
                    "customer_id": buyer,
                    "amount": f"{day}.25",
                    "currency": "EUR",
                    "occurred_at": f"2026-06-0{day}T09:00:00+02:00",
                    "external_id": f"={n}t{day}",
                },
            )
            assert response.status_code == 201, response.text
    params = {"from": "2026-06-02T07:00:00Z", "to": "2026-06-07T07:00:00Z"}
    first, second = sorted(range(2), key=lambda n: buyers[n])  # customer by customer, in id order
    expected = [f"={n}t{day}" for n in (first, second) for day in range(2, 7)]
    response = await client.get("/v1/transactions/export", params={**params, "format": "csv"})
    assert response.status_code == 200, response.text
    assert 'filename="transactions-' in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [row["external_id"] for row in rows] == ["'" + external_id for external_id in expected]
    # Numbers are written as numbers, in both currencies (a text cell would be neutralised).
    assert rows[2]["amount"] == "4.25" and rows[0]["amount"] == "2.25" and rows[0]["currency"] == "EUR"
    assert rows[0]["reporting_amount"] == "2.475" and rows[0]["reporting_currency"] == "USD"
    assert rows[0]["status"] == "recorded" and rows[0]["refunded_amount"] == "0"
    response = await client.get("/v1/transactions/export", params={**params, "format": "ndjson"})
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [line["external_id"] for line in lines] == expected
    assert lines[2]["amount"] == "4.25" and lines[2]["reporting_amount"] == "4.675"

    for bad, field in (
        ({"from": "2026-06-02T07:00:00", "to": params["to"]}, "query.from"),
        ({"from": params["to"], "to": params["from"]}, "query.to"),
        ({**params, "format": "json"}, "query.format"),
        ({"to": params["to"]}, "query.from"),
    ):
        response = await client.get("/v1/transactions/export", params=bad)
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["field"] == field, response.text


async def test_a_common_search_term_walks_a_bounded_part_of_the_sort_then_reads_the_matches(suite, monkeypatch):
    """The walk of a common `q` stops after WALK_CAP customers of the sort's order (the
    default order's too); a page it has not filled by then is read from the matches: the
    pages must not change, whether the walk fills them or stops short (a cap of 1 to 4
    customers of the five)."""

    identify = await suite.start("identify")
    await _scored_portfolio(identify)
    cases = [
        dict(q=q, **sort, **extra)
        for q in ("example.com", "c@ex")
        for sort in ({}, *({"sort": s} for s in ("name", "-name", "-clv", "last_purchase", "-created_at")))
        for extra in ({}, {"segment": "champions"}, {"last_purchase_after": "2026-01-01T00:00:00Z", "min_clv": 100})
    ]
    sparse = [[c["id"] for c in await _all(identify.client, limit=2, **case)] for case in cases]
    monkeypatch.setattr(repository, "DENSE_MATCHES", 1)
    for cap in (1, 2, 3, 4, 10_000):
        monkeypatch.setattr(repository, "WALK_CAP", cap)
        dense = [[c["id"] for c in await _all(identify.client, limit=2, **case)] for case in cases]
        assert dense == sparse, cap
    assert len(sparse[0]) == 5 and any(len(ids) == 1 for ids in sparse)
