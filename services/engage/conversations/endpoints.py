"""HTTP API of conversations and messages (thin)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Response, status

from services.engage.conversations import service
from services.engage.conversations.schemas import (
    ConversationCreate,
    ConversationOut,
    ConversationPage,
    ConversationStatus,
    ConversationUpdate,
    MessageCreate,
    MessageOut,
    MessagePage,
    ReplyCreate,
)
from shared.events.contracts import MessageChannel
from shared.http.deps import ReadSession, WriteSession
from shared.http.pagination import PagingByTime

router = APIRouter(prefix="/v1", tags=["engage: conversations"])


def _conversation_key(row):
    return (row["last_message_at"], row["id"])


def _message_key(row):
    return (row["occurred_at"], row["id"])


@router.post("/conversations", status_code=status.HTTP_201_CREATED, response_model=ConversationOut)
async def create_conversation(body: ConversationCreate, session: WriteSession):
    """Open a conversation with a customer on a channel (messages join it later)."""
    return await service.create_conversation(session=session, data=body)


@router.get("/conversations", response_model=ConversationPage)
async def list_conversations(
    session: ReadSession,
    page: PagingByTime,
    customer_id: Annotated[str | None, Query(description="Only this customer's")] = None,
    status: Annotated[ConversationStatus | None, Query(description="open, pending or closed")] = None,
    assignee_id: Annotated[str | None, Query(description="Only those assigned to this employee")] = None,
    channel: Annotated[MessageChannel | None, Query(description="Only this channel's")] = None,
):
    """Conversations, latest activity first."""
    rows = await service.list_conversations(
        session=session,
        before=page.after,
        limit=page.fetch,
        customer_id=customer_id,
        status=status,
        assignee_id=assignee_id,
        channel=channel,
    )
    return page.of(rows, _conversation_key)


@router.get("/conversations/{conversation_id}", response_model=ConversationOut)
async def get_conversation(conversation_id: str, session: ReadSession):
    """One conversation, with its first response and resolution times."""
    return await service.get_conversation(session=session, conversation_id=conversation_id)


@router.patch("/conversations/{conversation_id}", response_model=ConversationOut)
async def update_conversation(conversation_id: str, body: ConversationUpdate, session: WriteSession):
    """Move its status (open ⇄ pending, either → closed, closed → open: 409 `invalid_transition`
    otherwise) or (un)assign it to an employee stakeholder. Closing emits crm.engage.conversation.closed."""
    return await service.update_conversation(session=session, conversation_id=conversation_id, data=body)


@router.get("/conversations/{conversation_id}/messages", response_model=MessagePage)
async def conversation_messages(conversation_id: str, session: ReadSession, page: PagingByTime):
    """The conversation's messages, oldest first."""
    rows = await service.conversation_messages(
        session=session, conversation_id=conversation_id, after=page.after, limit=page.fetch
    )
    return page.of(rows, _message_key)


@router.post(
    "/conversations/{conversation_id}/messages", status_code=status.HTTP_201_CREATED, response_model=MessageOut
)
async def reply(conversation_id: str, body: ReplyCreate, session: WriteSession):
    """Staff's reply. On email it is queued and sent by engage's sender (status `queued`, then
    `sent`, or 409 `no_address`/`undeliverable`); on other channels it is recorded as sent."""
    return await service.reply(session=session, conversation_id=conversation_id, data=body)


@router.get("/customers/{customer_id}/conversations", response_model=ConversationPage)
async def customer_conversations(customer_id: str, session: ReadSession, page: PagingByTime):
    """The customer's conversations, latest activity first."""
    rows = await service.customer_conversations(
        session=session, customer_id=customer_id, before=page.after, limit=page.fetch
    )
    return page.of(rows, _conversation_key)


@router.post("/messages", status_code=status.HTTP_201_CREATED, response_model=MessageOut)
async def record_message(body: MessageCreate, session: WriteSession):
    """Record a message on sms, chat, phone, social or in person, inbound or outbound, in the
    customer's open conversation on that channel (or a new one). Emits message.received or message.sent."""
    return await service.record_message(session=session, data=body)


@router.get("/messages/{message_id}", response_model=MessageOut)
async def get_message(message_id: str, session: ReadSession):
    """One message, with its attachments' descriptions."""
    return await service.get_message(session=session, message_id=message_id)


@router.get(
    "/messages/{message_id}/attachments/{attachment_id}",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}, "description": "The file, as a download"}},
)
async def download_attachment(message_id: str, attachment_id: str, session: ReadSession):
    """An attachment's bytes, only ever as a download: never rendered, never sniffed."""
    found = await service.attachment(session=session, message_id=message_id, attachment_id=attachment_id)
    name = found.filename or f"attachment-{found.id}"
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "").replace("\\", "")
    return Response(
        content=found.content,
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}",
            "X-Content-Type-Options": "nosniff",
        },
    )
