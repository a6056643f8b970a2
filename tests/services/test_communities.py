"""engage's communities against a real nats-server and real databases: members who follow
identify's scores and lifecycle's stages (crafted events on the real bus), threads, replies,
moderation and helpful marks, and the events they announce."""

from __future__ import annotations

from datetime import UTC, datetime

from services.engage.models import profiles
from tests.services.test_engage import catalog_event, create_customer, known_to_engage, publish, start
from tests.services.test_lifecycle import _read_stream
from tests.support import wait_until


def _scored(customer_id: str, segment: str | None, kinds: list[str], day: int):
    return catalog_event(
        "identify",
        "crm.identify.customer.scored",
        {
            "customer_id": customer_id,
            "model_version": 1,
            "segment": segment,
            "kinds": kinds,
            "scored_at": datetime(2026, 6, day, tzinfo=UTC),
        },
        customer_id,
    )


def _stage(customer_id: str, to_stage: str, day: int):
    return catalog_event(
        "lifecycle",
        "crm.lifecycle.stage.changed",
        {
            "customer_id": customer_id,
            "from_stage": "active",
            "to_stage": to_stage,
            "at": datetime(2026, 6, day, tzinfo=UTC),
            "cause_event_id": "e",
        },
        customer_id,
    )


async def _send(url: str, *events) -> None:
    for event in events:
        await publish(url, event, event.id)


async def _members(client, community_id: str, *, history: bool = False) -> list[dict]:
    response = await client.get(
        f"/v1/communities/{community_id}/members", params={"history": str(history).lower(), "limit": 200}
    )
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def _member_ids(client, community_id: str) -> set[str]:
    return {m["customer_id"] for m in await _members(client, community_id)}


async def _engage_knowing(suite, *names: str):
    """identify and engage running, and customers named `names` that engage knows."""

    identify = await start(suite, "identify")
    engage = await start(suite, "engage")
    customers = [await create_customer(identify, email=f"{name}@example.com") for name in names]
    for customer in customers:
        await known_to_engage(engage, customer["id"])
    return identify, engage, customers


async def _create(client, **body) -> dict:
    response = await client.post("/v1/communities", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def test_members_follow_scores_and_stages_from_the_events_and_a_new_community_starts_with_todays(suite):
    _, engage, (a, b, c) = await _engage_knowing(suite, "a", "b", "c")
    client = engage.client
    url = suite.nats.url

    # a is a champion and a benchmark customer before any community exists: the profiles
    # read model knows it, and a community made later starts with it.
    await _send(url, _scored(a["id"], "champions", ["benchmark"], 1))

    async def profiled():
        async with engage.runtime.db.reader() as session:
            profile = await profiles.get(session, a["id"])
        return profile is not None and profile["segment"] == "champions"

    await wait_until(profiled, what="a's profile")
    champions = await _create(client, name="Champions", scope_type="segment", scope_value="champions")
    benchmarks = await _create(client, name="Benchmarks", scope_type="kind", scope_value="benchmark")
    loyal = await _create(client, name="Loyal", scope_type="stage", scope_value="loyal", description="Long-time buyers")
    assert champions["members"] == 1 and benchmarks["members"] == 1 and loyal["members"] == 0
    assert (champions["scope_type"], champions["scope_value"], champions["threads"]) == ("segment", "champions", 0)

    # From now on the events move them: b becomes a champion, a falls to hibernating and
    # loses its kind, c reaches the loyal stage.
    await _send(
        url,
        _scored(b["id"], "champions", [], 2),
        _scored(a["id"], "hibernating", [], 3),
        _stage(c["id"], "loyal", 4),
    )

    async def moved():
        return (
            await _member_ids(client, champions["id"]) == {b["id"]}
            and await _member_ids(client, benchmarks["id"]) == set()
            and await _member_ids(client, loyal["id"]) == {c["id"]}
        )

    await wait_until(moved, what="members to follow the scores and stages")
    history = await _members(client, champions["id"], history=True)
    assert [(m["customer_id"], m["source"], m["left_at"]) for m in history] == [
        (a["id"], "auto", "2026-06-03T00:00:00Z"),
        (b["id"], "auto", None),
    ]
    assert history[1]["joined_at"] == "2026-06-02T00:00:00Z"

    # c leaves loyal for at_risk; a comes back as a champion (a second stint).
    await _send(url, _stage(c["id"], "at_risk", 5), _scored(a["id"], "champions", ["benchmark"], 6))

    async def moved_again():
        return (
            await _member_ids(client, champions["id"]) == {a["id"], b["id"]}
            and await _member_ids(client, loyal["id"]) == set()
        )

    await wait_until(moved_again, what="the second round")
    mine = (await client.get(f"/v1/customers/{a['id']}/communities")).json()["items"]
    assert [(m["name"], m["left_at"] is None) for m in mine] == [
        ("Benchmarks", True),
        ("Champions", True),
        ("Benchmarks", False),
        ("Champions", False),
    ]
    page = (await client.get(f"/v1/customers/{a['id']}/communities", params={"limit": 3})).json()
    rest = (await client.get(f"/v1/customers/{a['id']}/communities", params={"cursor": page["next_cursor"]})).json()
    assert [m["id"] for m in page["items"] + rest["items"]] == [m["id"] for m in mine]
    assert (await client.get(f"/v1/customers/{c['id']}/communities")).json()["items"][0]["left_at"]
    assert (await client.get("/v1/customers/nobody/communities")).status_code == 404

    listing = (await client.get("/v1/communities", params={"scope_type": "segment"})).json()
    assert [(x["name"], x["members"]) for x in listing["items"]] == [("Champions", 2)]
    assert (await client.get(f"/v1/communities/{loyal['id']}")).json()["description"] == "Long-time buyers"
    assert (await client.get("/v1/communities/nope")).status_code == 404

    # Scoped communities take no members by hand.
    refused = await client.post(f"/v1/communities/{champions['id']}/members", json={"customer_id": c["id"]})
    assert refused.status_code == 409 and refused.json()["error"] == "automatic_membership"


async def test_a_scope_must_name_a_segment_kind_or_stage_identify_and_lifecycle_know(suite):
    engage = await start(suite, "engage")
    client = engage.client
    for body, field in (
        ({"name": "X", "scope_type": "stage", "scope_value": "lapsed"}, "body.scope_value"),
        ({"name": "X", "scope_type": "kind", "scope_value": "vip"}, "body.scope_value"),
        ({"name": "X", "scope_type": "segment"}, "body.scope_value"),
        ({"name": "X", "scope_type": "list", "scope_value": "champions"}, "body.scope_value"),
        ({"name": "X", "scope_type": "region", "scope_value": "north"}, "body.scope_type"),
        ({"name": " ", "scope_type": "list"}, "body.name"),
        ({"name": "X", "scope_type": "list", "owner": "me"}, "body.owner"),
    ):
        response = await client.post("/v1/communities", json=body)
        assert response.status_code == 422, (body, response.text)
        assert field in response.text, (body, response.text)
    assert (await client.get("/v1/communities")).json()["items"] == []


async def test_threads_replies_moderation_and_helpful_marks(suite):
    _, engage, (a, b, c) = await _engage_knowing(suite, "a", "b", "c")
    client = engage.client
    club = await _create(client, name="Club", scope_type="list")
    base = f"/v1/communities/{club['id']}"

    for customer in (a, b):
        added = await client.post(f"{base}/members", json={"customer_id": customer["id"]})
        assert added.status_code == 201 and added.json()["source"] == "manual", added.text
    again = await client.post(f"{base}/members", json={"customer_id": a["id"]})
    assert again.status_code == 409 and again.json()["error"] == "already_member"
    unknown = await client.post(f"{base}/members", json={"customer_id": "nobody"})
    assert unknown.status_code == 422 and "body.customer_id" in unknown.text

    # Members and staff start threads; a non-member may not.
    topic = await client.post(
        f"{base}/posts",
        json={"author_customer_id": a["id"], "title": "Best lens?", "body": "Which one\nfor portraits?"},
    )
    assert topic.status_code == 201, topic.text
    topic = topic.json()
    assert (topic["thread_id"], topic["body"], topic["reply_count"]) == (None, "Which one\nfor portraits?", 0)
    staff = await client.post(
        f"{base}/posts", json={"author_employee_id": "emp-1", "title": "Welcome", "body": "House rules"}
    )
    assert staff.status_code == 201, staff.text
    outsider = await client.post(f"{base}/posts", json={"author_customer_id": c["id"], "title": "Hi", "body": "x"})
    assert outsider.status_code == 409 and outsider.json()["error"] == "not_a_member"
    both = await client.post(
        f"{base}/posts", json={"author_customer_id": a["id"], "author_employee_id": "e", "title": "T", "body": "x"}
    )
    assert both.status_code == 422 and "body.author_customer_id" in both.text

    reply = await client.post(
        f"{base}/posts/{topic['id']}/replies", json={"author_customer_id": b["id"], "body": "The 85mm"}
    )
    assert reply.status_code == 201, reply.text
    reply = reply.json()
    nested = await client.post(f"{base}/posts/{reply['id']}/replies", json={"author_customer_id": a["id"], "body": "x"})
    assert nested.status_code == 422 and "path.post_id" in nested.text

    # Helpful marks: once per member and post, never one's own, only by members.
    marked = await client.post(f"{base}/posts/{topic['id']}/helpful", json={"customer_id": b["id"]})
    assert marked.status_code == 201, marked.text
    assert marked.json() == {
        "post_id": topic["id"],
        "customer_id": b["id"],
        "helpful_marks": 1,
        "author_helpful_marks": 1,
    }
    for who, error in ((b, "already_marked"), (a, "own_post"), (c, "not_a_member")):
        response = await client.post(f"{base}/posts/{topic['id']}/helpful", json={"customer_id": who["id"]})
        assert response.status_code == 409 and response.json()["error"] == error, response.text
    await client.post(f"{base}/posts/{reply['id']}/helpful", json={"customer_id": a["id"]})

    # Locked: no more replies until unlocked; only topics lock.
    moderator = {"moderator": "emp-9", "reason": "cooling off"}
    locked = await client.post(f"{base}/posts/{topic['id']}/lock", json=moderator)
    assert locked.status_code == 200 and locked.json()["locked"] is True
    refused = await client.post(
        f"{base}/posts/{topic['id']}/replies", json={"author_employee_id": "emp-1", "body": "x"}
    )
    assert refused.status_code == 409 and refused.json()["error"] == "thread_locked"
    assert (await client.post(f"{base}/posts/{reply['id']}/lock", json=moderator)).status_code == 422
    assert (await client.post(f"{base}/posts/{topic['id']}/unlock", json=moderator)).json()["locked"] is False

    thread = (await client.get(f"{base}/posts/{topic['id']}")).json()
    assert (thread["reply_count"], thread["helpful_marks"]) == (1, 1)
    assert [r["body"] for r in thread["replies"]["items"]] == ["The 85mm"]
    staff_reply = await client.post(
        f"{base}/posts/{topic['id']}/replies", json={"author_employee_id": "emp-1", "body": "Or the 50mm"}
    )
    first = (await client.get(f"{base}/posts/{topic['id']}/replies", params={"limit": 1})).json()
    rest = (await client.get(f"{base}/posts/{topic['id']}/replies", params={"cursor": first["next_cursor"]})).json()
    assert [r["id"] for r in first["items"] + rest["items"]] == [reply["id"], staff_reply.json()["id"]]
    await client.post(f"{base}/posts/{staff_reply.json()['id']}/hide", json={"moderator": "emp-9"})

    # Hidden: it leaves lists and counts (and its marks stop counting), moderators still see it.
    hidden = await client.post(f"{base}/posts/{reply['id']}/hide", json=moderator)
    assert hidden.status_code == 200 and hidden.json()["hidden_reason"] == "cooling off"
    thread = (await client.get(f"{base}/posts/{topic['id']}")).json()
    assert (thread["reply_count"], thread["replies"]["items"]) == (0, [])
    assert (await client.get(f"{base}/posts/{reply['id']}")).status_code == 404
    gone = await client.post(f"{base}/posts/{reply['id']}/helpful", json={"customer_id": a["id"]})
    assert gone.status_code == 404
    await client.post(f"{base}/posts/{topic['id']}/hide", json=moderator)
    threads = (await client.get(f"{base}/posts")).json()["items"]
    assert [t["title"] for t in threads] == ["Welcome"]
    assert (await client.get(base)).json()["threads"] == 1
    hidden_list = (await client.get(f"{base}/hidden-posts")).json()["items"]
    assert [(p["id"], p["hidden_by"]) for p in hidden_list] == [
        (staff_reply.json()["id"], "emp-9"),
        (reply["id"], "emp-9"),
        (topic["id"], "emp-9"),
    ]
    await client.post(f"{base}/posts/{topic['id']}/unhide", json=moderator)
    threads = (await client.get(f"{base}/posts", params={"limit": 1})).json()
    more = (await client.get(f"{base}/posts", params={"cursor": threads["next_cursor"]})).json()
    assert [t["title"] for t in threads["items"] + more["items"]] == ["Welcome", "Best lens?"]

    unmarked = await client.delete(f"{base}/posts/{topic['id']}/helpful/{b['id']}")
    assert unmarked.status_code == 200 and unmarked.json()["author_helpful_marks"] == 0
    assert (await client.delete(f"{base}/posts/{topic['id']}/helpful/{b['id']}")).status_code == 404

    left = await client.delete(f"{base}/members/{b['id']}")
    assert left.status_code == 200 and left.json()["left_at"]
    assert await _member_ids(client, club["id"]) == {a["id"]}
    assert (await client.delete(f"{base}/members/{b['id']}")).status_code == 404
    late = await client.post(f"{base}/posts/{topic['id']}/replies", json={"author_customer_id": b["id"], "body": "x"})
    assert late.status_code == 409 and late.json()["error"] == "not_a_member"

    # The events: four posts (the staff ones name no customer), and a's and b's totals as
    # they moved (hiding b's reply took its mark away; hiding a's topic too, showing it gave it back).
    posts = await _read_stream(suite.nats.url, "crm.engage.community.post.created", 4, settle=True)
    assert [(p["data"]["author_customer_id"], p["data"]["thread_id"], p["data"]["title"]) for p in posts] == [
        (a["id"], None, "Best lens?"),
        (None, None, "Welcome"),
        (b["id"], topic["id"], "Best lens?"),
        (None, topic["id"], "Best lens?"),
    ]
    totals = await _read_stream(suite.nats.url, "crm.engage.community.helpfulness.changed", 6, settle=True)
    assert [(t["data"]["customer_id"], t["data"]["helpful_marks"]) for t in totals] == [
        (a["id"], 1),
        (b["id"], 1),
        (b["id"], 0),
        (a["id"], 0),
        (a["id"], 1),
        (a["id"], 0),
    ]

    async def on_timeline():
        entries = (await client.get(f"/v1/customers/{b['id']}/timeline")).json()["items"]
        return [e["summary"] for e in entries if e["type"] == "crm.engage.community.post.created"]

    assert await wait_until(on_timeline, what="b's reply on its timeline") == [
        "Replied to a community thread: Best lens?"
    ]


async def test_an_export_shows_community_posts_and_an_erasure_blanks_them(suite):
    identify, engage, (ada, bob) = await _engage_knowing(suite, "ada", "bob")
    client = engage.client
    club = await _create(client, name="Club", scope_type="list")
    base = f"/v1/communities/{club['id']}"
    for customer in (ada, bob):
        await client.post(f"{base}/members", json={"customer_id": customer["id"]})
    posts = {}
    for customer, title in ((ada, "Ada's garden"), (bob, "Bob's bikes")):
        body = {"author_customer_id": customer["id"], "title": title, "body": f"{title}: photos"}
        posts[customer["id"]] = (await client.post(f"{base}/posts", json=body)).json()["id"]
    await client.post(f"{base}/posts/{posts[bob['id']]}/helpful", json={"customer_id": ada["id"]})

    def rows(export: dict, table: str) -> list[dict]:
        return next(t for t in export["tables"] if t["table"] == table)["rows"]

    export = (await client.get(f"/internal/customers/{ada['id']}/personal-data")).json()
    assert [(p["title"], p["body"]) for p in rows(export, "community_posts")] == [
        ("Ada's garden", "Ada's garden: photos")
    ]
    assert [m["customer_id"] for m in rows(export, "community_members")] == [ada["id"]]
    assert [m["post_id"] for m in rows(export, "community_helpful_marks")] == [posts[bob["id"]]]

    assert (await identify.client.post(f"/v1/customers/{ada['id']}/erasure")).status_code == 202

    async def erased():
        post = (await client.get(f"{base}/posts/{posts[ada['id']]}")).json()
        return post if post["body"] == "[erased]" else None

    post = await wait_until(erased, what="ada's post erased")
    assert (post["title"], post["author_customer_id"]) == (None, ada["id"])  # the fact stays, the words go
    other = (await client.get(f"{base}/posts/{posts[bob['id']]}")).json()
    assert (other["body"], other["helpful_marks"]) == ("Bob's bikes: photos", 1)
