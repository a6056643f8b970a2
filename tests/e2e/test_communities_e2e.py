"""End to end: a community for lifecycle's `new` stage fills itself as customers buy (the
real stage.changed events), its member posts through the gateway, and the post reaches the
member's timeline and the 360 view's `communities` part (the running suite, `valuechain run`)."""

from __future__ import annotations

from tests.e2e.test_value_chain import _json_when


async def test_a_stage_community_fills_from_lifecycle_and_its_posts_reach_the_timeline_and_360(running_suite):
    async with running_suite.client() as gw:
        created = await gw.post(
            "/v1/communities", json={"name": "Newcomers", "scope_type": "stage", "scope_value": "new"}
        )
        assert created.status_code == 201, created.text
        community = created.json()
        customer = (await gw.post("/v1/customers", json={"email": "newcomer@example.com"})).json()
        bought = await gw.post(
            "/v1/transactions",
            json={
                "customer_id": customer["id"],
                "amount": "12.00",
                "currency": "USD",
                "external_id": "nc-1",
                "occurred_at": "2026-10-01T10:00:00Z",
            },
        )
        assert bought.status_code == 201, bought.text
        members = await _json_when(
            gw,
            f"/v1/communities/{community['id']}/members",
            lambda b: [m["customer_id"] for m in b["items"]] == [customer["id"]],
            "the buyer in the `new` community",
        )
        assert members["items"][0]["source"] == "auto"

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
        assert [(c["name"], c["left_at"]) for c in view["communities"]] == [("Newcomers", None)]
