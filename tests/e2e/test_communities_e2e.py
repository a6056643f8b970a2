"""End to end: a community for lifecycle's `new` stage fills itself as customers buy (the
real stage.changed events), its member posts through the gateway, and the post reaches the
member's timeline and the 360 view's `communities` part (the running suite, `valuechain run`)."""

from __future__ import annotations

from tests.e2e.harness import unique, unique_email
from tests.e2e.test_value_chain import _json_when


async def test_a_stage_community_fills_from_lifecycle_and_its_posts_reach_the_timeline_and_360(running_suite):
    # The shared suite's earlier customers in `new` join too: the test looks at its own.
    name = unique("Newcomers ")
    async with running_suite.client() as gw:
        created = await gw.post("/v1/communities", json={"name": name, "scope_type": "stage", "scope_value": "new"})
        assert created.status_code == 201, created.text
        community = created.json()
        customer = (await gw.post("/v1/customers", json={"email": unique_email("newcomer")})).json()
        bought = await gw.post(
            "/v1/transactions",
            json={
                "customer_id": customer["id"],
                "amount": "12.00",
                "currency": "USD",
                "external_id": unique("nc-"),
                "occurred_at": "2026-10-01T10:00:00Z",
            },
        )
        assert bought.status_code == 201, bought.text
        joined = await _json_when(
            gw,
            f"/v1/customers/{customer['id']}/communities",
            lambda b: community["id"] in [m["community_id"] for m in b["items"]],
            "the buyer in the `new` community",
        )
        assert [m["source"] for m in joined["items"] if m["community_id"] == community["id"]] == ["auto"]

        post = await gw.post(
            f"/v1/communities/{community['id']}/posts",
            json={"author_customer_id": customer["id"], "title": "Hello all", "body": "First order today"},
        )
        assert post.status_code == 201, post.text
        hidden = await gw.post(
            f"/v1/communities/{community['id']}/posts/{post.json()['id']}/hide", json={"moderator": "emp-1"}
        )
        assert hidden.status_code == 200 and hidden.json()["hidden"] is True
        await _json_when(
            gw,
            f"/v1/customers/{customer['id']}/timeline",
            lambda b: "Started a community thread: Hello all" in {e["summary"] for e in b["items"]},
            "the post on the timeline",
        )
        view = (await gw.get(f"/v1/customers/{customer['id']}/360")).json()
        assert [(c["name"], c["left_at"]) for c in view["communities"] if c["name"] == name] == [(name, None)]
