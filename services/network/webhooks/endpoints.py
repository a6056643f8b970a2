"""webhooks' HTTP API (thin: translate HTTP into service calls).

A partner's key sees and manages only its own subscriptions (404 for any other);
staff keys (admin, manager) see them all.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, Request, Response, status

from services.network.webhooks import service, streams
from services.network.webhooks.delivery import Dispatcher
from services.network.webhooks.schemas import (
    DeliveryOut,
    DeliveryPage,
    ReplayOut,
    ReplayRequest,
    WebhookCreate,
    WebhookOut,
    WebhookPage,
    WebhookUpdate,
    WebhookWithSecret,
)
from shared.http.caller import CallerDep
from shared.http.deps import ReadSession, WriteSession
from shared.http.errors import Conflict
from shared.http.pagination import PagingById

router = APIRouter(prefix="/v1", tags=["webhooks"])


def _dispatcher(request: Request) -> Dispatcher:
    dispatcher: Dispatcher = request.app.state.runtime.state.webhooks
    return dispatcher


DispatcherDep = Annotated[Dispatcher, Depends(_dispatcher)]


@router.post("/webhooks", status_code=status.HTTP_201_CREATED, response_model=WebhookWithSecret)
async def create_webhook(
    body: WebhookCreate, session: WriteSession, caller: CallerDep, webhooks: DispatcherDep, later: BackgroundTasks
):
    """Subscribe a URL to public event types. The answer shows the signing secret, the only time it is shown.

    422 `url_not_allowed` for a URL to a private, loopback, link-local or reserved address, or
    http:// (outside the operator's allow-list); 422 naming `event_types.<i>` for an unknown type
    or a pattern matching none; 403 `event_type_not_allowed` for a pattern reaching a type the
    key may not see (a key limited to some event types). Delivers what is published from now on
    (older: replay).
    """

    row = await service.create(
        session=session, js=await webhooks.js(), settings=webhooks.settings, caller=caller, data=body
    )
    later.add_task(webhooks.changed)  # once committed
    return row


@router.get("/webhooks", response_model=WebhookPage)
async def list_webhooks(session: ReadSession, page: PagingById, caller: CallerDep):
    """Subscriptions, oldest first (a partner's key: its own)."""

    rows = await service.page(session=session, caller=caller, after_id=page.after_value, limit=page.fetch)
    return page.of(rows, lambda row: (row.id,))


@router.get("/webhooks/{webhook_id}", response_model=WebhookOut)
async def get_webhook(webhook_id: str, session: ReadSession, caller: CallerDep):
    """One subscription (its secret is never shown again)."""

    return await service.get(session=session, subscription_id=webhook_id, caller=caller)


@router.patch("/webhooks/{webhook_id}", response_model=WebhookOut)
async def update_webhook(
    webhook_id: str,
    body: WebhookUpdate,
    session: WriteSession,
    caller: CallerDep,
    webhooks: DispatcherDep,
    later: BackgroundTasks,
):
    """Change the URL, types, description or rate limit; `enabled: true` enables a disabled one again."""

    row = await service.update(
        session=session,
        js=await webhooks.js(),
        settings=webhooks.settings,
        caller=caller,
        subscription_id=webhook_id,
        data=body,
    )
    later.add_task(webhooks.changed)
    return row


@router.delete("/webhooks/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_webhook(webhook_id: str, caller: CallerDep, webhooks: DispatcherDep, later: BackgroundTasks):
    """Unsubscribe: the subscription, its durable consumer and its delivery log go."""

    await service.delete(
        db=webhooks.runtime.db,
        delete_consumers=webhooks.delete_consumers,
        caller=caller,
        subscription_id=webhook_id,
    )
    later.add_task(webhooks.changed)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/webhooks/{webhook_id}/rotate-secret", response_model=WebhookWithSecret)
async def rotate_webhook_secret(
    webhook_id: str, session: WriteSession, caller: CallerDep, webhooks: DispatcherDep, later: BackgroundTasks
):
    """A new secret, shown once; for the overlap (24 h by default) deliveries carry two
    signatures, one with each secret."""

    row = await service.rotate_secret(
        session=session, settings=webhooks.settings, caller=caller, subscription_id=webhook_id
    )
    later.add_task(webhooks.changed)
    return row


@router.get("/webhooks/{webhook_id}/deliveries", response_model=DeliveryPage)
async def list_webhook_deliveries(webhook_id: str, session: ReadSession, page: PagingById, caller: CallerDep):
    """Every attempt, newest first: outcome, status, latency, the first 1 KB of the response, the error."""

    rows = await service.deliveries(
        session=session, caller=caller, subscription_id=webhook_id, after_id=page.after_value, limit=page.fetch
    )
    return page.of(rows, lambda row: (row["id"],), DeliveryOut.of)


@router.post(
    "/webhooks/{webhook_id}/deliveries/{delivery_id}/retry",
    status_code=status.HTTP_201_CREATED,
    response_model=DeliveryOut,
)
async def retry_webhook_delivery(
    webhook_id: str, delivery_id: str, session: ReadSession, caller: CallerDep, webhooks: DispatcherDep
) -> Any:
    """Send that attempt's event again, now, once (its answer is the new attempt, also in the log).
    409 `beyond_retention` when the stream no longer keeps the event."""

    logged = await service.delivery(session=session, caller=caller, subscription_id=webhook_id, delivery_id=delivery_id)
    row = await service.get(session=session, subscription_id=webhook_id, caller=caller)
    message = await streams.message(await webhooks.js(), logged["sequence"], webhooks.settings)
    if message is None or message.data is None:
        raise Conflict(
            f"the stream no longer keeps event {logged['event_id']} (cursor {logged['sequence']})",
            error="beyond_retention",
        )
    new = await webhooks.retry(row, message.data, logged["sequence"], logged["attempt"] + 1)
    return DeliveryOut.of(new)


@router.post("/webhooks/{webhook_id}/replay", status_code=status.HTTP_202_ACCEPTED, response_model=ReplayOut)
async def replay_webhook(
    webhook_id: str, body: ReplayRequest, session: ReadSession, caller: CallerDep, webhooks: DispatcherDep
):
    """Resend everything matching the subscription from `since` (a time) or `after` (a cursor: the
    stream sequence GET /v1/events pages by), as far back as the stream keeps; 409
    `beyond_retention` naming the oldest cursor kept, 409 `replay_running` while one still runs."""

    bus = webhooks.runtime.bus
    js = await webhooks.js()
    assert bus.nc is not None
    oldest = await service.replay(
        session=session,
        nc=bus.nc,
        js=js,
        settings=webhooks.settings,
        caller=caller,
        subscription_id=webhook_id,
        data=body,
    )
    webhooks.changed(replay=webhook_id)
    return ReplayOut(subscription_id=webhook_id, since=body.since, after=body.after, oldest=str(oldest.first_seq - 1))
