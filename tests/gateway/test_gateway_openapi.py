"""The merged OpenAPI document: every routed operation, nothing else."""

from __future__ import annotations

from gateway.openapi import OpenAPIMerger
from gateway.routes import RouteTable


def operations(doc: dict) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in doc["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }


async def test_merged_document_has_the_routed_operations(gw):
    response = await gw.get("/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    ops = operations(doc)
    expected = {
        ("GET", "/v1/customers"),
        ("POST", "/v1/customers"),
        ("GET", "/v1/customers/{customer_id}"),
        ("PATCH", "/v1/customers/{customer_id}"),
        ("GET", "/v1/customers/{customer_id}/transactions"),
        ("POST", "/v1/transactions"),
        ("POST", "/v1/transactions:batch"),
        ("GET", "/v1/imports/{import_id}"),
        ("GET", "/v1/portfolio/segments"),
        ("GET", "/v1/customers/{customer_id}/lifecycle"),
        ("POST", "/v1/interactions"),
        ("GET", "/v1/interactions"),
        ("GET", "/v1/customers/{customer_id}/timeline"),
        ("POST", "/v1/stakeholders"),
        ("GET", "/v1/stakeholders"),
        ("GET", "/v1/stakeholders/{stakeholder_id}"),
        ("GET", "/v1/customers/{customer_id}/referrals"),
        ("POST", "/v1/offers"),
        ("GET", "/v1/offers/{offer_id}"),
        ("POST", "/v1/offers/{offer_id}/redeem"),
        ("GET", "/v1/customers/{customer_id}/offers"),
        ("GET", "/v1/customers/{customer_id}/360"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        *{("GET", f"/v1/ops/{s}/dead-letters") for s in ("identify", "engage", "network", "value", "lifecycle")},
    }
    assert expected <= ops, expected - ops
    # Operations the route table does not expose stay hidden.
    assert ("DELETE", "/v1/customers/{customer_id}") not in ops
    assert not any("/internal/" in path for _, path in ops)
    assert ("GET", "/v1/ops/dead-letters") not in ops
    assert doc["info"]["x-unavailable-services"] == []

    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["bearer"]["description"],
    }
    get_customer = doc["paths"]["/v1/customers/{customer_id}"]["get"]
    assert get_customer["security"] == [{"bearer": []}]
    assert get_customer["tags"] == ["identify"]
    assert {"401", "502", "504"} <= set(get_customer["responses"])
    assert "security" not in doc["paths"]["/healthz"]["get"]
    # Operation ids stay unique across services.
    ids = [
        op["operationId"]
        for item in doc["paths"].values()
        for op in item.values()
        if isinstance(op, dict) and "operationId" in op
    ]
    assert len(ids) == len(set(ids))


async def test_a_service_down_still_gives_a_document(start_gateway, dead_url):
    client = await start_gateway(value_url=dead_url)
    doc = (await client.get("/openapi.json")).json()
    assert doc["info"]["x-unavailable-services"] == ["value"]
    ops = operations(doc)
    # value's routes appear as stubs from the route table...
    assert ("POST", "/v1/offers/{id}/redeem") in ops
    assert ("GET", "/v1/ops/value/dead-letters") in ops
    # ...and the others as the services describe them.
    assert ("GET", "/v1/customers/{customer_id}") in ops


async def test_docs_page_works_offline_and_without_a_key(gw):
    from tests.shared.test_openapi_contract import check_offline_docs

    await check_offline_docs(gw)  # gw sends no key: /docs, its assets and /openapi.json need none


async def test_merged_document_states_the_error_answers(gw):
    doc = (await gw.get("/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    assert "GatewayError" not in schemas and "HTTPValidationError" not in schemas
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if not path.startswith("/v1/") or method not in ("get", "post", "put", "patch", "delete"):
                continue
            responses = operation["responses"]
            public = (route := RouteTable().match(method.upper(), path).route) is not None and route.public
            for code in ("500", "502", "504") if public else ("401", "500", "502", "504"):
                assert responses[code]["content"] == error, (method, path, code)
            assert ("413" in responses) == ("requestBody" in operation), (method, path)
            assert responses["422"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/FieldErrors"
            }
    # The gateway's own operation gets the same treatment as the services'.
    assert {"401", "404", "409", "422", "500"} <= set(
        doc["paths"]["/v1/customers/{customer_id}/360"]["get"]["responses"]
    )


def test_conflicting_component_names_are_renamed():
    merger = OpenAPIMerger(RouteTable(), services=("identify", "value"))

    def doc(path: str, schema: dict) -> dict:
        return {
            "paths": {
                path: {
                    "get": {
                        "operationId": "get_it",
                        "responses": {
                            "200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Item"}}}}
                        },
                    }
                }
            },
            "components": {"schemas": {"Item": schema}},
        }

    merged = merger.merge(
        {"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {}},
        {
            "identify": doc("/v1/customers/{customer_id}", {"type": "object", "title": "Customer"}),
            "value": doc("/v1/offers/{offer_id}", {"type": "object", "title": "Offer"}),
        },
    )
    schemas = merged["components"]["schemas"]
    assert schemas["Item"]["title"] == "Customer"
    assert schemas["value__Item"]["title"] == "Offer"
    ref = merged["paths"]["/v1/offers/{offer_id}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert ref == {"$ref": "#/components/schemas/value__Item"}
    assert merged["paths"]["/v1/offers/{offer_id}"]["get"]["operationId"] == "value__get_it"


def test_a_component_that_only_refers_to_a_renamed_one_is_renamed_too():
    # engage's and value's `Page[TemplateOut]` were equal JSON while their `TemplateOut`s were
    # not: value's list pointed at engage's page, whose items are engage's templates.
    merger = OpenAPIMerger(RouteTable(), services=("engage", "value"))

    def doc(path: str, item: dict) -> dict:
        page = {
            "type": "object",
            "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/Item"}}},
        }
        ok = {"200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Page"}}}}}
        return {
            "paths": {path: {"get": {"operationId": "list_them", "responses": ok}}},
            "components": {"schemas": {"Item": item, "Page": page}},
        }

    merged = merger.merge(
        {"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {}},
        {
            "engage": doc("/v1/templates", {"type": "object", "title": "Message template"}),
            "value": doc("/v1/offer-templates", {"type": "object", "title": "Offer template"}),
        },
    )
    schemas = merged["components"]["schemas"]
    answer = merged["paths"]["/v1/offer-templates"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer == {"$ref": "#/components/schemas/value__Page"}
    assert schemas["value__Page"]["properties"]["items"]["items"] == {"$ref": "#/components/schemas/value__Item"}
    assert schemas["value__Item"]["title"] == "Offer template"
    assert schemas["Page"]["properties"]["items"]["items"] == {"$ref": "#/components/schemas/Item"}
