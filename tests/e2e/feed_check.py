"""The whole event feed against the stream: a check any end-to-end test can run after it drove
the suite (the README tour's test calls it last).

It reads `GET /v1/events` through the gateway from the start to the stream's end as it was
when the check began, and asserts that the cursors only grow, that no event comes twice, and
that the feed holds exactly the public events the suite published (read from the stream
itself as the NATS admin), in stream order, each one's `data` valid against the JSON Schema
its `dataschema` names (fetched from the gateway, as a partner would).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx
import jsonschema_rs
import nats
import orjson

from shared.events.public import PUBLIC_TYPES

PAGE = 500


async def _stream_events(nats_url: str, stream: str = "CRM") -> tuple[list[tuple[int, dict[str, Any]]], int]:
    """Every public event the stream holds, with its sequence; and the stream's last sequence."""

    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        last = (await js.stream_info(stream)).state.last_seq
        found: list[tuple[int, dict[str, Any]]] = []
        if last == 0:
            return found, last
        sub = await js.subscribe("crm.>", ordered_consumer=True, stream=stream)
        try:
            while True:
                msg = await sub.next_msg(timeout=5)
                seq = msg.metadata.sequence.stream
                if msg.subject in PUBLIC_TYPES:
                    found.append((seq, orjson.loads(msg.data)))
                if seq >= last:
                    return found, last
        finally:
            await sub.unsubscribe()
    finally:
        await nc.close()


async def assert_the_whole_feed(gateway: httpx.AsyncClient, nats_url: str) -> int:
    """Check the feed (read with `gateway`'s key, which must hold events:read and pii:read)
    against the stream; returns how many events it held."""

    published, last = await _stream_events(nats_url)
    items: list[dict[str, Any]] = []
    cursors: list[int] = []
    after: str | None = None
    while True:
        params: dict[str, Any] = {"limit": PAGE, **({"after": after} if after else {})}
        response = await gateway.get("/v1/events", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        items += [item for item in page["items"] if int(item["cursor"]) <= last]
        cursors.append(int(page["next_cursor"]))
        after = page["next_cursor"]
        if int(after) >= last or not page["has_more"]:
            break

    item_cursors = [int(item["cursor"]) for item in items]
    assert item_cursors == sorted(set(item_cursors)), "item cursors strictly increase"
    assert cursors == sorted(cursors), "page cursors never go back"
    ids = [item["event"]["id"] for item in items]
    assert len(ids) == len(set(ids)), "no event twice"
    assert [(int(item["cursor"]), item["event"]) for item in items] == published, "every public event, in order"

    validators: dict[str, Any] = {}
    for item in items:
        event = item["event"]
        # The schema's path on this gateway: the suite under test may not listen where
        # VALUECHAIN_PUBLIC_BASE_URL (the URL's host) says.
        url = urlsplit(event["dataschema"]).path
        if url not in validators:
            schema = await gateway.get(url)
            assert schema.status_code == 200, (url, schema.text)
            validators[url] = jsonschema_rs.Draft202012Validator(schema.json(), validate_formats=True)
        errors = [error.message for error in validators[url].iter_errors(event["data"])]
        assert not errors, (event["type"], event["id"], errors)
    return len(items)
