"""Deleting the events about an erased customer from the JetStream stream.

The stream keeps every event for replay, so the person's data is still there in the
payloads published before the erasure (customer.created, interaction texts, offers,
dead letters on crm.dlq.*). Once every service has reported (so every event any of
them emitted about the customer before its erasure is on the stream: each relay
publishes in commit order), identify walks the subjects whose contracts carry
personal fields about a customer, one `$JS.API.STREAM.MSG.GET` (`next_by_subj`) per
message (several parts of each subject's range at once), and deletes each message about
the erased ids that still holds personal data with `$JS.API.STREAM.MSG.DELETE`. A delete
without `no_erase` makes the file store overwrite the message's bytes in its block with
random data, so they are not left on disk. Consumers and partners reading later find a gap in the sequence where those
events were; the facts they carried stay in the services' databases
(docs/privacy.md weighs this against crypto-shredding).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Collection

import orjson
from nats.aio.client import Client

from shared.events.contracts import CATALOG, DeadLetter
from shared.privacy.classification import personal_fields
from shared.privacy.scrub import scrub_event_json

API_TIMEOUT_S = 5.0
# Parts of a subject's sequence range walked at once. bench/erasure_bench.py, 20,000 messages,
# three runs each: one part 4,100-4,500 messages/s, 4 parts 8,400-10,200, 8 parts
# 11,300-13,700, 16 parts 13,600-14,100 (little more, for twice the requests in flight).
PARALLEL = 8


def personal_subjects() -> list[str]:
    """The subjects whose events may hold a customer's personal data."""

    return sorted(
        subject
        for subject, contract in CATALOG.items()
        if personal_fields(contract.model) and (contract.customers or contract.model is DeadLetter)
    )


async def _request(nc: Client, subject: str, body: dict) -> dict:
    reply = await nc.request(subject, orjson.dumps(body), timeout=API_TIMEOUT_S)
    answer: dict = orjson.loads(reply.data)
    return answer


async def _get(nc: Client, stream: str, request: dict) -> dict | None:
    """A message of the stream (its JSON with base64 `data`), or None when there is none."""

    answer = await _request(nc, f"$JS.API.STREAM.MSG.GET.{stream}", request)
    message: dict | None = answer.get("message")
    if message is None and (answer.get("error") or {}).get("code") != 404:
        raise RuntimeError(f"reading the stream {stream} failed: {answer.get('error')}")
    return message


async def _delete_in_range(nc: Client, stream: str, subject: str, first: int, last: int, ids: Collection[str]) -> int:
    deleted = 0
    seq = first
    while seq <= last:
        message = await _get(nc, stream, {"seq": seq, "next_by_subj": subject})
        if message is None or int(message["seq"]) > last:
            break
        seq = int(message["seq"]) + 1
        data = base64.b64decode(message.get("data") or b"")
        if scrub_event_json(data, ids) is None:
            continue  # not about them, or nothing personal in it
        answer = await _request(nc, f"$JS.API.STREAM.MSG.DELETE.{stream}", {"seq": message["seq"]})
        if not answer.get("success"):
            raise RuntimeError(f"deleting message {message['seq']} of {stream} failed: {answer}")
        deleted += 1
    return deleted


async def delete_events_about(nc: Client, stream: str, ids: Collection[str], *, parallel: int = PARALLEL) -> int:
    """Delete (and overwrite) every message of the stream about `ids` with personal data; how many.

    Each subject's sequence range (its first and last message) is cut into `parallel`
    parts walked at once: the walk is one round trip per message, so it waits on the
    network, not on a core."""

    deleted = 0
    for subject in personal_subjects():
        first = await _get(nc, stream, {"seq": 1, "next_by_subj": subject})
        last = await _get(nc, stream, {"last_by_subj": subject})
        if first is None or last is None:
            continue
        low, high = int(first["seq"]), int(last["seq"])
        step = max(1, -(-(high - low + 1) // parallel))
        parts = [(start, min(start + step - 1, high)) for start in range(low, high + 1, step)]
        counts = await asyncio.gather(*(_delete_in_range(nc, stream, subject, a, b, ids) for a, b in parts))
        deleted += sum(counts)
    return deleted
