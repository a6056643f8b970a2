"""network narrows what a partner's key sees to its own stakeholder record (the gateway
names the partner in `x-valuechain-partner`; see shared/http/caller.py)."""

from __future__ import annotations

from tests.services.test_network import start


def as_partner(partner_id: str | None) -> dict[str, str]:
    headers = {"x-valuechain-actor": "key_test", "x-valuechain-role": "partner"}
    if partner_id is not None:
        headers["x-valuechain-partner"] = partner_id
    return headers


async def test_a_partner_sees_only_its_own_stakeholder_record(suite):
    network = await start(suite, "network")
    made = {}
    for kind, name in [("partner", "Acme"), ("partner", "Bolt"), ("supplier", "Cargo"), ("employee", "Dana")]:
        response = await network.client.post("/v1/stakeholders", json={"kind": kind, "name": name})
        assert response.status_code == 201, response.text
        made[name] = response.json()
    acme, bolt = made["Acme"]["id"], made["Bolt"]["id"]

    # Without a partner (an employee's key), everyone.
    everyone = (await network.client.get("/v1/stakeholders")).json()["items"]
    assert [s["name"] for s in everyone] == ["Acme", "Bolt", "Cargo", "Dana"]

    mine = await network.client.get("/v1/stakeholders", headers=as_partner(acme))
    assert mine.status_code == 200
    assert mine.json() == {"items": [made["Acme"]], "next_cursor": None}
    assert (await network.client.get("/v1/stakeholders", params={"kind": "supplier"}, headers=as_partner(acme))).json()[
        "items"
    ] == []
    assert (await network.client.get(f"/v1/stakeholders/{acme}", headers=as_partner(acme))).json() == made["Acme"]

    for other in (bolt, made["Cargo"]["id"], made["Dana"]["id"]):
        response = await network.client.get(f"/v1/stakeholders/{other}", headers=as_partner(acme))
        assert response.status_code == 404, other
        # The same answer as for an id that does not exist: nothing tells the partner it does.
        assert response.json() == {"error": "not_found", "detail": f"no stakeholder with id {other}"}

    # The role without a partner (the gateway never sends it) sees nothing, never everything.
    assert (await network.client.get("/v1/stakeholders", headers=as_partner(None))).json()["items"] == []
    assert (await network.client.get(f"/v1/stakeholders/{acme}", headers=as_partner(None))).status_code == 404
