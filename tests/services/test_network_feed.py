"""The event feed (`GET /v1/events`, services/network/feed) against a real nats-server:
events are put on the stream as the admin (as the services publish them), and network
reads them back with batched direct gets."""

from __future__ import annotations

import importlib
from contextlib import AsyncExitStack
from datetime import UTC, datetime

import httpx
import nats
import orjson
import pytest

from shared.events.contracts import CATALOG, dlq_subject
from shared.events.envelope import make_event

CREATED = "crm.identify.customer.created"
RECORDED = "crm.identify.transaction.recorded"
STAGE = "crm.lifecycle.stage.changed"


def _created(i: int) -> tuple[str, bytes]:
    data = {
        "id": f"c{i}",
        "email": f"person{i}@example.com",
        "name": f"Person {i}",
        "created_at": datetime(2026, 1, 1, tzinfo=UTC).isoformat(),
    }
    event = make_event(
        service="identify", type=CREATED, data=data, subject=f"c{i}", dataschema=CATALOG[CREATED].dataschema
    )
    return CREATED, event.to_json()


def _recorded(i: int) -> tuple[str, bytes]:
    data = {
        "id": f"t{i}",
        "customer_id": f"c{i}",
        "amount": "10.00",
        "currency": "EUR",
        "reporting_amount": "10.00",
        "reporting_currency": "EUR",
        "occurred_at": datetime(2026, 1, 2, tzinfo=UTC).isoformat(),
        "purchase_count": 1,
    }
    data = CATALOG[RECORDED].model.model_validate(data).model_dump(mode="json")
    event = make_event(
        service="identify", type=RECORDED, data=data, subject=f"c{i}", dataschema=CATALOG[RECORDED].dataschema
    )
    return RECORDED, event.to_json()


async def _publish(suite, messages: list[tuple[str, bytes]]) -> list[int]:
    nc = await nats.connect(suite.nats.url)
    try:
        js = nc.jetstream()
        return [(await js.publish(subject, body)).seq for subject, body in messages]
    finally:
        await nc.close()


def _dead_letter() -> tuple[str, bytes]:
    return dlq_subject("identify"), orjson.dumps({"type": dlq_subject("identify"), "data": {"raw": "secret"}})


async def _feed(client: httpx.AsyncClient, headers: dict | None = None, **params) -> httpx.Response:
    return await client.get("/v1/events", params=params, headers=headers or {})


async def _read_all(client, headers=None, **params) -> tuple[list[dict], list[str]]:
    """Every item of the feed, page by page; and the cursors the pages gave."""

    items, cursors, after = [], [], None
    while True:
        response = await _feed(client, headers, **params, **({"after": after} if after else {}))
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        cursors.append(page["next_cursor"])
        after = page["next_cursor"]
        if not page["has_more"]:
            return items, cursors


@pytest.fixture
async def network(suite):
    return await suite.start("network")


async def test_the_feed_gives_every_public_event_once_in_stream_order_across_pages(suite, network):
    messages = []
    for i in range(7):
        messages.append(_created(i))
        messages.append(_recorded(i))
        if i == 3:
            messages.append(_dead_letter())  # never public: skipped, the cursor moves past it
    seqs = await _publish(suite, messages)

    items, cursors = await _read_all(network.client, limit=4)
    public = [
        (seq, orjson.loads(body)) for seq, (subject, body) in zip(seqs, messages) if subject != dlq_subject("identify")
    ]
    assert [item["event"]["id"] for item in items] == [event["id"] for _, event in public]
    assert [int(item["cursor"]) for item in items] == [seq for seq, _ in public]
    assert len(cursors) == 4 and [int(c) for c in cursors] == sorted(int(c) for c in cursors)
    assert int(cursors[-1]) == seqs[-1]

    # Nothing new: the same cursor back, an empty page.
    again = (await _feed(network.client, after=cursors[-1])).json()
    assert again == {"items": [], "next_cursor": cursors[-1], "has_more": False}


async def test_types_filter_exact_wildcard_and_several(suite, network):
    await _publish(suite, [_created(1), _recorded(1), _created(2), _recorded(2)])

    only_created, _ = await _read_all(network.client, types=CREATED)
    assert [i["event"]["type"] for i in only_created] == [CREATED, CREATED]
    identify, _ = await _read_all(network.client, types="crm.identify.*")
    assert len(identify) == 4
    transactions, _ = await _read_all(network.client, types="crm.identify.transaction.*,crm.lifecycle.*")
    assert [i["event"]["data"]["id"] for i in transactions] == ["t1", "t2"]
    repeated, _ = await _read_all(network.client, types=[CREATED, "crm.identify.transaction.*"])
    assert len(repeated) == 4
    none_yet, _ = await _read_all(network.client, types=STAGE)
    assert none_yet == []

    for bad in ["crm.identify.customer.creatd", "crm.nothing.*", "crm.*.created", "*", "crm.dlq.identify"]:
        refused = await _feed(network.client, types=bad)
        assert refused.status_code == 422, (bad, refused.text)
        assert refused.json()["detail"][0]["field"] == "query.types"


async def test_personal_fields_are_null_without_pii_read_and_kept_with_it(suite, network):
    await _publish(suite, [_created(1), _recorded(1)])

    without = (await _feed(network.client)).json()["items"]
    created = without[0]["event"]["data"]
    assert created["email"] is None and created["name"] is None and created["id"] == "c1"
    assert without[1]["event"]["data"]["amount"] == "10.00"  # nothing personal: unchanged

    with_pii = (await _feed(network.client, {"x-valuechain-pii": "1"})).json()["items"]
    assert with_pii[0]["event"]["data"]["email"] == "person1@example.com"
    assert with_pii[0]["event"]["id"] == without[0]["event"]["id"]


async def test_a_key_limited_to_some_types_reads_only_those(suite, network):
    await _publish(suite, [_created(1), _recorded(1), _created(2)])
    limited = {"x-valuechain-event-types": "crm.identify.customer.*"}

    items, _ = await _read_all(network.client, limited)
    assert [i["event"]["type"] for i in items] == [CREATED, CREATED]
    # Asking for more than the key may see narrows to what it may; asking only outside it is 403.
    narrowed, _ = await _read_all(network.client, limited, types="crm.identify.*")
    assert [i["event"]["type"] for i in narrowed] == [CREATED, CREATED]
    refused = await _feed(network.client, limited, types="crm.identify.transaction.*")
    assert refused.status_code == 403 and refused.json()["error"] == "event_type_not_allowed"


async def test_bad_requests_are_422(network):
    for params in [
        {"limit": 0},
        {"limit": 1001},
        {"after": "-1"},
        {"after": "abc"},
        {"after": "1" * 20},
        {"colour": "x"},
    ]:
        response = await _feed(network.client, **params)
        assert response.status_code == 422, (params, response.text)
        assert response.json()["error"] == "validation_error"


async def test_a_cursor_older_than_the_stream_keeps_is_409_naming_the_oldest(suite, network):
    seqs = await _publish(suite, [_created(i) for i in range(6)])
    nc = await nats.connect(suite.nats.url)
    try:  # what retention does to old events: the stream now begins at the fourth
        await nc.jetstream().purge_stream("CRM", seq=seqs[3])
    finally:
        await nc.close()

    expired = await _feed(network.client, after=str(seqs[1]))
    assert expired.status_code == 409, expired.text
    body = expired.json()
    assert body["error"] == "cursor_expired" and body["oldest_cursor"] == str(seqs[2])
    assert f"the oldest available cursor is {seqs[2]}" in body["detail"]

    from_oldest = (await _feed(network.client, after=body["oldest_cursor"])).json()
    assert [i["event"]["data"]["id"] for i in from_oldest["items"]] == ["c3", "c4", "c5"]
    from_start = (await _feed(network.client)).json()  # no cursor: the oldest kept
    assert from_start["items"] == from_oldest["items"]

    beyond = await _feed(network.client, after=str(seqs[-1] + 100))
    assert beyond.status_code == 409 and beyond.json()["oldest_cursor"] == str(seqs[2])


async def test_a_cursor_survives_a_restart_of_network(suite, network):
    seqs = await _publish(suite, [_created(i) for i in range(4)])
    first = (await _feed(network.client, limit=2)).json()
    assert int(first["next_cursor"]) == seqs[1]

    module = importlib.import_module("services.network.main")
    async with AsyncExitStack() as stack:  # a second network process, started afresh
        app = module.create_app(network.settings)
        await stack.enter_async_context(app.router.lifespan_context(app))
        client = await stack.enter_async_context(
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://network", headers=suite.internal_headers
            )
        )
        from tests.support import wait_until

        await wait_until(lambda: app.state.runtime.bus.is_connected, what="network connected")
        rest = (await _feed(client, after=first["next_cursor"])).json()
    assert [i["event"]["data"]["id"] for i in rest["items"]] == ["c2", "c3"]


async def test_the_stream_keeps_events_as_long_as_configured(suite, network):
    from shared.events.consumer import provision_consumers
    from shared.settings import service_settings

    settings = service_settings("network", stream_max_age_s=3600, var_dir=suite.nats.var_dir)
    nc = await nats.connect(suite.nats.url)
    try:
        js = nc.jetstream()
        await provision_consumers(js, [], settings)
        info = await js.stream_info("CRM")
        assert info.config.max_age == 3600 and info.config.allow_direct
    finally:
        await nc.close()


@pytest.mark.parametrize(
    "headers",
    [
        b"NATS/1.0\r\nNats-Stream: CRM\r\nNats-Subject: crm.identify.customer.created\r\nNats-Sequence: 7\r\n"
        b"Nats-Msg-Id: 0190-ab\r\n\r\n",
        b"NATS/1.0 204 EOB\r\nNats-Num-Pending: 0\r\nNats-Last-Sequence: 7\r\n\r\n",
        b"NATS/1.0 404 Message Not Found\r\n\r\n",
        b"NATS/1.0\r\nBad Name: x\r\nGood:y\r\n\r\n",
        b"NATS/1.0\r\nName: caf\xc3\xa9\r\nOther: \xff\r\n\r\n",
        b"",
    ],
)
async def test_the_feeds_lean_header_parser_reads_what_nats_py_reads(headers):
    from nats.aio.client import Client

    from services.network.feed.stream import FeedClient

    assert await FeedClient()._process_headers(headers) == await Client()._process_headers(headers)
