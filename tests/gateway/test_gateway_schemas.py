"""The events' public JSON Schemas, served by the gateway itself with no key (gateway/schemas.py)."""

from __future__ import annotations

from shared.events.contracts import CATALOG
from shared.events.public import PUBLIC_TYPES, public_schema

CREATED = "crm.identify.customer.created"


async def test_the_index_and_each_schema_are_served_without_a_key(start_gateway):
    gw = await start_gateway(public_base_url="https://crm.example.com/")
    index = await gw.get("/v1/schemas")
    assert index.status_code == 200, index.text
    items = index.json()["items"]
    assert {item["type"] for item in items} == PUBLIC_TYPES
    created = next(item for item in items if item["type"] == CREATED)
    assert created["schema"] == "https://crm.example.com/v1/schemas/crm.identify.customer.created/v1.json"
    assert created["personal_fields"] == ["email", "external_id", "name", "phone", "referral_code"]

    schema = await gw.get("/v1/schemas/crm.identify.customer.created/v1.json")
    assert schema.status_code == 200 and schema.headers["content-type"] == "application/schema+json"
    assert schema.json() == public_schema(CATALOG[CREATED], "https://crm.example.com")
    assert schema.json()["$id"] == created["schema"]


async def test_an_unknown_type_or_version_is_404(gw):
    for path in [
        "/v1/schemas/crm.identify.customer.created/v2.json",
        "/v1/schemas/crm.identify.customer.created/v1",
        "/v1/schemas/crm.nothing.here/v1.json",
        "/v1/schemas/crm.dlq.identify/v1.json",  # dead letters are not public
    ]:
        response = await gw.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"] == "not_found"
    assert (await gw.get("/v1/schemas", params={"colour": "red"})).status_code == 422
