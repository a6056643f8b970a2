"""API keys, roles and scopes at the real gateway (uvicorn, its own database, the stand-in services)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from gateway.access import keys
from gateway.access.roles import ANY_CALLER, ROLES, SCOPE_SET
from gateway.routes import ROUTES, r
from shared.db.uow import transaction
from tests.gateway.conftest import AUTH
from tests.support import wait_until


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def make_key(gw, role: str = "marketer", **body) -> dict:
    response = await gw.post("/v1/api-keys", json={"name": f"{role} key", "role": role, **body}, headers=AUTH)
    assert response.status_code == 201, response.text
    return response.json()


# --- the route table and the roles ------------------------------------------------------


def test_every_route_names_a_scope_for_each_method_or_is_public():
    for route in ROUTES:
        if route.public:
            assert not route.scopes, route.pattern
            continue
        assert set(route.scopes) == set(route.methods), route.pattern
        for method, scope in route.scopes.items():
            assert scope in SCOPE_SET or scope == ANY_CALLER, (method, route.pattern, scope)


def test_a_row_without_a_scope_or_with_an_unknown_one_is_refused():
    with pytest.raises(ValueError, match="names no scope"):
        r("GET POST", "/v1/things", "identify", read="customers:read")
    with pytest.raises(ValueError, match="unknown scope"):
        r("GET", "/v1/things", "identify", scope="things:read")
    with pytest.raises(ValueError, match="public"):
        r("GET", "/v1/things", "identify", scope="ops", public=True)
    assert r("GET", "/v1/links/{token}", "engage", public=True).public


def test_roles_grant_only_known_scopes_and_partners_stay_narrow():
    assert {"admin", "manager", "agent", "marketer", "analyst", "partner", "readonly", "operator"} <= set(ROLES)
    for scopes in ROLES.values():
        assert scopes <= SCOPE_SET
    assert ROLES["admin"] == SCOPE_SET
    assert ROLES["partner"] == {"network:read", "events:read", "webhooks:read", "webhooks:write"}
    assert "pii:read" not in ROLES["partner"]  # personal fields reach a partner as null unless granted
    assert "ops" in ROLES["operator"] and "ops" not in ROLES["manager"]


# --- keys ---------------------------------------------------------------------------------


async def test_a_key_is_shown_once_stored_as_a_hash_and_acts_with_its_roles_scopes(gw):
    made = await make_key(gw, "marketer", scopes=["pii:read"])
    token = made["key"]
    assert token.startswith("vc_") and len(token) == 46
    assert made["prefix"] == token[3:11] and made["role"] == "marketer" and made["scopes"] == ["pii:read"]
    assert made["id"].startswith("key_") and made["revoked_at"] is None and made["last_used_at"] is None

    shown = (await gw.get(f"/v1/api-keys/{made['id']}", headers=AUTH)).json()
    assert "key" not in shown and shown["prefix"] == made["prefix"]
    store = gw.gateway_app.state.store
    async with store.reader() as session:
        stored = (await session.execute(select(keys.ApiKeySecret).where(keys.ApiKeySecret.key_id == made["id"]))).all()
    assert [row[0].hash for row in stored] == [hashlib.sha256(token.encode()).hexdigest()]

    assert (await gw.get("/v1/customers", headers=bearer(token))).status_code == 200
    assert (await gw.get("/v1/offers/o1", headers=bearer(token))).status_code == 200
    denied = await gw.post("/v1/customers", json={}, headers=bearer(token))
    assert denied.status_code == 403
    assert denied.json() == {"error": "insufficient_scope", "detail": "this needs the scope customers:write"}
    assert denied.headers["www-authenticate"] == (
        'Bearer realm="valuechain", error="insufficient_scope", scope="customers:write"'
    )
    assert (await gw.get("/v1/api-keys", headers=bearer(token))).status_code == 403

    me = (await gw.get("/v1/me", headers=bearer(token))).json()
    assert me == {
        "id": made["id"],
        "kind": "key",
        "role": "marketer",
        "scopes": sorted(ROLES["marketer"] | {"pii:read"}),
        "partner_id": None,
        "person_id": None,
        "event_types": None,
    }


async def test_the_bootstrap_admin_is_the_admin_role_with_every_scope(gw):
    me = (await gw.get("/v1/me", headers=AUTH)).json()
    assert me == {
        "id": "bootstrap-admin",
        "kind": "bootstrap",
        "role": "admin",
        "scopes": sorted(SCOPE_SET),
        "partner_id": None,
        "person_id": None,
        "event_types": None,
    }


@pytest.mark.parametrize(
    "body, field",
    [
        ({"role": "superuser"}, "body.role"),
        ({"role": "agent", "scopes": ["customers:read", "everything"]}, "body.scopes.1"),
        ({"role": "agent", "colour": "red"}, "body.colour"),
        ({"role": "agent", "expires_at": "2020-01-01T00:00:00Z"}, "body.expires_at"),
        ({"role": "agent", "expires_at": "2999-01-01T00:00:00"}, "body.expires_at"),  # no time zone
        ({"role": "partner"}, "body.partner_id"),
        ({"role": "agent", "partner_id": "p1"}, "body.partner_id"),
        ({"role": "agent", "name": "  "}, "body.name"),
        ({"role": "partner", "partner_id": "missing"}, "body.partner_id"),
        ({"role": "partner", "partner_id": "supplier-s1"}, "body.partner_id"),  # not a partner
        ({"role": "agent", "person_id": "partner-p1"}, "body.person_id"),  # not an employee
        ({"role": "agent", "event_types": ["crm.nothing.*"]}, "body.event_types.0"),  # matches no public type
        ({"role": "agent", "event_types": ["crm.dlq.identify"]}, "body.event_types.0"),  # not public
        ({"role": "agent", "event_types": []}, "body.event_types"),  # none at all: leave it out instead
    ],
)
async def test_invalid_keys_are_422_naming_the_field(gw, body, field):
    response = await gw.post("/v1/api-keys", json={"name": "k", **body}, headers=AUTH)
    assert response.status_code == 422, response.text
    assert field in [error["field"] for error in response.json()["detail"]]


async def test_a_stakeholder_that_cannot_be_checked_is_a_502(start_gateway, dead_url):
    gw = await start_gateway(network_url=dead_url)
    response = await gw.post(
        "/v1/api-keys", json={"name": "p", "role": "partner", "partner_id": "partner-p1"}, headers=AUTH
    )
    assert response.status_code == 502 and response.json()["error"] == "bad_gateway"
    assert (await gw.get("/v1/api-keys", headers=AUTH)).json()["items"] == []  # nothing made


async def test_no_one_grants_a_scope_they_do_not_hold(gw):
    keymaster = await make_key(gw, "readonly", scopes=["keys:admin"])
    escalation = await gw.post("/v1/api-keys", json={"name": "x", "role": "admin"}, headers=bearer(keymaster["key"]))
    assert escalation.status_code == 403 and escalation.json()["error"] == "insufficient_scope"
    assert "customers:write" in escalation.json()["detail"]
    allowed = await gw.post("/v1/api-keys", json={"name": "x", "role": "readonly"}, headers=bearer(keymaster["key"]))
    assert allowed.status_code == 201


async def test_every_401_is_the_same_whatever_the_reason(gw):
    expired_token = await _expired_key(gw)
    revoked = await make_key(gw, "agent")
    assert (await gw.delete(f"/v1/api-keys/{revoked['id']}", headers=AUTH)).status_code == 204
    answers = []
    for headers in (
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not-a-key"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        bearer("vc_" + "A" * 43),  # well-formed, unknown
        bearer(expired_token),
        bearer(revoked["key"]),
    ):
        response = await gw.get("/v1/customers", headers=headers)
        answers.append((response.status_code, response.content, response.headers["www-authenticate"]))
    assert len(set(answers)) == 1, answers
    assert answers[0][0] == 401


async def _expired_key(gw) -> str:
    """A key whose expiry has passed (written straight to the gateway's database: no waiting)."""
    async with transaction(gw.gateway_app.state.store.writer) as session:
        _, token = await keys.create(
            session,
            name="old",
            role="agent",
            scopes=[],
            expires_at=datetime.now(UTC) - timedelta(seconds=1),
            partner_id=None,
            person_id=None,
        )
    return token


async def test_revoking_stops_the_key_at_once_here_and_within_the_cache_ttl_elsewhere(gw, start_gateway):
    made = await make_key(gw, "agent")
    other = await start_gateway(database_url=gw.gateway_app.state.settings.database_url, key_cache_ttl_s=0.2)
    assert (await other.get("/v1/customers/c1", headers=bearer(made["key"]))).status_code == 200
    assert (await gw.get("/v1/customers/c1", headers=bearer(made["key"]))).status_code == 200

    assert (await gw.delete(f"/v1/api-keys/{made['id']}", headers=AUTH)).status_code == 204
    assert (await gw.get("/v1/customers/c1", headers=bearer(made["key"]))).status_code == 401

    async def refused_elsewhere() -> bool:
        return (await other.get("/v1/customers/c1", headers=bearer(made["key"]))).status_code == 401

    await wait_until(refused_elsewhere, what="the other gateway process refuses the revoked key")
    listed = (await gw.get(f"/v1/api-keys/{made['id']}", headers=AUTH)).json()
    assert listed["revoked_at"] is not None
    assert (await gw.delete(f"/v1/api-keys/{made['id']}", headers=AUTH)).status_code == 204  # again: no-op
    assert (await gw.post(f"/v1/api-keys/{made['id']}/rotate", headers=AUTH)).status_code == 409
    assert (await gw.delete("/v1/api-keys/key_nope", headers=AUTH)).status_code == 404


async def test_rotation_keeps_the_old_secret_for_the_overlap(gw):
    made = await make_key(gw, "agent")
    first = made["key"]
    rotated = await gw.post(f"/v1/api-keys/{made['id']}/rotate", json={"overlap_seconds": 3600}, headers=AUTH)
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()["key"]
    assert second != first and rotated.json()["id"] == made["id"] and rotated.json()["prefix"] == second[3:11]
    for token in (first, second):
        assert (await gw.get("/v1/customers/c1", headers=bearer(token))).status_code == 200

    third = (await gw.post(f"/v1/api-keys/{made['id']}/rotate", json={"overlap_seconds": 0}, headers=AUTH)).json()
    for token in (first, second):
        assert (await gw.get("/v1/customers/c1", headers=bearer(token))).status_code == 401
    assert (await gw.get("/v1/customers/c1", headers=bearer(third["key"]))).status_code == 200

    default = await gw.post(f"/v1/api-keys/{made['id']}/rotate", headers=AUTH)  # no body: 24 h
    assert default.status_code == 200
    assert (await gw.get("/v1/customers/c1", headers=bearer(third["key"]))).status_code == 200
    too_long = await gw.post(f"/v1/api-keys/{made['id']}/rotate", json={"overlap_seconds": 31 * 86400}, headers=AUTH)
    assert too_long.status_code == 422 and too_long.json()["detail"][0]["field"] == "body.overlap_seconds"


async def test_last_use_is_recorded_in_batches(gw):
    made = await make_key(gw, "analyst")
    assert (await gw.get("/v1/customers", headers=bearer(made["key"]))).status_code == 200
    # Shown at once (this process knows), written to the database with the next batch.
    assert (await gw.get(f"/v1/api-keys/{made['id']}", headers=AUTH)).json()["last_used_at"] is not None
    store = gw.gateway_app.state.store

    async def stored_last_use():
        async with store.reader() as session:
            return await session.scalar(select(keys.ApiKey.last_used_at).where(keys.ApiKey.id == made["id"]))

    await gw.gateway_app.state.access.flush()
    assert await stored_last_use() is not None


async def test_keys_are_listed_in_pages_without_secrets(start_gateway):
    gw = await start_gateway()
    made = [await make_key(gw, "readonly") for _ in range(3)]
    first = (await gw.get("/v1/api-keys", params={"limit": 2}, headers=AUTH)).json()
    second = (await gw.get("/v1/api-keys", params={"limit": 2, "cursor": first["next_cursor"]}, headers=AUTH)).json()
    assert [k["id"] for k in first["items"] + second["items"]] == [k["id"] for k in made]
    assert second["next_cursor"] is None
    assert all("key" not in k for k in first["items"] + second["items"])
    bad = await gw.get("/v1/api-keys", params={"colour": "red"}, headers=AUTH)
    assert bad.status_code == 422


# --- what services learn --------------------------------------------------------------------


async def test_the_caller_is_forwarded_and_client_sent_caller_headers_are_dropped(gw):
    partner = await make_key(gw, "partner", partner_id="partner-p1")
    forged = {"x-valuechain-role": "admin", "X-ValueChain-Partner": "stakeholder-p2", "x-valuechain-internal": "x"}
    forged["x-valuechain-pii"] = "1"  # a partner without pii:read does not get personal fields by asking
    seen = (await gw.get("/v1/stakeholders", headers={**bearer(partner["key"]), **forged})).json()["headers"]
    assert seen.get("x-valuechain-internal") != "x"  # the gateway's own secret (docs/security.md), if any
    assert {k: v for k, v in seen.items() if k.startswith("x-valuechain-") and k != "x-valuechain-internal"} == {
        "x-valuechain-actor": partner["id"],
        "x-valuechain-role": "partner",
        "x-valuechain-partner": "partner-p1",
    }
    agent = await make_key(gw, "agent", person_id="employee-x 7")
    seen = (await gw.get("/v1/customers/c1", headers=bearer(agent["key"]))).json()["headers"]
    assert seen["x-valuechain-person"] == "employee-x%207" and seen["x-valuechain-role"] == "agent"
    assert seen["x-valuechain-pii"] == "1"  # an agent holds pii:read
    seen = (await gw.get("/v1/customers/c1", headers=AUTH)).json()["headers"]
    assert seen["x-valuechain-actor"] == "bootstrap-admin" and "x-valuechain-partner" not in seen
    assert "x-valuechain-event-types" not in seen  # only a key limited to some event types sends it


async def test_a_key_limited_to_event_types_shows_them_and_services_learn_them(gw):
    patterns = ["crm.identify.customer.*", "crm.value.offer.issued"]
    limited = await make_key(gw, "partner", partner_id="partner-p1", event_types=patterns)
    assert limited["event_types"] == sorted(patterns)
    assert (await gw.get(f"/v1/api-keys/{limited['id']}", headers=AUTH)).json()["event_types"] == sorted(patterns)
    assert (await gw.get("/v1/me", headers=bearer(limited["key"]))).json()["event_types"] == sorted(patterns)
    forged = {"x-valuechain-event-types": "crm.*"}  # never the client's to say
    seen = (await gw.get("/v1/events", headers={**bearer(limited["key"]), **forged})).json()["headers"]
    assert seen["x-valuechain-event-types"] == "crm.identify.customer.*%20crm.value.offer.issued"  # percent-encoded
    everything = await make_key(gw, "partner", partner_id="partner-p1")
    assert everything["event_types"] is None
    seen = (await gw.get("/v1/events", headers={**bearer(everything["key"]), **forged})).json()["headers"]
    assert "x-valuechain-event-types" not in seen


async def test_a_partner_reaches_nothing_about_customers(gw):
    partner = await make_key(gw, "partner", partner_id="partner-p1")
    for method, path in [
        ("GET", "/v1/customers"),
        ("GET", "/v1/customers/c1/referrals"),
        ("GET", "/v1/customers/c1/360"),
        ("GET", "/v1/offers/o1"),
        ("POST", "/v1/stakeholders"),
        ("GET", "/v1/ops/network/dead-letters"),
    ]:
        response = await gw.request(method, path, headers=bearer(partner["key"]))
        assert response.status_code == 403, (method, path)


# --- operators ------------------------------------------------------------------------------


async def test_metrics_and_operator_routes_need_ops_health_stays_open(gw):
    operator = await make_key(gw, "operator")
    manager = await make_key(gw, "manager")
    with_ops = await make_key(gw, "analyst", scopes=["ops"])
    assert (await gw.get("/metrics")).status_code == 401
    assert (await gw.get("/metrics", headers=bearer(manager["key"]))).status_code == 403
    for token in (operator["key"], with_ops["key"]):
        assert (await gw.get("/metrics", headers=bearer(token))).status_code == 200
        assert (await gw.get("/v1/ops/identify/dead-letters", headers=bearer(token))).status_code == 200
    denied = await gw.get("/v1/ops/identify/dead-letters", headers=bearer(manager["key"]))
    assert denied.status_code == 403 and denied.json()["detail"] == "this needs the scope ops"
    assert (await gw.get("/v1/customers", headers=bearer(operator["key"]))).status_code == 403
    for path in ("/healthz", "/readyz"):
        assert (await gw.get(path)).status_code == 200


async def test_the_openapi_document_names_each_operations_scope(gw):
    paths = (await gw.get("/openapi.json")).json()["paths"]
    create = paths["/v1/customers"]["post"]
    assert create["x-scope"] == "customers:write" and "customers:write" in create["responses"]["403"]["description"]
    assert paths["/v1/api-keys"]["post"]["x-scope"] == "keys:admin"
    me = paths["/v1/me"]["get"]
    assert "x-scope" not in me and "403" not in me["responses"] and "401" in me["responses"]
