"""The unsubscribe link every marketing message carries (RFC 8058): its token names the
customer, the channel and the message, and nothing else."""

from __future__ import annotations

from shared.signed_links import BadLink, SignedLinks

UNSUBSCRIBE = "unsubscribe"
UNSUBSCRIBE_PATH = "/v1/unsubscribe/{token}"


def unsubscribe_url(links: SignedLinks, *, customer_id: str, channel: str, message_id: str | None = None) -> str:
    return links.link(UNSUBSCRIBE, UNSUBSCRIBE_PATH, {"c": customer_id, "ch": channel, "m": message_id})


def read_unsubscribe(links: SignedLinks, token: str) -> tuple[str, str, str | None]:
    """(customer_id, channel, message_id) of a good token; BadLink (400) otherwise."""

    payload = links.verify(UNSUBSCRIBE, token)
    customer_id, channel = payload.get("c"), payload.get("ch")
    if not isinstance(customer_id, str) or not isinstance(channel, str):
        raise BadLink("the link is not valid (tampered with, or not made for this)")
    message_id = payload.get("m")
    return customer_id, channel, message_id if isinstance(message_id, str) else None
