"""End to end through the gateway: a customer's ideas link works without a key, staff's
routes need theirs, and ideas reach the timeline and the 360 view."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx

from tests.e2e.harness import unique_email
from tests.e2e.test_value_chain import _json_when
from tests.support import wait_until


async def test_a_customer_submits_and_votes_through_their_link_and_staff_ship_the_idea(running_suite):
    async with running_suite.client() as gw, httpx.AsyncClient(base_url=running_suite.gateway_url) as public:
        ann = (await gw.post("/v1/customers", json={"email": unique_email("ann-ideas")})).json()
        bob = (await gw.post("/v1/customers", json={"email": unique_email("bob-ideas")})).json()

        async def link(customer_id: str) -> str:
            response = await gw.get(f"/v1/customers/{customer_id}/ideas-link")
            return urlsplit(response.json()["url"]).path if response.status_code == 200 else ""

        ann_link = await wait_until(lambda: link(ann["id"]), what="value knows the customer")
        bob_link = await wait_until(lambda: link(bob["id"]), what="value knows the customer")
        # No key: the link's token is the key; staff's routes still need one.
        assert (await public.get("/v1/ideas")).status_code == 401
        assert (await public.get(f"/v1/customers/{ann['id']}/ideas-link")).status_code == 401
        idea = {"title": "Dark mode", "description": "At night", "product_area": "app"}
        submitted = await public.post(ann_link, json=idea)
        assert submitted.status_code == 201, submitted.text
        idea_id = submitted.json()["id"]
        voted = await public.post(f"{bob_link}/{idea_id}/votes")
        assert voted.status_code == 201, voted.text
        again = await public.post(f"{bob_link}/{idea_id}/votes")
        assert again.status_code == 409 and again.json()["error"] == "already_voted"
        tampered = await public.post(ann_link[:-3] + "xyz", json=idea)
        assert tampered.status_code == 400 and tampered.json()["error"] == "bad_token"
        listed = (await public.get(bob_link)).json()["items"]
        assert [(i["id"], i["votes"], i["voted"]) for i in listed if i["id"] == idea_id] == [(idea_id, 1, True)]

        for step in ("under_review", "planned", "shipped"):
            moved = await gw.post(f"/v1/ideas/{idea_id}/status", json={"status": step, "reason": "Thanks!"})
            assert moved.status_code == 200, moved.text
        view = await _json_when(
            gw,
            f"/v1/customers/{ann['id']}/360",
            lambda b: (
                [i["id"] for i in b["ideas"]] == [idea_id]
                and any(t["type"] == "crm.value.idea.shipped" for t in b["timeline"])
            ),
            "the idea in the 360 view and its shipping on the timeline",
        )
        assert view["ideas"][0]["status"] == "shipped"
        timeline = await _json_when(
            gw,
            f"/v1/customers/{bob['id']}/timeline",
            lambda b: any(t["type"] == "crm.value.idea.voted" for t in b["items"]),
            "the vote on the voter's timeline",
        )
        assert any(t["summary"] == "Voted for an idea (app)" for t in timeline["items"])
