"""docs/api.md is generated from the route table and the services' OpenAPI; it must be current."""

from valuechain import api_doc


def test_the_committed_api_reference_is_current():
    assert api_doc.DOC.read_text() == api_doc.render(), "run: .venv/bin/python -m valuechain.api_doc"


def test_every_service_route_in_the_table_is_served_by_its_service():
    served = {(service, path) for service, rows in api_doc.operations().items() for _, path, *_ in rows}
    reserved_for_later = ("/v1/transactions:batch", "/v1/imports", "/v1/portfolio", "/duplicates", "/merge")
    for route in api_doc.ROUTES:
        if route.service is None or route.pattern.startswith("/v1/ops/"):
            continue
        if any(marker in route.pattern for marker in reserved_for_later):
            continue
        assert any(
            service == route.service and api_doc._matches(route.pattern, path) for service, path in served
        ), f"{route.pattern} is routed to {route.service}, which does not serve it"
