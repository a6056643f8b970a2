"""Generate docs/api.md: every operation the gateway routes, as the services declare it.

`python -m valuechain.api_doc` writes the file; tests/test_api_doc.py fails when it is
stale. Operations come from each service's own OpenAPI document, matched against
the gateway's route table, so the page lists what is really served.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from gateway.routes import ROUTES
from shared.settings import SERVICES, service_settings

DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"

HEADER = """# HTTP API

Generated from the gateway's route table (`gateway/routes.py`) and the services'
OpenAPI documents by `python -m valuechain.api_doc`; do not edit by hand. The
running gateway serves the full schema at `/openapi.json` and `/docs`.

- **Base URL**: the gateway, `http://127.0.0.1:8000` by default.
- **Auth**: every `/v1` route needs `Authorization: Bearer <key>` (the admin key
  in `var/admin-api-key`, or `VALUECHAIN_ADMIN_API_KEY`); otherwise 401.
- **Ids**: send `X-Request-ID` and `X-Correlation-ID` to trace a request; the
  gateway mints them when absent and returns both. The correlation id travels
  into every event the request causes.
- **Errors**: JSON `{"error": ..., "detail": ...}`. 400 malformed JSON or a bad
  cursor, 401 missing or wrong key, 404 unknown id or route, 405 wrong method,
  409 conflict, 413 body too large, 422 invalid fields (`detail` lists
  `{"field", "message", "type"}`; unknown fields are refused, never dropped),
  502 a service is unavailable, 504 a service timed out.
- **Pagination**: lists take `limit` (1–200, default 50) and `cursor`, and answer
  `{"items": [...], "next_cursor": "..." | null}`; pass `next_cursor` back as
  `cursor` for the next page.
- **Money**: amounts are decimal strings (at most 4 decimal places), never negative;
  a margin is at most its amount; currencies are ISO 4217 codes. Every sum is in the
  reporting currency (`VALUECHAIN_IDENTIFY_REPORTING_CURRENCY`, USD by default): a
  transaction answers its `amount`/`currency` and its `reporting_amount`/
  `reporting_currency`, converted at the rates of `PUT /v1/fx-rates`; one in a
  currency with no rate for its day is 422 on `currency`. A transaction also shows
  its `status` (`recorded`, or `voided` with `voided_at` and `void_reason`) and its
  `refunded_amount`; its refunds are listed at `GET /v1/transactions/{id}/refunds`.
  A refund is `POST /v1/transactions/{id}/refund` `{amount, reason, occurred_at?,
  external_id?}` (201, or 200 for a repeated `external_id`; 422 on `amount` when it is
  more than is left unrefunded; 409 when the purchase was voided); a void is
  `POST /v1/transactions/{id}/void` `{reason}` (409 when voided already). See
  docs/portfolio.md for what each does to counts, revenue and scores.
"""

GATEWAY_OWN = [
    ("GET", "/v1/customers/{id}/360", "The customer 360: customer, lifecycle, recent timeline, offers and referrals, "
     "fetched in parallel; parts that could not be fetched are named in `missing`."),
    ("GET", "/v1/ops/{service}/dead-letters", "Events a service's consumers gave up on (per service)."),
    ("GET", "/healthz", "Liveness (no key)."),
    ("GET", "/readyz", "200 only when every service and NATS are ready, else 503 naming what is not (no key)."),
    ("GET", "/metrics", "Prometheus metrics of the gateway (no key); each service serves its own."),
    ("GET", "/openapi.json, /docs", "The merged OpenAPI document and its UI (no key)."),
]


def _shape(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


def _matches(route_pattern: str, service_path: str) -> bool:
    if route_pattern.endswith(":path}"):
        prefix = _shape(route_pattern[: route_pattern.rindex("{")])
        return _shape(service_path).startswith(prefix)
    return _shape(route_pattern) == _shape(service_path)


def _summary(operation: dict) -> str:
    text = (operation.get("description") or operation.get("summary") or "").strip().splitlines()
    return text[0] if text else ""


def _body(operation: dict) -> str:
    schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    return schema.get("$ref", "").rsplit("/", 1)[-1]


def operations() -> dict[str, list[tuple[str, str, str, str, str]]]:
    found: dict[str, list] = {}
    for service in SERVICES:
        app = importlib.import_module(f"services.{service}.main").create_app(service_settings(service))
        spec = app.openapi()
        rows = []
        for route in ROUTES:
            if route.service != service or route.pattern.startswith("/v1/ops/"):
                continue
            for path, item in spec["paths"].items():
                if not _matches(route.pattern, path):
                    continue
                for method, operation in item.items():
                    if method.upper() not in route.methods:
                        continue
                    codes = ", ".join(code for code in operation.get("responses", {}) if code.startswith("2"))
                    rows.append((method.upper(), path, _summary(operation), _body(operation), codes))
        found[service] = sorted(set(rows), key=lambda row: (row[1], row[0]))
    return found


def render() -> str:
    lines = [HEADER]
    for service, rows in operations().items():
        lines += [f"## {service}", "", "| method | path | request body | success | what it does |", "|---|---|---|---|---|"]
        for method, path, summary, body, codes in rows:
            lines.append(f"| {method} | `{path}` | {body and f'`{body}`'} | {codes} | {summary} |")
        lines.append("")
    lines += ["## gateway", "", "| method | path | what it does |", "|---|---|---|"]
    lines += [f"| {method} | `{path}` | {text} |" for method, path, text in GATEWAY_OWN]
    return "\n".join(lines) + "\n"


def main() -> None:
    DOC.write_text(render())
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
