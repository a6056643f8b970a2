"""Deleting the events about an erased customer from the JetStream stream.

The stream keeps every event for replay, so the person's data is still there in the
payloads published before the erasure (customer.created, interaction texts, offers,
dead letters on crm.dlq.*). Once every service has reported (so every event any of
them emitted about the customer before its erasure is on the stream: each relay
publishes in commit order), identify walks the subjects whose contracts carry
personal fields about a customer, one `$JS.API.STREAM.MSG.GET` (`next_by_subj`) per
message, and deletes each message about the erased ids that still holds personal
data with `$JS.API.STREAM.MSG.DELETE`. A delete without `no_erase` makes the file store
overwrite the message's bytes in its block with random data, so they are not left on
disk. Consumers and partners reading later find a gap in the sequence where those
events were; the facts they carried stay in the services' databases
(docs/privacy.md weighs this against crypto-shredding).
"""

from __future__ import annotations

import base64
from collections.abc import Collection

import orjson
from nats.aio.client import Client

from shared.events.contracts import CATALOG, DeadLetter
from shared.privacy.classification import personal_fields
from shared.privacy.scrub import scrub_event_json

API_TIMEOUT_S = 5.0


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


async def delete_events_about(nc: Client, stream: str, ids: Collection[str]) -> int:
    """Delete (and overwrite) every message of the stream about `ids` with personal data; how many."""

    deleted = 0
    for subject in personal_subjects():
        seq = 1
        while True:
            answer = await _request(nc, f"$JS.API.STREAM.MSG.GET.{stream}", {"seq": seq, "next_by_subj": subject})
            message = answer.get("message")
            if message is None:
                error = answer.get("error") or {}
                if error.get("code") == 404:
                    break  # no further message on the subject
                raise RuntimeError(f"reading the stream {stream} failed: {error}")
            seq = int(message["seq"]) + 1
            data = base64.b64decode(message.get("data") or b"")
            if scrub_event_json(data, ids) is None:
                continue  # not about them, or nothing personal in it
            deleted_answer = await _request(nc, f"$JS.API.STREAM.MSG.DELETE.{stream}", {"seq": message["seq"]})
            if not deleted_answer.get("success"):
                raise RuntimeError(f"deleting message {message['seq']} of {stream} failed: {deleted_answer}")
            deleted += 1
    return deleted
