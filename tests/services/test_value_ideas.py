"""value's co-creation ideas against a real nats-server and database, fed by identify's events."""

from __future__ import annotations

from jinja2 import StrictUndefined, meta
from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy import select

from services.value.ideas.models import IdeaComment, IdeaVote
from services.value.ideas.service import news_body
from shared.signed_links import SignedLinks
from tests.services.test_engage import catalog_event, publish, start
from tests.services.test_lifecycle import _handled, _read_stream
from tests.services.test_value import _customer
from tests.support import wait_until

IDEA = {"title": "Dark mode", "description": "Easier on the eyes at night.\nPlease.", "product_area": "app"}


def _token(url: str) -> str:
    return url.rsplit("/", 1)[1]


async def _link(value, customer_id: str) -> str:
    response = await value.client.get(f"/v1/customers/{customer_id}/ideas-link")
    assert response.status_code == 200, response.text
    assert response.json()["url"].startswith("http") and "/v1/public/ideas/" in response.json()["url"]
    return _token(response.json()["url"])


async def _score(suite, value, customer_id: str, clv: float | None) -> None:
    event = catalog_event(
        "identify",
        "crm.identify.customer.scored",
        {
            "customer_id": customer_id,
            "model_version": 1,
            "segment": "champions",
            "predicted_clv": clv,
            "kinds": [],
            "scored_at": "2026-06-01T00:00:00Z",
        },
        customer_id,
    )
    await publish(suite.nats.url, event, event.id)
    await wait_until(lambda: _handled(value, event.id), what="the score reaches value")


async def _ideas_setup(suite):
    identify = await start(suite, "identify")
    value = await start(suite, "value")
    people = [await _customer(identify, value, f"p{i}@example.com") for i in range(4)]
    return identify, value, [p["id"] for p in people]


async def test_ideas_are_submitted_voted_once_commented_and_listed_by_votes_and_value(suite):
    _, value, (ann, bob, cat, dan) = await _ideas_setup(suite)
    client = value.client
    token = await _link(value, ann)

    submitted = await client.post(f"/v1/public/ideas/{token}", json=IDEA)
    assert submitted.status_code == 201, submitted.text
    dark = submitted.json()
    assert (dark["customer_id"], dark["status"], dark["source"], dark["votes"]) == (ann, "new", "link", 0)
    assert dark["description"] == IDEA["description"]
    staff = await client.post(
        "/v1/ideas",
        json={"customer_id": bob, "title": "Faster delivery", "description": "Next day", "product_area": "delivery"},
    )
    assert staff.status_code == 201 and staff.json()["source"] == "staff"
    fast = staff.json()

    # Dark mode: two votes from customers without a score; faster delivery: one vote from a valuable customer.
    for voter in (bob, cat):
        vote = await client.post(f"/v1/public/ideas/{await _link(value, voter)}/{dark['id']}/votes")
        assert vote.status_code == 201, vote.text
    assert vote.json()["votes"] == 2
    again = await client.post(f"/v1/public/ideas/{await _link(value, cat)}/{dark['id']}/votes")
    assert again.status_code == 409 and again.json()["error"] == "already_voted"
    by_staff = await client.post(f"/v1/ideas/{fast['id']}/votes", json={"customer_id": dan})
    assert by_staff.status_code == 201, by_staff.text
    await _score(suite, value, dan, 1234.567)
    await _score(suite, value, bob, None)

    by_votes = (await client.get("/v1/ideas", params={"sort": "votes"})).json()
    assert [(i["id"], i["votes"]) for i in by_votes["items"]] == [(dark["id"], 2), (fast["id"], 1)]
    by_value = (await client.get("/v1/ideas", params={"sort": "value"})).json()["items"]
    assert [(i["id"], i["value_weighted_demand"], i["unscored_voters"]) for i in by_value] == [
        (fast["id"], 1234.57, 0),
        (dark["id"], 0.0, 2),
    ]
    # Pages of one follow the same order; filters narrow the list.
    first = (await client.get("/v1/ideas", params={"sort": "value", "limit": 1})).json()
    second = (
        await client.get("/v1/ideas", params={"sort": "value", "limit": 1, "cursor": first["next_cursor"]})
    ).json()
    assert [first["items"][0]["id"], second["items"][0]["id"]] == [fast["id"], dark["id"]]
    assert second["next_cursor"] is None
    app = (await client.get("/v1/ideas", params={"product_area": "app"})).json()["items"]
    assert [i["id"] for i in app] == [dark["id"]]
    assert (await client.get("/v1/ideas", params={"status": "planned"})).json()["items"] == []

    # The link lists open ideas and the customer's own votes.
    listed = (await client.get(f"/v1/public/ideas/{await _link(value, cat)}")).json()["items"]
    assert [(i["id"], i["voted"]) for i in listed] == [(dark["id"], True), (fast["id"], False)]
    assert "customer_id" not in listed[0]

    said = await client.post(f"/v1/public/ideas/{await _link(value, dan)}/{dark['id']}/comments", json={"body": "Yes!"})
    assert said.status_code == 201 and said.json()["customer_id"] == dan
    comments = (await client.get(f"/v1/ideas/{dark['id']}/comments")).json()["items"]
    assert [c["body"] for c in comments] == ["Yes!"]
    mine = (await client.get(f"/v1/customers/{ann}/ideas")).json()["items"]
    assert [i["id"] for i in mine] == [dark["id"]]

    events = await _read_stream(suite.nats.url, "crm.value.idea.>", 6, settle=True)
    assert sorted(e["type"] for e in events) == sorted(
        ["crm.value.idea.submitted"] * 2 + ["crm.value.idea.voted"] * 3 + ["crm.value.idea.commented"]
    )


async def test_bad_input_is_refused_and_writes_nothing(suite):
    _, value, (ann, _bob, _cat, _dan) = await _ideas_setup(suite)
    client = value.client
    token = await _link(value, ann)
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    for path, body in (
        (f"/v1/public/ideas/{tampered}", IDEA),
        (f"/v1/public/ideas/{tampered}", None),
        ("/v1/public/ideas/not-a-token", IDEA),
    ):
        response = await (client.post(path, json=body) if body else client.get(path))
        assert response.status_code == 400 and response.json()["error"] == "bad_token", response.text
    # A good token made for another purpose (an unsubscribe link's) opens nothing here.
    foreign = SignedLinks.from_settings(value.settings).token("unsubscribe", {"c": ann, "ch": "email"})
    response = await client.post(f"/v1/public/ideas/{foreign}", json=IDEA)
    assert response.status_code == 400 and response.json()["error"] == "bad_token"
    other = await client.post(f"/v1/public/ideas/{token}", json={**IDEA, "product_area": "spaceships"})
    assert other.status_code == 422 and other.json()["detail"][0]["field"] == "body.product_area"
    assert "app" in other.json()["detail"][0]["message"]
    unknown = await client.post("/v1/ideas", json={**IDEA, "customer_id": "nobody"})
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["field"] == "body.customer_id"
    extra = await client.post(f"/v1/public/ideas/{token}", json={**IDEA, "votes": 100})
    assert extra.status_code == 422
    assert (await client.get("/v1/ideas")).json()["items"] == []
    assert (await client.post(f"/v1/public/ideas/{token}/nope/votes")).status_code == 404
    assert (await client.get("/v1/customers/nobody/ideas-link")).status_code == 404


async def test_status_moves_along_the_road_tells_everyone_and_ships(suite):
    _, value, (ann, bob, cat, dan) = await _ideas_setup(suite)
    client = value.client
    idea = (await client.post("/v1/ideas", json={**IDEA, "customer_id": ann})).json()
    await client.post(f"/v1/ideas/{idea['id']}/votes", json={"customer_id": bob})
    await client.post(f"/v1/ideas/{idea['id']}/votes", json={"customer_id": ann})
    await client.post(f"/v1/ideas/{idea['id']}/comments", json={"customer_id": cat, "body": "And a light mode"})

    skip = await client.post(f"/v1/ideas/{idea['id']}/status", json={"status": "shipped"})
    assert skip.status_code == 409 and skip.json()["error"] == "illegal_transition"
    assert "under_review, declined" in skip.json()["detail"]
    unreasoned = await client.post(f"/v1/ideas/{idea['id']}/status", json={"status": "declined"})
    assert unreasoned.status_code == 422 and unreasoned.json()["detail"][0]["field"] == "body.reason"
    for step, reason in (("under_review", None), ("planned", "In the spring release"), ("shipped", "Out now")):
        moved = await client.post(f"/v1/ideas/{idea['id']}/status", json={"status": step, "reason": reason})
        assert moved.status_code == 200, moved.text
    assert (moved.json()["status"], moved.json()["status_reason"]) == ("shipped", "Out now")
    final = await client.post(f"/v1/ideas/{idea['id']}/status", json={"status": "declined", "reason": "No"})
    assert final.status_code == 409 and "final" in final.json()["detail"]
    closed = await client.post(f"/v1/ideas/{idea['id']}/votes", json={"customer_id": dan})
    assert closed.status_code == 409 and closed.json()["error"] == "idea_closed"

    changes = await _read_stream(suite.nats.url, "crm.value.idea.status_changed", 3, settle=True)
    assert [(c["data"]["from_status"], c["data"]["to_status"], c["data"]["notified"]) for c in changes] == [
        ("new", "under_review", 3),
        ("under_review", "planned", 3),
        ("planned", "shipped", 3),
    ]
    shipped = await _read_stream(suite.nats.url, "crm.value.idea.shipped", 1, settle=True)
    assert shipped[0]["data"]["customer_id"] == ann and shipped[0]["data"]["votes"] == 2
    # Proposer, voter and commenter each hear of every change, once: a service message by email.
    requests = await _read_stream(suite.nats.url, "crm.value.message.requested", 9, settle=True)
    assert sorted(r["data"]["customer_id"] for r in requests) == sorted([ann, bob, cat] * 3)
    last = [r["data"] for r in requests if r["data"]["fields"]["status"] == "shipped"]
    assert {(r["purpose"], r["channel"], r["source_kind"], r["source_id"]) for r in last} == {
        ("service", "email", "idea", idea["id"])
    }
    assert last[0]["fields"] == {"idea_title": "Dark mode", "status": "shipped", "reason": "Out now"}
    # engage renders subject and body as sandboxed Jinja templates with the field idea_title,
    # the only one of these it takes from callers; the status and the reason are text.
    environment = SandboxedEnvironment(undefined=StrictUndefined)
    for text in (last[0]["subject"], last[0]["body"]):
        assert meta.find_undeclared_variables(environment.parse(text)) == {"idea_title"}
    rendered = environment.from_string(last[0]["body"]).render(idea_title="Dark mode")
    assert rendered == "The idea “Dark mode” is now shipped.\n\nOut now"


def test_a_reason_that_looks_like_a_template_is_sent_as_written():
    reason = "Use {{ email }} or {% if x %} and {# this #}"
    body = news_body("declined", reason)
    environment = SandboxedEnvironment(undefined=StrictUndefined)
    assert meta.find_undeclared_variables(environment.parse(body)) == {"idea_title"}
    assert environment.from_string(body).render(idea_title="T") == f"The idea “T” is now declined.\n\n{reason}"


async def test_a_merged_customer_acts_through_the_survivor(suite):
    identify, value, (ann, bob, _cat, _dan) = await _ideas_setup(suite)
    token = await _link(value, bob)
    response = await identify.client.post(f"/v1/customers/{ann}/merge", json={"merge": [bob]})
    assert response.status_code == 200, response.text

    async def merged():
        return (await value.client.get(f"/v1/customers/{bob}/ideas")).status_code == 409

    await wait_until(merged, what="value follows the merge")
    refused = await value.client.get(f"/v1/customers/{bob}/ideas-link")
    assert refused.status_code == 409 and refused.json()["error"] == "customer_merged"
    # A link made before the merge acts for the survivor.
    submitted = await value.client.post(f"/v1/public/ideas/{token}", json=IDEA)
    assert submitted.status_code == 201 and submitted.json()["customer_id"] == ann
    async with value.runtime.db.reader() as session:
        assert (await session.execute(select(IdeaVote))).all() == []
        assert (await session.execute(select(IdeaComment))).all() == []


async def test_export_shows_ideas_votes_and_comments_and_erasure_removes_their_text(suite):
    identify, value, (ann, bob, _cat, _dan) = await _ideas_setup(suite)
    client = value.client
    idea = (await client.post("/v1/ideas", json={**IDEA, "customer_id": ann})).json()
    other = (await client.post("/v1/ideas", json={**IDEA, "title": "Widgets", "customer_id": bob})).json()
    await client.post(f"/v1/ideas/{other['id']}/votes", json={"customer_id": ann})
    said = await client.post(f"/v1/ideas/{other['id']}/comments", json={"customer_id": ann, "body": "Ann wants this"})
    assert said.status_code == 201

    def tables(document) -> dict:
        return {t["table"]: t for t in document["tables"]}

    held = tables((await client.get(f"/internal/customers/{ann}/personal-data")).json())
    assert [(r["title"], r["description"]) for r in held["ideas"]["rows"]] == [(IDEA["title"], IDEA["description"])]
    assert held["ideas"]["personal"] == {"title": "free_text", "description": "free_text"}
    assert [r["body"] for r in held["idea_comments"]["rows"]] == ["Ann wants this"]
    assert [r["idea_id"] for r in held["idea_votes"]["rows"]] == [other["id"]]

    erased = await identify.client.post(f"/v1/customers/{ann}/erasure")
    assert erased.status_code == 202, erased.text

    async def applied():
        held = tables((await client.get(f"/internal/customers/{ann}/personal-data")).json())
        return held if held["ideas"]["rows"][0]["description"] is None else None

    held = await wait_until(applied, what="value erases the customer's ideas")
    # The idea stays (others voted and commented on it) without its words; the comment goes; the vote stays.
    assert [(r["id"], r["title"]) for r in held["ideas"]["rows"]] == [(idea["id"], "[erased]")]
    assert "idea_comments" not in held or held["idea_comments"]["rows"] == []
    assert [r["idea_id"] for r in held["idea_votes"]["rows"]] == [other["id"]]
    assert (await client.get(f"/v1/ideas/{other['id']}/comments")).json()["items"] == []
    assert (await client.get(f"/v1/ideas/{other['id']}")).json()["votes"] == 1
    assert (await client.get(f"/v1/ideas/{other['id']}")).json()["title"] == "Widgets"
