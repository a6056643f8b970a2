"""The JetStream side of webhooks: each subscription's durable consumer (and the one a
replay makes), the stream's oldest point, one message by sequence.

network's NATS user may make and delete these consumers (shared/nats_auth.py
`dynamic_consumer_rights`); `valuechain migrate` provisions only the static ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import orjson
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, Base, ConsumerConfig, ConsumerInfo, DeliverPolicy, RawStreamMsg
from nats.js.errors import NotFoundError

from shared.settings import NetworkSettings

PREFIX = "network-webhook-"
REPLAY_SUFFIX = "-replay"


def consumer_name(subscription_id: str) -> str:
    return f"{PREFIX}{subscription_id}"


def replay_name(subscription_id: str) -> str:
    return f"{PREFIX}{subscription_id}{REPLAY_SUFFIX}"


def _config(name: str, subjects: list[str], settings: NetworkSettings, **start) -> ConsumerConfig:
    return ConsumerConfig(
        name=name,
        durable_name=name,
        filter_subjects=subjects,
        ack_policy=AckPolicy.EXPLICIT,
        # A held message (in flight, or waiting for the breaker's cool-down) is not
        # redelivered under our feet; retries are our naks with their delays.
        ack_wait=settings.webhook_connect_timeout_s
        + settings.webhook_read_timeout_s
        + settings.webhook_breaker_cooldown_s
        + 30.0,
        max_deliver=-1,  # our schedule decides when to give up (it needs the last failure)
        max_ack_pending=max(settings.webhook_in_flight * 4, 256),
        **start,
    )


async def create(js: JetStreamContext, subscription_id: str, subjects: list[str], settings: NetworkSettings) -> None:
    """A new subscription's consumer: it delivers what is published from now on."""

    config = _config(consumer_name(subscription_id), subjects, settings, deliver_policy=DeliverPolicy.NEW)
    await js.add_consumer(settings.stream, config)


async def refilter(js: JetStreamContext, subscription_id: str, subjects: list[str], settings: NetworkSettings) -> bool:
    """Point the consumer at `subjects` (kept where it is in the stream); False when it is missing."""

    for name in (consumer_name(subscription_id), replay_name(subscription_id)):
        try:
            info = await js.consumer_info(settings.stream, name)
        except NotFoundError:
            if name == consumer_name(subscription_id):
                return False
            continue
        if sorted(info.config.filter_subjects or []) != subjects:
            config = info.config
            config.filter_subjects = subjects
            config.filter_subject = None
            await js.add_consumer(settings.stream, config)
    return True


async def delete(js: JetStreamContext, subscription_id: str, settings: NetworkSettings) -> None:
    for name in (consumer_name(subscription_id), replay_name(subscription_id)):
        try:
            await js.delete_consumer(settings.stream, name)
        except NotFoundError:
            pass


async def start_replay(
    js: JetStreamContext,
    subscription_id: str,
    subjects: list[str],
    settings: NetworkSettings,
    *,
    after: int | None,
    since: datetime | None,
) -> None:
    start = (
        {"deliver_policy": DeliverPolicy.BY_START_SEQUENCE, "opt_start_seq": after + 1}
        if after is not None
        else {"deliver_policy": DeliverPolicy.BY_START_TIME, "opt_start_time": since}
    )
    await js.add_consumer(settings.stream, _config(replay_name(subscription_id), subjects, settings, **start))


async def info(js: JetStreamContext, name: str, settings: NetworkSettings) -> ConsumerInfo | None:
    try:
        return await js.consumer_info(settings.stream, name)
    except NotFoundError:
        return None


@dataclass(frozen=True)
class Oldest:
    """The stream's oldest message still kept (nats-py's StreamState leaves its time out)."""

    first_seq: int
    first_time: datetime | None
    last_seq: int


async def oldest(nc: NATS, settings: NetworkSettings) -> Oldest:
    reply = await nc.request(f"$JS.API.STREAM.INFO.{settings.stream}", b"", timeout=5)
    state = orjson.loads(reply.data)["state"]
    first_ts = state.get("first_ts")
    first_time = Base._parse_utc_iso(first_ts) if first_ts and int(state["first_seq"]) else None
    return Oldest(int(state["first_seq"]), first_time, int(state["last_seq"]))


async def message(js: JetStreamContext, sequence: int, settings: NetworkSettings) -> RawStreamMsg | None:
    try:
        return await js.get_msg(settings.stream, seq=sequence)
    except NotFoundError:
        return None
