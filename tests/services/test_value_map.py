"""value's map of customer-perceived value against competitors (issue 14 §5), on a real
nats-server and database: value's lists, ratings entered in bulk and from engage's surveys,
and one map checked against arithmetic done by hand."""

from __future__ import annotations

import asyncio
from fractions import Fraction as F

import pytest

from services.identify.analysis.rfm import SEGMENTS
from services.value.perceived.valuemap import US, Attribute, Cell, Subject, value_map
from shared.events.customer_profiles import RFM_SEGMENTS
from tests.services.test_engage import catalog_event, create_customer, publish, start
from tests.services.test_lifecycle import _handled
from tests.support import wait_until


async def _known(value, customer_id: str) -> bool:
    return (await value.client.get(f"/v1/customers/{customer_id}/value-ratings")).status_code == 200


async def _customers(identify, value, n: int) -> list[str]:
    ids = [(await create_customer(identify, email=f"rater{i}@example.com"))["id"] for i in range(n)]
    for customer_id in ids:
        await wait_until(lambda c=customer_id: _known(value, c), what="value knows the customer")
    return ids


async def _attributes(value) -> dict[str, dict]:
    response = await value.client.get("/v1/value-map/attributes")
    assert response.status_code == 200, response.text
    return {a["name"]: a for a in response.json()["items"]}


async def _competitor(value, name: str) -> dict:
    response = await value.client.post("/v1/value-map/competitors", json={"name": name})
    assert response.status_code == 201, response.text
    return response.json()


async def _rate(value, ratings: list[dict]) -> None:
    response = await value.client.post("/v1/value-map/ratings:batch", json={"ratings": ratings})
    assert response.status_code == 201, response.text
    assert response.json() == {"recorded": len(ratings)}


async def _map(value, **params) -> dict:
    response = await value.client.get("/v1/value-map", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def _subject(body: dict, name: str) -> dict:
    return next(s for s in body["subjects"] if s["subject"] == name)


def _feedback(customer_id: str, ratings: list[dict], at: str, segment: str | None = "champions"):
    return catalog_event(
        "engage",
        "crm.engage.feedback.received",
        {
            "response_id": f"r-{customer_id[:8]}-{at}",
            "survey_id": "s-1",
            "customer_id": customer_id,
            "segment": segment,
            "ratings": ratings,
            "received_at": at,
        },
        customer_id,
    )


def test_the_segments_are_identifys():
    assert RFM_SEGMENTS == SEGMENTS


async def test_one_value_map_computed_by_hand(suite):
    identify = await start(suite, "identify")
    value = await start(suite, "value")
    a, b, c = await _customers(identify, value, 3)

    # The default attributes, reweighed: quality 2, service 1, image 1, relationship 0, price 1.
    attributes = await _attributes(value)
    assert sorted(attributes) == ["image", "price", "quality", "relationship", "service"]
    assert [name for name, at in attributes.items() if at["price"]] == ["price"]
    for name, weight in {"quality": 2, "service": 1, "image": 1, "relationship": 0, "price": 1}.items():
        response = await value.client.patch(
            f"/v1/value-map/attributes/{attributes[name]['id']}", json={"weight": weight}
        )
        assert response.status_code == 200 and response.json()["weight"] == weight, response.text
    acme = await _competitor(value, "Acme")
    await _competitor(value, "Globex")
    hooli = await _competitor(value, "Hooli")  # nobody rated it

    march = "2026-03-10T12:00:00Z"

    def rating(customer, attribute, subject, score, at=march, segment="champions"):
        return {
            "customer_id": customer,
            "attribute": attribute,
            "subject": subject,
            "score": score,
            "rated_at": at,
            "segment": segment,
        }

    await _rate(
        value,
        [
            rating(a, "quality", "us", 8),
            rating(b, "Quality", "US", 6),  # names match case-insensitively
            rating(a, "service", "us", 9),
            rating(a, "image", "us", 5),
            rating(a, "relationship", "us", 2),  # weight 0: shown, but not in quality
            rating(a, "price", "us", 6),
            rating(b, "quality", "acme", 9),
            rating(b, "service", "Acme", 7),
            rating(b, "image", "Acme", 7),
            rating(b, "price", "Acme", 3),
            rating(c, "quality", "Globex", 5),
            rating(c, "service", "Globex", 4),
            rating(c, "price", "Globex", 8),
            # Outside the window and outside the segment: not in the map below.
            rating(a, "quality", "us", 1, at="2026-02-28T23:59:59Z"),
            rating(c, "quality", "us", 1, segment="lost"),
        ],
    )

    body = await _map(value, segment="champions", **{"from": "2026-03-01", "to": "2026-03-31"})
    assert (body["segment"], body["from"], body["to"]) == ("champions", "2026-03-01", "2026-03-31")

    # Shares: quality 2/4, service 1/4, image 1/4, relationship 0 of quality; price π = 1/(2+1+1+0+1).
    pi = F(1, 5)
    assert {w["attribute"]: w["share"] for w in body["weights"]} == pytest.approx(
        {"quality": 0.5, "service": 0.25, "image": 0.25, "relationship": 0.0, "price": float(pi)}
    )
    # us: quality mean (8+6)/2 = 7; Q = (2·7 + 1·9 + 1·5)/4 = 7 from 4 ratings; price score 6,
    # perceived price 11−6 = 5; worth V = (1−π)·7 + π·6 = 6.8 from 5 ratings.
    q_us, s_us = F(2 * 7 + 9 + 5, 4), F(6)
    v_us = (1 - pi) * q_us + pi * s_us
    # Acme: Q = (2·9 + 7 + 7)/4 = 8 (3 ratings); price 3 → perceived 8; V = 0.8·8 + 0.2·3 = 7.
    q_acme, s_acme = F(2 * 9 + 7 + 7, 4), F(3)
    v_acme = (1 - pi) * q_acme + pi * s_acme
    # Globex: no image rating, so quality is over quality and service only: (2·5 + 4)/3 = 14/3;
    # price 8 → perceived 3; V = 0.8·14/3 + 0.2·8 = 16/3.
    q_globex, s_globex = F(2 * 5 + 4, 3), F(8)
    v_globex = (1 - pi) * q_globex + pi * s_globex
    assert (q_us, v_us, q_acme, v_acme, v_globex) == (7, F(34, 5), 8, 7, F(16, 3))

    us, acme_out, globex, hooli_out = (_subject(body, n) for n in ("us", "Acme", "Globex", "Hooli"))
    assert [s["subject"] for s in body["subjects"]] == ["us", "Acme", "Globex", "Hooli"]
    assert acme_out["competitor_id"] == acme["id"] and us["competitor_id"] is None

    def figures(s):
        return {
            k: (s[k]["value"], s[k]["ratings"])
            for k in ("perceived_quality", "price_score", "perceived_price", "perceived_worth", "value_added_ratio")
        }

    assert figures(us) == {
        "perceived_quality": (pytest.approx(float(q_us)), 4),
        "price_score": (pytest.approx(6.0), 1),
        "perceived_price": (pytest.approx(5.0), 1),
        "perceived_worth": (pytest.approx(float(v_us)), 5),
        "value_added_ratio": (None, 0),
    }
    # Customer value added: our worth over theirs, from both sides' ratings.
    assert figures(acme_out) == {
        "perceived_quality": (pytest.approx(8.0), 3),
        "price_score": (pytest.approx(3.0), 1),
        "perceived_price": (pytest.approx(8.0), 1),
        "perceived_worth": (pytest.approx(7.0), 4),
        "value_added_ratio": (pytest.approx(float(v_us / v_acme)), 9),  # 6.8/7 = 0.971429
    }
    assert figures(globex) == {
        "perceived_quality": (pytest.approx(float(q_globex)), 2),
        "price_score": (pytest.approx(8.0), 1),
        "perceived_price": (pytest.approx(3.0), 1),
        "perceived_worth": (pytest.approx(float(v_globex)), 3),
        "value_added_ratio": (pytest.approx(float(v_us / v_globex)), 8),  # 6.8/(16/3) = 1.275
    }
    # No ratings: nulls, not zeros.
    assert figures(hooli_out) == dict.fromkeys(figures(hooli_out), (None, 0))
    assert hooli_out["fair_value_quality"] is None and hooli_out["value_position"] is None
    assert hooli["id"] == hooli_out["competitor_id"]
    assert {x["attribute"]: (x["mean_score"], x["ratings"]) for x in us["attributes"]} == {
        "quality": (7.0, 2),
        "service": (9.0, 1),
        "image": (5.0, 1),
        "relationship": (2.0, 1),
        "price": (6.0, 1),
    }

    # Fair-value line: least squares of quality on perceived price through (5, 7), (8, 8), (3, 14/3).
    xs, ys = [F(5), F(8), F(3)], [q_us, q_acme, q_globex]
    mx, my = sum(xs) / 3, sum(ys) / 3  # 16/3, 59/9
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)  # (73/9)/(38/3)
    intercept = my - slope * mx
    assert (slope, intercept) == (F(73, 114), F(179, 57))
    assert body["fair_value_line"] == {
        "method": "least_squares",
        "intercept": pytest.approx(float(intercept)),
        "slope": pytest.approx(float(slope)),
        "points": 3,
    }
    # us sits 7 − (179/57 + 73/114·5) = 75/114 above the line: better value than fair.
    assert us["fair_value_quality"] == pytest.approx(float(intercept + slope * 5))
    assert us["value_position"] == pytest.approx(float(F(75, 114)))
    assert body["ratings"] == 13 and body["unmapped"]["ratings"] == 0
    assert [m["month"] for m in us["trend"]] == ["2026-03"]
    assert us["trend"][0]["perceived_worth"] == {"value": pytest.approx(6.8), "ratings": 5}

    # engage's survey answers: one mapped rating in April, one of a competitor value does not
    # list, one of an attribute it does not list, one with a score outside 1-10.
    event = _feedback(
        c,
        [
            {"attribute": "quality", "subject": "us", "score": 10},
            {"attribute": "quality", "subject": "Initech", "score": 4},
            {"attribute": "speed", "subject": "us", "score": 7},
            {"attribute": "service", "subject": "us", "score": 11},
        ],
        "2026-04-02T09:00:00Z",
    )
    await publish(suite.nats.url, event, event.id)
    await wait_until(lambda: _handled(value, event.id), what="feedback applied")

    whole = await _map(value)
    assert whole["unmapped"] == {
        "ratings": 3,
        "unknown_attribute": 1,
        "unknown_subject": 1,
        "score_out_of_range": 1,
        "names": [
            {"kind": "attribute", "name": "speed", "ratings": 1},
            {"kind": "subject", "name": "initech", "ratings": 1},
        ],
    }
    us_trend = {m["month"]: m for m in _subject(whole, "us")["trend"]}
    assert sorted(us_trend) == ["2026-02", "2026-03", "2026-04"]
    assert us_trend["2026-04"]["perceived_quality"] == {"value": 10.0, "ratings": 1}
    # No price rating in April: worth needs it (π > 0), so it is null there.
    assert us_trend["2026-04"]["perceived_worth"] == {"value": None, "ratings": 0}
    assert _subject(whole, "Acme")["trend"][-1]["perceived_quality"] == {"value": None, "ratings": 0}

    # Adding the competitor maps its earlier ratings.
    await _competitor(value, "initech")
    again = await _map(value, **{"from": "2026-04-01"})
    assert _subject(again, "initech")["perceived_quality"] == {"value": 4.0, "ratings": 1}
    assert again["unmapped"]["unknown_subject"] == 0

    # A rename keeps the ratings.
    renamed = await value.client.patch(f"/v1/value-map/competitors/{acme['id']}", json={"name": "Acme Corp"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "Acme Corp", renamed.text
    after = await _map(value, segment="champions", **{"from": "2026-03-01", "to": "2026-03-31"})
    assert _subject(after, "Acme Corp")["perceived_worth"] == {"value": pytest.approx(7.0), "ratings": 4}


async def test_bad_input_is_refused_and_writes_nothing(suite):
    identify = await start(suite, "identify")
    value = await start(suite, "value")
    (customer,) = await _customers(identify, value, 1)
    await _competitor(value, "Acme")
    good = {"customer_id": customer, "attribute": "quality", "subject": "us", "score": 7}

    async def refused(body, status, *fields):
        response = await value.client.post("/v1/value-map/ratings:batch", json=body)
        assert response.status_code == status, response.text
        if fields:
            assert [e["field"] for e in response.json()["detail"]] == list(fields)
        return response.json()

    await refused(
        {"ratings": [good, {**good, "subject": "Globex"}, {**good, "attribute": "taste"}]},
        422,
        "body.ratings.1.subject",
        "body.ratings.2.attribute",
    )
    await refused({"ratings": [good, {**good, "customer_id": "nobody"}]}, 422, "body.ratings.1.customer_id")
    await refused({"ratings": [{**good, "segment": "vip"}]}, 422, "body.ratings.0.segment")
    await refused({"ratings": [{**good, "score": 11}]}, 422, "body.ratings.0.score")
    await refused({"ratings": [{**good, "score": "7"}]}, 422, "body.ratings.0.score")
    await refused({"ratings": [{**good, "rated_at": "2999-01-01T00:00:00Z"}]}, 422, "body.ratings.0.rated_at")
    await refused({"ratings": [good] * 1001}, 422, "body.ratings")
    await refused({"ratings": []}, 422, "body.ratings")
    await refused({"ratings": [{**good, "colour": "red"}]}, 422, "body.ratings.0.colour")
    listed = await value.client.get(f"/v1/customers/{customer}/value-ratings")
    assert listed.status_code == 200 and listed.json()["items"] == []
    assert (await _map(value))["ratings"] == 0

    for params, field in (
        ({"segment": "vip"}, "query.segment"),
        ({"from": "2026-13-01"}, "query.from"),
        ({"from": "2026-03-02", "to": "2026-03-01"}, "query.to"),
        ({"colour": "red"}, "query.colour"),
    ):
        response = await value.client.get("/v1/value-map", params=params)
        assert response.status_code == 422, response.text
        assert [e["field"] for e in response.json()["detail"]] == [field]

    # The lists: a competitor named like us or like another, a second price attribute.
    us = await value.client.post("/v1/value-map/competitors", json={"name": " US "})
    assert us.status_code == 422 and us.json()["detail"][0]["field"] == "body.name"
    twice = await value.client.post("/v1/value-map/competitors", json={"name": "acme"})
    assert twice.status_code == 409 and twice.json()["error"] == "duplicate_name"
    # Asked twice at once (PostgreSQL lets the two transactions overlap; the unique index decides): one wins.
    both = await asyncio.gather(
        *(value.client.post("/v1/value-map/competitors", json={"name": "Initech"}) for _ in range(2))
    )
    assert sorted(answer.status_code for answer in both) == [201, 409], [answer.text for answer in both]
    assert [answer.json()["error"] for answer in both if answer.status_code == 409] == ["duplicate_name"]
    price = await value.client.post("/v1/value-map/attributes", json={"name": "cost", "weight": 5, "price": True})
    assert price.status_code == 409 and price.json()["error"] == "price_attribute_exists", price.text
    not_a_bool = await value.client.post("/v1/value-map/attributes", json={"name": "speed", "weight": 1, "price": 0})
    assert not_a_bool.status_code == 422 and not_a_bool.json()["detail"][0]["field"] == "body.price"
    negative = await value.client.post("/v1/value-map/attributes", json={"name": "speed", "weight": -1})
    assert negative.status_code == 422 and negative.json()["detail"][0]["field"] == "body.weight"
    listed_attributes = await _attributes(value)
    assert sorted(listed_attributes) == ["image", "price", "quality", "relationship", "service"]
    duplicate = await value.client.patch(
        f"/v1/value-map/attributes/{listed_attributes['image']['id']}", json={"name": "Quality"}
    )
    assert duplicate.status_code == 409 and duplicate.json()["error"] == "duplicate_name"
    null = await value.client.patch(
        f"/v1/value-map/attributes/{listed_attributes['image']['id']}", json={"weight": None}
    )
    assert null.status_code == 422 and null.json()["detail"][0]["field"] == "body.weight", null.text
    assert (await value.client.get("/v1/value-map/attributes/nope")).status_code == 404
    assert (await value.client.delete("/v1/value-map/competitors/nope")).status_code == 404


async def test_attribute_and_competitor_lists(suite):
    value = await start(suite, "value")
    attributes = await _attributes(value)
    # Moving the price mark: unmark, then mark another.
    unmarked = await value.client.patch(f"/v1/value-map/attributes/{attributes['price']['id']}", json={"price": False})
    assert unmarked.status_code == 200 and unmarked.json()["price"] is False
    cost = await value.client.post("/v1/value-map/attributes", json={"name": "Cost", "weight": 20, "price": True})
    assert cost.status_code == 201 and cost.json()["price"] is True, cost.text
    one = await value.client.get(f"/v1/value-map/attributes/{cost.json()['id']}")
    assert one.status_code == 200 and one.json() == cost.json(), one.text
    deleted = await value.client.delete(f"/v1/value-map/attributes/{attributes['price']['id']}")
    assert deleted.status_code == 204
    assert (await value.client.get(f"/v1/value-map/attributes/{attributes['price']['id']}")).status_code == 404

    made = [await _competitor(value, name) for name in ("A", "B", "C")]
    one = await value.client.get(f"/v1/value-map/competitors/{made[1]['id']}")
    assert one.status_code == 200 and one.json() == made[1], one.text
    first = (await value.client.get("/v1/value-map/competitors", params={"limit": 2})).json()
    second = (await value.client.get("/v1/value-map/competitors", params={"cursor": first["next_cursor"]})).json()
    assert [c["name"] for c in first["items"] + second["items"]] == ["A", "B", "C"]
    assert second["next_cursor"] is None
    body = await _map(value)
    assert [w["attribute"] for w in body["weights"]] == ["quality", "service", "image", "relationship", "Cost"]
    assert [s["subject"] for s in body["subjects"]] == ["us", "A", "B", "C"]
    assert body["fair_value_line"] == {"method": "least_squares", "intercept": None, "slope": None, "points": 0}


async def test_ratings_are_not_personal_an_export_shows_them_and_an_erasure_keeps_them(suite):
    identify = await start(suite, "identify")
    value = await start(suite, "value")
    (customer,) = await _customers(identify, value, 1)
    await _rate(value, [{"customer_id": customer, "attribute": "service", "subject": "us", "score": 9}])
    export = await value.client.get(f"/internal/customers/{customer}/personal-data")
    assert export.status_code == 200, export.text
    tables = export.json()["tables"]
    (ratings,) = [t for t in tables if t["table"] == "value_ratings"]
    assert ratings["personal"] == {}  # nothing for an erasure to remove: the scores stay
    assert [(r["attribute_key"], r["subject_key"], r["score"]) for r in ratings["rows"]] == [("service", "us", 9)]

    erasure = await identify.client.post(f"/v1/customers/{customer}/erasure")
    assert erasure.status_code == 202, erasure.text

    async def value_reported():
        body = (await identify.client.get(f"/v1/erasures/{erasure.json()['id']}")).json()
        entry = next(e for e in body["services"] if e["service"] == "value")
        return entry if entry["applied_at"] else None

    await wait_until(value_reported, what="value's erasure report")
    kept = (await value.client.get(f"/v1/customers/{customer}/value-ratings")).json()["items"]
    assert [(r["attribute"], r["score"]) for r in kept] == [("service", 9)]


def test_the_map_without_a_price_attribute_is_quality_alone():
    attributes = [Attribute("quality", "quality", 3, False), Attribute("service", "service", 1, False)]
    subjects = [Subject(US, US, None), Subject("acme", "Acme", "id-1")]
    cells = [
        Cell("quality", US, "2026-01", 2, 16),
        Cell("service", US, "2026-01", 1, 4),
        Cell("quality", "acme", "2026-01", 1, 5),
    ]
    body = value_map(attributes, subjects, cells)
    us, acme = body["subjects"]
    # Q(us) = (3·8 + 1·4)/4 = 7; no price attribute: π = 0, worth is quality, no price, no line.
    assert us["perceived_worth"] == {"value": 7.0, "ratings": 3}
    assert us["perceived_price"] == {"value": None, "ratings": 0}
    assert acme["value_added_ratio"] == {"value": pytest.approx(7 / 5), "ratings": 4}
    assert body["fair_value_line"]["points"] == 0
