"""webhooks' rules: subscriptions (who sees which, what they may name), their secrets,
their delivery log, a retry and a replay."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncSession

from services.network.webhooks import filters, repository, ssrf, streams
from services.network.webhooks.models import WebhookSubscription
from services.network.webhooks.schemas import ReplayRequest, WebhookCreate, WebhookUpdate
from services.network.webhooks.signing import new_secret, utc_now
from shared.db.database import Database
from shared.db.ids import uuid7
from shared.db.uow import transaction
from shared.events.customer_aliases import Merge
from shared.http.caller import Caller, TypeNotAllowed
from shared.http.errors import AppError, Conflict, InvalidRequest, NotFound, field_error
from shared.settings import NetworkSettings


class UrlNotAllowed(InvalidRequest):
    error = "url_not_allowed"


async def check_url(url: str, settings: NetworkSettings) -> None:
    try:
        await ssrf.check(url, ssrf.AllowList.of(settings.webhook_allow_hosts))
    except ssrf.InvalidUrl as exc:
        raise field_error("body.url", str(exc)) from exc
    except ssrf.UrlNotAllowed as exc:
        raise UrlNotAllowed([{"field": "body.url", "message": str(exc), "type": "url_not_allowed"}]) from exc


def check_types(patterns: Sequence[str], caller: Caller) -> list[str]:
    """The consumer's subjects for `patterns`; 422 naming the first pattern refused, 403
    `event_type_not_allowed` for one reaching a type the caller's key may not see. Refused,
    not narrowed as the feed narrows a request: the stored patterns are what the consumer is
    filtered on again at every start."""

    for index, pattern in enumerate(patterns):
        problem = filters.problem(pattern)
        if problem is not None:
            raise field_error(f"body.event_types.{index}", problem)
    for pattern in patterns:
        if not all(caller.may_see(subject) for subject in filters.subjects([pattern])):
            raise TypeNotAllowed(f"this key may not receive every type {pattern!r} matches")
    return filters.subjects(patterns)


def _visible(row: WebhookSubscription | None, subscription_id: str, caller: Caller) -> WebhookSubscription:
    # Another partner's subscription is as unknown to a partner as a missing one.
    if row is None or (caller.partner_only and row.partner_id != caller.partner_id):
        raise NotFound(f"no webhook subscription with id {subscription_id}")
    return row


async def get(*, session: AsyncSession, subscription_id: str, caller: Caller) -> WebhookSubscription:
    return _visible(await repository.read(session, subscription_id), subscription_id, caller)


async def page(*, session: AsyncSession, caller: Caller, after_id: str | None, limit: int):
    return await repository.page(
        session, partner_id=caller.partner_id, only_partner=caller.partner_only, after_id=after_id, limit=limit
    )


async def create(
    *, session: AsyncSession, js: JetStreamContext, settings: NetworkSettings, caller: Caller, data: WebhookCreate
) -> WebhookSubscription:
    """A subscription and its durable consumer (which delivers what is published from now on)."""

    subjects = check_types(data.event_types, caller)
    await check_url(data.url, settings)
    now = utc_now()
    row = WebhookSubscription(
        id=uuid7(),
        partner_id=caller.partner_id if caller.partner_only else None,
        url=data.url,
        description=data.description,
        event_types=list(data.event_types),
        pii=caller.pii,
        enabled=True,
        rate_limit=data.rate_limit,
        secret=new_secret(),
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    await session.flush()
    await streams.create(js, row.id, subjects, settings)  # last: a refused request made nothing
    return row


async def update(
    *,
    session: AsyncSession,
    js: JetStreamContext,
    settings: NetworkSettings,
    caller: Caller,
    subscription_id: str,
    data: WebhookUpdate,
) -> WebhookSubscription:
    row = await get(session=session, subscription_id=subscription_id, caller=caller)
    given = data.model_fields_set
    subjects = check_types(data.event_types, caller) if data.event_types is not None else None
    if data.url is not None:
        await check_url(data.url, settings)
        row.url = data.url
    for name in ("description", "rate_limit"):
        if name in given:
            setattr(row, name, getattr(data, name))
    if data.enabled is True and not row.enabled:
        row.enabled, row.disabled_reason, row.failing_since = True, None, None
    elif data.enabled is False and row.enabled:
        row.enabled, row.disabled_reason = False, f"disabled by {caller.actor or 'a caller'}"
    if data.event_types is not None:
        row.event_types = list(data.event_types)
    row.updated_at = utc_now()
    await session.flush()
    if subjects is not None and not await streams.refilter(js, row.id, subjects, settings):
        await streams.create(js, row.id, subjects, settings)
    return row


async def delete(
    *,
    db: Database,
    delete_consumers: Callable[[str], Awaitable[None]],
    caller: Caller,
    subscription_id: str,
) -> None:
    """The subscription, then its consumers, once its removal is committed. Deleted before
    the commit, a consumer could be made again by the dispatcher's first look after a start,
    which makes the consumer of any subscription it still reads: an orphan nothing pulls."""

    async with transaction(db.writer) as session:
        await get(session=session, subscription_id=subscription_id, caller=caller)
        await repository.remove(session, subscription_id)
    await delete_consumers(subscription_id)


async def rotate_secret(
    *, session: AsyncSession, settings: NetworkSettings, caller: Caller, subscription_id: str
) -> WebhookSubscription:
    """A new secret; the one it replaces keeps signing (a second signature) for the overlap."""

    row = await get(session=session, subscription_id=subscription_id, caller=caller)
    now = utc_now()
    row.previous_secret = row.secret
    row.previous_secret_expires_at = now + timedelta(hours=settings.webhook_secret_overlap_h)
    row.secret = new_secret()
    row.updated_at = now
    await session.flush()
    return row


async def deliveries(*, session: AsyncSession, caller: Caller, subscription_id: str, after_id: str | None, limit: int):
    await get(session=session, subscription_id=subscription_id, caller=caller)
    return await repository.deliveries(session, subscription_id=subscription_id, after_id=after_id, limit=limit)


async def delivery(*, session: AsyncSession, caller: Caller, subscription_id: str, delivery_id: str):
    await get(session=session, subscription_id=subscription_id, caller=caller)
    row = await repository.delivery(session, subscription_id=subscription_id, delivery_id=delivery_id)
    if row is None:
        raise NotFound(f"no delivery {delivery_id} of webhook subscription {subscription_id}")
    return row


def beyond_retention(oldest: streams.Oldest) -> AppError:
    at = f" (published {oldest.first_time.isoformat()})" if oldest.first_time else ""
    return Conflict(
        f"beyond the stream's retention: the oldest event kept follows cursor {oldest.first_seq - 1}{at}; "
        f"replay with after >= {oldest.first_seq - 1}",
        error="beyond_retention",
    )


async def replay(
    *,
    session: AsyncSession,
    nc: NATS,
    js: JetStreamContext,
    settings: NetworkSettings,
    caller: Caller,
    subscription_id: str,
    data: ReplayRequest,
) -> streams.Oldest:
    """Resend, through a replay consumer of its own, what matches from a point on; 409 when
    the stream no longer keeps that point, or a replay of the subscription still runs."""

    row = await get(session=session, subscription_id=subscription_id, caller=caller)
    oldest = await streams.oldest(nc, settings)
    trimmed = oldest.first_seq > 1  # something was removed from the front
    after = int(data.after) if data.after is not None else None
    since: datetime | None = data.since
    if trimmed and after is not None and after + 1 < oldest.first_seq:
        raise beyond_retention(oldest)
    if trimmed and since is not None and oldest.first_time is not None and since < oldest.first_time:
        raise beyond_retention(oldest)
    if await streams.info(js, streams.replay_name(row.id), settings) is not None:
        raise Conflict(f"a replay of webhook subscription {row.id} is still running", error="replay_running")
    await streams.start_replay(js, row.id, filters.subjects(row.event_types), settings, after=after, since=since)
    return oldest


async def follow_webhooks_merge(session: AsyncSession, merge: Merge) -> None:
    """A merge step: delivery log rows about merged customers name the survivor (its erasure finds them)."""

    await repository.move_customers(session, merged=merge.merged_ids, survivor=merge.survivor_id)
