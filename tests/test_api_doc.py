"""docs/api.md is generated from the route table and the services' OpenAPI; it must be current."""

from valuechain import api_doc


def test_the_committed_api_reference_is_current():
    assert api_doc.DOC.read_text() == api_doc.render(), "run: .venv/bin/python -m valuechain.api_doc"


def test_every_service_route_in_the_table_is_served_by_its_service():
    served = {(service, path) for service, rows in api_doc.operations().items() for _, path, *_ in rows}
    for route in api_doc.ROUTES:
        if route.service is None or route.pattern.startswith("/v1/ops/"):
            continue
        assert any(service == route.service and api_doc._matches(route.pattern, path) for service, path in served), (
            f"{route.pattern} is routed to {route.service}, which does not serve it"
        )


def test_every_service_operation_is_reachable_through_the_gateway():
    for service, rows in api_doc.operations().items():
        for _, path, *_ in rows:
            if not path.startswith("/v1/"):
                continue
            assert any(
                route.service == service and api_doc._matches(route.pattern, path) for route in api_doc.ROUTES
            ), f"{service} serves {path}, which no gateway route reaches"


def test_the_route_table_and_the_services_agree_method_by_method():
    """A 405's `Allow` is made from the route table: every method it names for a path must be
    one the service serves there, and every method a service serves must be routed."""

    served: set[tuple[str, str, str]] = set()
    for service in api_doc.SERVICES:
        spec = (
            api_doc.importlib.import_module(f"services.{service}.main")
            .create_app(api_doc.service_settings(service))
            .openapi()
        )
        for path, item in spec["paths"].items():
            if path.startswith("/v1/") and not path.startswith("/v1/ops/"):
                served |= {(service, method.upper(), api_doc._shape(path)) for method in item}
    routed = {
        (route.service, method, api_doc._shape(route.pattern))
        for route in api_doc.ROUTES
        if route.service is not None and not route.pattern.startswith("/v1/ops/")
        for method in route.methods
    }
    assert not any(route.pattern.endswith(":path}") for route in api_doc.ROUTES), "list each operation instead"
    assert routed - served == set(), "routed, so advertised in Allow, but not served"
    assert served - routed == set(), "served but not routed"
