"""Each service's OpenAPI document states the error answers it really gives (shared/http/openapi_contract.py),
and its /docs works with no network (shared/http/docs_ui.py)."""

from __future__ import annotations

import importlib
import re

import pytest
from fastapi import APIRouter, FastAPI
from httpx import AsyncClient
from swagger_ui_bundle import swagger_ui_path

from shared.http.docs_ui import ASSET_FILES, ASSETS, CSP, INIT_SCRIPT
from shared.http.openapi_contract import document_api
from shared.settings import SERVICES, service_settings


def service_document(name: str) -> dict:
    return importlib.import_module(f"services.{name}.main").create_app(service_settings(name)).openapi()


def operations(doc: dict):
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                yield method, path, operation


def schema_names(responses: dict, code: str) -> set[str]:
    schema = responses[code]["content"]["application/json"]["schema"]
    return {ref["$ref"].rsplit("/", 1)[1] for ref in schema.get("anyOf", [schema])}


@pytest.mark.parametrize("name", SERVICES)
def test_errors_are_documented_as_they_are_answered(name):
    doc = service_document(name)
    text = str(doc)
    assert "HTTPValidationError" not in text and "'loc'" not in text and "'msg'" not in text
    schemas = doc["components"]["schemas"]
    assert schemas["FieldError"]["required"] == ["field", "message", "type"]
    assert schemas["FieldErrors"]["properties"]["detail"]["items"] == {"$ref": "#/components/schemas/FieldError"}
    assert schemas["Error"]["required"] == ["error", "detail"]
    for method, path, operation in operations(doc):
        if not path.startswith("/v1/"):
            continue
        responses = operation["responses"]
        params = operation.get("parameters", [])
        assert schema_names(responses, "422") == {"FieldErrors"}, (method, path)
        assert schema_names(responses, "500") == {"Error"}, (method, path)
        if "requestBody" in operation:
            assert schema_names(responses, "400") == {"FieldErrors", "Error"}, (method, path)
        elif any(p["name"] == "cursor" for p in params):
            # A cursor it cannot read is 422 naming it; a 400 is only a customer's link's bad token.
            assert "400" not in responses or "`bad_token`" in responses["400"]["description"], (method, path)
        if any(p["in"] == "query" and p["name"].endswith("_id") for p in params):
            # `?customer_id=` naming nothing is 404 naming `query.customer_id`
            assert schema_names(responses, "404") == {"Error", "FieldErrors"}, (method, path)
        elif any(p["in"] == "path" for p in params):
            assert schema_names(responses, "404") == {"Error"}, (method, path)
            assert schema_names(responses, "409") == {"Error", "FieldErrors"}, (method, path)
        if method != "get":
            assert schema_names(responses, "409") == {"Error", "FieldErrors"}, (method, path)


def test_rules_the_schema_can_state_are_in_it():
    doc = service_document("identify")
    schemas = doc["components"]["schemas"]
    create = schemas["CustomerCreate"]
    assert create["anyOf"] == [
        {"required": ["email"], "properties": {"email": {"type": "string"}}},
        {"required": ["external_id"], "properties": {"external_id": {"type": "string"}}},
    ]
    assert schemas["CustomerPatch"]["not"]["required"] == ["email", "external_id"]
    assert schemas["MergeRequest"]["properties"]["merge"]["uniqueItems"] is True
    customers = doc["paths"]["/v1/customers"]["get"]["parameters"]
    limit = next(p for p in customers if p["name"] == "limit")["schema"]
    assert (limit["minimum"], limit["maximum"]) == (1, 200)
    cursor = next(p for p in customers if p["name"] == "cursor")["schema"]
    assert cursor["pattern"] == "^[A-Za-z0-9_-]*$"
    top = next(p for p in doc["paths"]["/v1/portfolio/pareto"]["get"]["parameters"] if p["name"] == "top")
    items = top["schema"]["anyOf"][0]["items"]
    assert (items["exclusiveMinimum"], items["maximum"]) == (0, 1)
    # An error an endpoint answers that its inputs do not show: declared on the route.
    assert "404" in doc["paths"]["/v1/portfolio/model"]["get"]["responses"]


def test_cursor_outside_the_pattern_is_refused_as_any_foreign_cursor():
    from shared.http.pagination import CURSOR_PATTERN, InvalidCursor, decode_cursor, encode_cursor

    issued = encode_cursor("2026-03-01T00:00:00+00:00", "c1")
    assert re.fullmatch(CURSOR_PATTERN, issued)
    assert decode_cursor(issued, 2) == ["2026-03-01T00:00:00+00:00", "c1"]
    assert decode_cursor("", 2) is None
    for foreign in ("a+b/", issued + "=", "x" * 2000):
        with pytest.raises(InvalidCursor) as refused:
            decode_cursor(foreign, 2)
        assert refused.value.status_code == 422 and refused.value.detail[0]["field"] == "query.cursor"


def _app_that_fails() -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None)
    router = APIRouter()

    @router.get("/v1/boom/{thing_id}")
    async def boom(thing_id: str):
        raise RuntimeError("a bug")

    app.include_router(router)
    document_api(app)
    return app


def test_every_operation_documents_the_json_500():
    """What the 500 looks like is tests/shared/test_errors.py's: a service app answers it."""
    responses = _app_that_fails().openapi()["paths"]["/v1/boom/{thing_id}"]["get"]["responses"]
    assert set(responses) == {"200", "404", "409", "422", "500"}
    assert responses["500"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}


LOCAL_URL = re.compile(r'(?:src|href)="([^"]+)"')


async def check_offline_docs(client: AsyncClient) -> None:
    """/docs names only assets of this server, and each is served with its type."""

    page = await client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "cdn" not in page.text.lower() and "://" not in page.text
    # A strict CSP: nothing inline runs, so the start-up script is an asset of its own.
    assert page.headers["content-security-policy"] == CSP
    assert "<script>" not in page.text and "<style" not in page.text and " style=" not in page.text
    urls = LOCAL_URL.findall(page.text)
    assert sorted(urls) == sorted([*(f"{ASSETS}/{name}" for name in ASSET_FILES), INIT_SCRIPT])
    init = await client.get(INIT_SCRIPT)
    assert init.status_code == 200 and init.headers["content-type"].startswith("text/javascript")
    assert 'const openapiUrl = "/openapi.json";' in init.text and "SwaggerUIBundle(" in init.text
    for name, content_type in ASSET_FILES.items():
        asset = await client.get(f"{ASSETS}/{name}")
        assert asset.status_code == 200, name
        served = asset.headers["content-type"].split(";")[0]
        assert served == content_type or (name.endswith(".js") and served == "text/javascript"), (name, served)
        assert asset.content == (swagger_ui_path / name).read_bytes()
    assert (await client.get(f"{ASSETS}/../../../etc/passwd")).status_code == 404


async def test_a_service_serves_its_docs_offline(suite):
    identify = await suite.start("identify")
    await check_offline_docs(identify.client)
    assert (await identify.client.get("/redoc")).status_code == 404  # it loaded from a CDN: gone
