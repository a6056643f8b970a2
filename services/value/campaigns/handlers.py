"""Campaigns' consumers: marketing consent, delivery reports and purchases."""

from __future__ import annotations

from services.value.campaigns import service
from shared.events.consumer import ConsumerSpec

CONSENTS = ConsumerSpec(
    purpose="consents",
    batch_handler=service.apply_consents,
    subjects=(service.CONSENT_CHANGED,),
    description="Keeps each customer's current consent to marketing per channel: a campaign reaches only "
    "customers who granted it on its channel.",
)

DELIVERIES = ConsumerSpec(
    purpose="deliveries",
    batch_handler=service.apply_deliveries,
    subjects=(service.DELIVERY_REPORTED,),
    description="Records engage's delivery outcome (sent, failed, bounced, refused) on the campaign member "
    "whose message it answers.",
)

PURCHASES = ConsumerSpec(
    purpose="purchases",
    batch_handler=service.apply_purchases,
    subjects=(service.RECORDED, service.REFUNDED, service.VOIDED),
    description="Keeps purchases in the reporting currency, lowered by refunds and taken out by voids, "
    "for campaign and playbook results.",
)

PLAYBOOKS = ConsumerSpec(
    purpose="playbooks",
    batch_handler=service.apply_playbooks,
    subjects=(service.PLAYBOOK_ENTERED, service.PLAYBOOK_OFFER_REQUESTED),
    description="Records who entered lifecycle's playbooks in which group, and issues the offers playbooks ask "
    "for their treatment customers (within the template's window, budget and cap), to measure each playbook "
    "against its holdout.",
)

CONSUMERS = [CONSENTS, DELIVERIES, PURCHASES, PLAYBOOKS]
