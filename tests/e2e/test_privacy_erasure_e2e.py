"""End to end: a customer erased through the gateway leaves no byte of their personal data
under var/ (SQLite files and WALs, the JetStream store, logs), while the portfolio's
totals stay as they were (the running suite, `valuechain run`; docs/privacy.md).

On PostgreSQL (VALUECHAIN_TEST_POSTGRES_URL) the services' databases are not under var/:
every table of every service is queried for the markers instead."""

from __future__ import annotations

import secrets
from pathlib import Path

from tests.e2e.test_value_chain import _json_when
from tests.support import POSTGRES_URL, wait_until


def _markers(tag: str) -> dict[str, str]:
    # The phones are given as +1 and ten digits: stored as typed and in E.164, both hold the digits.
    digits = f"{secrets.randbelow(10**6):06d}"
    return {
        "name": f"Zork{tag}",
        "renamed": f"Quix{tag}",
        "email": f"mail{tag}",
        "phone": f"4157{digits}",
        "external_id": f"ext{tag}",
        "interaction": f"Chat{tag}",
        "refund": f"Refund{tag}",
        "void": f"Void{tag}",
        "offer": f"Offer{tag}",
        "twin_name": f"Twin{tag}",
        "twin_email": f"twinmail{tag}",
        "twin_phone": f"4158{digits}",
        "twin_interaction": f"Twinchat{tag}",
    }


def _forms(marker: str) -> list[bytes]:
    """The byte forms a marker could take in a file: as written, folded to lower case
    (match keys, search index), UTF-16 (either order)."""

    forms = {marker.encode(), marker.lower().encode()}
    forms |= {marker.encode("utf-16-le"), marker.encode("utf-16-be"), marker.lower().encode("utf-16-le")}
    return sorted(forms)


def _files_holding(var_dir: Path, markers: dict[str, str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in sorted(var_dir.rglob("*")):
        if not path.is_file():
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        folded = data.lower()
        hits = [name for name, marker in markers.items() if any(f in data or f in folded for f in _forms(marker))]
        if hits:
            found[str(path.relative_to(var_dir))] = hits
    return found


async def _tables_holding(database_urls: dict[str, str], markers: dict[str, str]) -> dict[str, list[str]]:
    """PostgreSQL: every row of every table of every service, as text, searched for the markers."""

    import asyncpg

    found: dict[str, list[str]] = {}
    for service, url in database_urls.items():
        connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            tables = await connection.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
                "AND table_type = 'BASE TABLE'"
            )
            for (table,) in tables:
                rows = await connection.fetch(f'SELECT CAST(t AS text) AS row FROM "{table}" t')
                text = "\n".join(row["row"] for row in rows).lower()
                # bytea columns print as hex: search the markers' hex too.
                hits = [
                    name for name, marker in markers.items() if marker.lower() in text or marker.encode().hex() in text
                ]
                if hits:
                    found[f"{service}.{table}"] = hits
        finally:
            await connection.close()
    return found


async def _when_known(call, what: str):
    """POST to a service that learns of a customer from identify's event: 422 until it has."""

    async def attempt():
        response = await call()
        return None if response.status_code == 422 else response

    response = await wait_until(attempt, timeout=15, interval=0.05, what=what)
    assert response.status_code == 201, response.text
    return response.json()


async def test_an_erased_customer_leaves_no_personal_data_and_the_portfolio_totals_stay(running_suite):
    tag = secrets.token_hex(5)
    m = _markers(tag)
    async with running_suite.client() as gw:

        async def create(**body) -> dict:
            response = await gw.post("/v1/customers", json=body)
            assert response.status_code == 201, response.text
            return response.json()

        async def buy(customer_id: str, amount: str, order: str) -> dict:
            response = await gw.post(
                "/v1/transactions",
                json={
                    "customer_id": customer_id,
                    "amount": amount,
                    "currency": "USD",
                    "occurred_at": "2026-10-01T10:00:00Z",
                    "external_id": order,
                },
            )
            assert response.status_code == 201, response.text
            return response.json()

        person = await create(
            email=f"{m['email']}@example.com",
            name=m["name"],
            phone=f"+1{m['phone']}",
            external_id=m["external_id"],
        )
        twin = await create(
            email=f"{m['twin_email']}@example.com",
            name=m["twin_name"],
            phone=f"+1{m['twin_phone']}",
        )
        friend = await create(email=f"friend-{tag}@example.org", referred_by=person["id"])
        pid = person["id"]
        renamed = await gw.patch(f"/v1/customers/{pid}", json={"name": m["renamed"]})
        assert renamed.status_code == 200, renamed.text
        first = await buy(pid, "40.00", f"order-{tag}-1")
        await buy(pid, "15.00", f"order-{tag}-2")
        voided = await buy(pid, "99.00", f"order-{tag}-3")
        await buy(twin["id"], "25.00", f"order-{tag}-4")
        await buy(friend["id"], "10.00", f"order-{tag}-5")
        refund = await gw.post(f"/v1/transactions/{first['id']}/refund", json={"amount": "5.00", "reason": m["refund"]})
        assert refund.status_code == 201, refund.text
        void = await gw.post(f"/v1/transactions/{voided['id']}/void", json={"reason": m["void"]})
        assert void.status_code in (200, 201), void.text
        for who, text in ((pid, m["interaction"]), (twin["id"], m["twin_interaction"])):
            await _when_known(
                lambda who=who, text=text: gw.post(
                    "/v1/interactions",
                    json={"customer_id": who, "channel": "chat", "direction": "inbound", "summary": f"{text} says hi"},
                ),
                "engage knows the customer",
            )
        await _when_known(
            lambda: gw.post("/v1/offers", json={"customer_id": pid, "kind": "vip", "title": f"{m['offer']} 20% off"}),
            "value knows the customer",
        )
        await _json_when(gw, f"/v1/customers/{twin['id']}/offers", lambda b: len(b["items"]) == 1, "twin welcome")
        merged = await gw.post(f"/v1/customers/{pid}/merge", json={"merge": [twin["id"]]})
        assert merged.status_code == 200, merged.text
        # Every service holds its share of the person before the erasure.
        await _json_when(gw, f"/v1/customers/{pid}/offers", lambda b: len(b["items"]) == 3, "offers (two welcome)")
        await _json_when(gw, f"/v1/customers/{pid}/lifecycle", lambda b: b["stage"] == "active", "stage active")
        await _json_when(gw, f"/v1/customers/{pid}/referrals", lambda b: len(b["items"]) == 1, "referral")
        timeline = await _json_when(
            gw,
            f"/v1/customers/{pid}/timeline?limit=100",
            lambda b: (
                sum(i["type"] == "crm.engage.interaction.logged" for i in b["items"]) == 2
                and any(i["type"] == "crm.value.offer.issued" and m["offer"] in i["summary"] for i in b["items"])
            ),
            "timeline with both interactions and the offer",
        )
        assert any(m["refund"] in item["summary"] for item in timeline["items"])
        pareto = (await gw.get("/v1/portfolio/pareto")).json()
        transactions = (await gw.get(f"/v1/customers/{pid}/transactions?limit=100")).json()["items"]

        # The search below finds them all before the erasure: in the databases and in the stream.
        before = _files_holding(running_suite.var_dir, m)
        assert {name for hits in before.values() for name in hits} == set(m), before
        assert any(path.startswith("jetstream") for path in before), before
        if POSTGRES_URL:
            held = await _tables_holding(running_suite.database_urls, m)
            assert {name for hits in held.values() for name in hits} == set(m), held

        erasure = await gw.post(f"/v1/customers/{pid}/erasure")
        assert erasure.status_code == 202, erasure.text
        report = erasure.json()
        assert report["customer_id"] == pid and report["merged_ids"] == [twin["id"]]

        async def complete():
            response = await gw.get(f"/v1/erasures/{report['id']}")
            assert response.status_code == 200, response.text
            return response.json() if response.json()["complete"] else None

        done = await wait_until(complete, timeout=60, interval=0.2, what="the erasure's report is complete")
        by_service = {entry["service"]: entry for entry in done["services"]}
        assert set(by_service) == {"identify", "engage", "network", "value", "lifecycle"}
        assert all(entry["applied_at"] for entry in by_service.values())
        assert by_service["identify"]["tables"]["customers"] == 2
        assert by_service["engage"]["tables"]["interactions"] == 2
        assert by_service["value"]["tables"]["offers"] >= 1
        assert done["stream"]["messages"] > 0 and done["completed_at"]

        again = await gw.post(f"/v1/customers/{pid}/erasure")
        assert again.status_code == 200 and again.json() == done
        unknown = await gw.post("/v1/customers/0192b1c4-0000-7000-8000-000000000000/erasure")
        assert unknown.status_code == 404, unknown.text
        assert unknown.json()["error"] == "not_found"

        # The facts stay under the pseudonymous id: amounts, dates, stages, offers, referrals.
        assert (await gw.get("/v1/portfolio/pareto")).json() == pareto
        after = (await gw.get(f"/v1/customers/{pid}/transactions?limit=100")).json()["items"]
        assert [(t["id"], t["amount"], t["occurred_at"]) for t in after] == [
            (t["id"], t["amount"], t["occurred_at"]) for t in transactions
        ]
        assert (await gw.get(f"/v1/customers/{pid}/lifecycle")).json()["stage"] == "active"
        assert len((await gw.get(f"/v1/customers/{pid}/offers")).json()["items"]) == 3
        assert len((await gw.get(f"/v1/customers/{pid}/referrals")).json()["items"]) == 1
        shown = (await gw.get(f"/v1/customers/{pid}")).json()
        assert (shown["email"], shown["name"], shown["phone"], shown["external_id"]) == (None, None, None, None)
        assert shown["erased_at"] and shown["suppressed"]

        found = _files_holding(running_suite.var_dir, m)
        assert not found, f"personal data left under var/: {found}"
        if POSTGRES_URL:
            assert not await _tables_holding(running_suite.database_urls, m)

        # The suppression entry: the same person created again is flagged and gets no welcome offer.
        again_person = await create(email=f"{m['email'].upper()}@EXAMPLE.COM")
        assert again_person["suppressed"] is True
        other = await create(email=f"other-{tag}@example.org")
        assert other["suppressed"] is False
        await buy(again_person["id"], "12.00", f"order-{tag}-6")
        await buy(other["id"], "12.00", f"order-{tag}-7")
        await _json_when(gw, f"/v1/customers/{other['id']}/offers", lambda b: len(b["items"]) == 1, "welcome")
        await _json_when(gw, f"/v1/customers/{again_person['id']}/lifecycle", lambda b: b["stage"] == "new", "new")
        # value handles stage changes in stream order, and the other's came after this one's.
        assert (await gw.get(f"/v1/customers/{again_person['id']}/offers")).json()["items"] == []


async def test_an_export_gathers_what_every_service_holds_and_why_and_is_handed_over_once(running_suite):
    tag = secrets.token_hex(5)
    async with running_suite.client() as gw:
        created = await gw.post("/v1/customers", json={"email": f"exp{tag}@example.com", "name": f"Exp{tag}"})
        assert created.status_code == 201, created.text
        cid = created.json()["id"]
        bought = await gw.post(
            "/v1/transactions",
            json={"customer_id": cid, "amount": "30.00", "currency": "USD", "occurred_at": "2026-10-02T10:00:00Z"},
        )
        assert bought.status_code == 201, bought.text
        await _when_known(
            lambda: gw.post(
                "/v1/interactions",
                json={"customer_id": cid, "channel": "email", "direction": "outbound", "summary": f"Hello{tag}"},
            ),
            "engage knows the customer",
        )
        await _json_when(gw, f"/v1/customers/{cid}/offers", lambda b: len(b["items"]) == 1, "welcome offer")

        unknown = await gw.post("/v1/customers/0192b1c4-0000-7000-8000-000000000000/exports")
        assert unknown.status_code == 404, unknown.text
        started = await gw.post(f"/v1/customers/{cid}/exports")
        assert started.status_code == 202, started.text
        job = started.json()
        assert (job["customer_id"], job["status"]) == (cid, "running")

        async def done():
            body = (await gw.get(f"/v1/exports/{job['id']}")).json()
            return body if body["status"] != "running" else None

        assert (await wait_until(done, timeout=30, what="the export job"))["status"] == "done"
        download = await gw.get(f"/v1/exports/{job['id']}/download")
        assert download.status_code == 200, download.text
        assert download.headers["cache-control"] == "no-store"
        document = download.json()
        assert set(document["services"]) == {"identify", "engage", "network", "value", "lifecycle"}

        def table(service: str, name: str) -> dict:
            return next(t for t in document["services"][service]["tables"] if t["table"] == name)

        customer = table("identify", "customers")
        assert customer["rows"][0]["email"] == f"exp{tag}@example.com" and customer["purpose"]
        assert customer["personal"]["email"] == "email"
        assert [row["amount"] for row in table("identify", "transactions")["rows"]] == ["30.0000"]
        assert table("engage", "interactions")["rows"][0]["summary"] == f"Hello{tag}"
        assert table("value", "offers")["rows"][0]["kind"] == "welcome"
        assert table("lifecycle", "customer_stages")["rows"][0]["stage"] == "new"
        again = await gw.get(f"/v1/exports/{job['id']}/download")
        assert (again.status_code, again.json()["error"]) == (410, "gone")
        assert (await gw.get(f"/v1/exports/{job['id']}")).json()["status"] == "downloaded"


async def test_the_readme_tour_leaves_no_personal_data_in_any_log(running_suite):
    """README's tour, through the gateway, with unique personal data: no log line holds any of it."""

    tag = secrets.token_hex(5)
    m = {
        "ada_email": f"ada{tag}",
        "ada_name": f"Ada{tag}",
        "bob_email": f"bob{tag}",
        "interaction": f"Delivery{tag}",
        "refund": f"Damaged{tag}",
        "phone": f"4159{secrets.randbelow(10**6):06d}",
    }
    async with running_suite.client() as gw:
        ada = await gw.post(
            "/v1/customers",
            json={"email": f"{m['ada_email']}@example.com", "name": m["ada_name"], "phone": f"+1{m['phone']}"},
        )
        assert ada.status_code == 201, ada.text
        ada = ada.json()
        bob = await gw.post("/v1/customers", json={"email": f"{m['bob_email']}@example.com", "referred_by": ada["id"]})
        assert bob.status_code == 201, bob.text
        bob = bob.json()
        rates = await gw.put("/v1/fx-rates", json=[{"currency": "EUR", "date": "2026-10-01", "rate": "1.08"}])
        assert rates.status_code == 200, rates.text
        order = await gw.post(
            "/v1/transactions",
            json={
                "customer_id": bob["id"],
                "amount": "49.90",
                "currency": "EUR",
                "occurred_at": "2026-11-01T10:00:00Z",
                "external_id": f"order-{tag}",
            },
        )
        assert order.status_code == 201, order.text
        await _json_when(gw, f"/v1/customers/{bob['id']}/lifecycle", lambda b: b["stage"] == "new", "stage new")
        await _json_when(gw, f"/v1/customers/{bob['id']}/offers", lambda b: len(b["items"]) == 1, "welcome offer")
        await _json_when(gw, f"/v1/customers/{ada['id']}/referrals", lambda b: len(b["items"]) == 1, "referral")
        await _when_known(
            lambda: gw.post(
                "/v1/interactions",
                json={
                    "customer_id": bob["id"],
                    "channel": "email",
                    "direction": "inbound",
                    "summary": m["interaction"],
                },
            ),
            "engage knows the customer",
        )
        assert (await gw.get(f"/v1/customers/{bob['id']}/360")).status_code == 200
        found = await gw.get("/v1/customers", params={"email": f"{m['bob_email']}@example.com"})
        assert found.status_code == 200 and len(found.json()["items"]) == 1
        assert (await gw.get("/v1/customers", params={"q": m["ada_name"], "sort": "-created_at"})).status_code == 200
        assert (await gw.get("/v1/customers", params={"q": m["phone"]})).status_code == 200
        assert (await gw.get("/v1/customers/export", params={"format": "csv"})).status_code == 200
        refund = await gw.post(
            f"/v1/transactions/{order.json()['id']}/refund", json={"amount": "9.90", "reason": m["refund"]}
        )
        assert refund.status_code == 201, refund.text
        # Bad input naming the person must not be logged either.
        clash = await gw.post("/v1/customers", json={"email": f"{m['ada_email']}@example.com"})
        assert clash.status_code == 409
        invalid = await gw.post("/v1/customers", json={"email": f"{m['ada_email']}", "name": m["ada_name"]})
        assert invalid.status_code == 422
        await _json_when(
            gw,
            f"/v1/customers/{bob['id']}/timeline",
            lambda b: any(m["refund"] in item["summary"] for item in b["items"]),
            "the refund on the timeline",
        )
    logs = [path for path in running_suite.var_dir.rglob("*") if path.is_file() and path.suffix == ".log"]
    assert any(path.name == "gateway.log" for path in logs) and any(path.name == "identify.log" for path in logs)
    # The requests were logged (by their paths, which name ids only); the gateway writes its
    # access log every so often, not line by line.
    gateway_log = next(path for path in logs if path.name == "gateway.log")
    await wait_until(lambda: bob["id"].encode() in gateway_log.read_bytes(), what="the tour in the gateway's log")
    found_in_logs = {}
    for path in logs:
        data = path.read_bytes().lower()
        hits = [name for name, marker in m.items() if any(form.lower() in data for form in _forms(marker))]
        if hits:
            found_in_logs[path.name] = hits
    assert not found_in_logs, f"personal data in the logs: {found_in_logs}"
