"""End to end: consent recorded through the gateway, seen in the 360 view, and withdrawn by
the customer through the public unsubscribe link, with no API key (the running suite)."""

from __future__ import annotations

import asyncio

import httpx

from services.engage.consent.links import unsubscribe_url
from shared.settings import SuiteSettings
from shared.signed_links import SignedLinks
from tests.e2e.harness import unique_email
from tests.e2e.test_value_chain import _json_when


async def test_consent_through_the_gateway_and_the_public_unsubscribe_link(running_suite):
    async with running_suite.client() as gw, httpx.AsyncClient(base_url=running_suite.gateway_url) as anyone:
        # The public route needs no key: a bad token reaches engage and is its 400.
        bad = await anyone.get("/v1/unsubscribe/not-a-token")
        assert (bad.status_code, bad.json()["error"]) == (400, "bad_token"), bad.text
        assert (await anyone.get("/v1/consent:batch")).status_code == 401  # the others still need one

        ada = (await gw.post("/v1/customers", json={"email": unique_email("ada"), "name": "Ada"})).json()
        granted = None
        for _ in range(200):  # engage learns of the customer from identify's event
            granted = await gw.post(
                "/v1/consent:batch",
                json={
                    "items": [
                        {
                            "customer_id": ada["id"],
                            "purpose": "marketing",
                            "channel": "email",
                            "granted": True,
                            "legal_basis": "consent",
                            "source": "old_crm",
                            "notice_version": "v3",
                        }
                    ]
                },
            )
            if granted.json()["recorded"] == 1:
                break
            await asyncio.sleep(0.05)
        assert granted.status_code == 200 and granted.json()["recorded"] == 1, granted.text
        view = await _json_when(
            gw, f"/v1/customers/{ada['id']}/360", lambda b: b["consent"] and b["consent"]["current"], "the 360 part"
        )
        assert view["consent"]["current"][0]["granted"] is True
        await _json_when(
            gw,
            f"/v1/customers/{ada['id']}/timeline",
            lambda b: "crm.engage.consent.changed" in {i["type"] for i in b["items"]},
            "the grant on the timeline",
        )

        links = SignedLinks.from_settings(SuiteSettings(var_dir=running_suite.var_dir))
        token = unsubscribe_url(links, customer_id=ada["id"], channel="email").rsplit("/", 1)[1]
        page = await anyone.get(f"/v1/unsubscribe/{token}")
        assert page.status_code == 200 and "<form" in page.text, page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]
        consent = (await gw.get(f"/v1/customers/{ada['id']}/consent")).json()
        assert [s["granted"] for s in consent["current"]] == [True]  # the GET changed nothing

        tampered = await anyone.post(f"/v1/unsubscribe/f{token[1:]}")  # the payload's first character
        assert tampered.status_code == 400
        done = await anyone.post(
            f"/v1/unsubscribe/{token}",
            content="List-Unsubscribe=One-Click",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert done.status_code == 200, done.text
        consent = (await gw.get(f"/v1/customers/{ada['id']}/consent")).json()
        assert [s["granted"] for s in consent["current"]] == [False]
        assert [i["source"] for i in consent["items"]] == ["unsubscribe_link", "old_crm"]
