"""The consent API's bodies: one entry, a batch of entries, and a customer's consent (the
current state per purpose and channel, and the ledger's history as a page)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool

from shared.db.database import utcnow
from shared.events.contracts import ConsentPurpose, MessageChannel
from shared.http.pagination import Page
from shared.http.validation import AsText, Id, Strict

# GDPR art. 6(1): the lawful bases of processing.
LegalBasis = Literal["consent", "contract", "legitimate_interest", "legal_obligation", "vital_interest", "public_task"]
LEGAL_BASES: tuple[str, ...] = LegalBasis.__args__  # type: ignore[attr-defined]

# A source or a notice version is a short code, never free text: the ledger is kept after
# an erasure as proof of consent, so nothing personal may be written into it.
CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$"
Code = Annotated[str, Field(min_length=1, max_length=40, pattern=CODE_PATTERN)]

# The oldest consent worth recording, and how far ahead a client's clock may be.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
CLOCK_SKEW = timedelta(days=1)


def _bounded(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("needs a time zone (e.g. 2024-05-01T10:00:00Z)")
    latest = utcnow() + CLOCK_SKEW
    if not EARLIEST <= value <= latest:
        raise ValueError(f"must be from 1970-01-01T00:00:00Z to now plus a day ({latest.isoformat()})")
    return value


class ConsentCreate(Strict):
    purpose: ConsentPurpose
    channel: MessageChannel
    granted: StrictBool = Field(description="true: granted; false: withdrawn (JSON true or false, not 1 or 0)")
    legal_basis: LegalBasis = Field(description="The lawful basis of the processing (GDPR art. 6)")
    source: Code | None = Field(
        None,
        description="Where the change came from, as a short code (web_form, call_centre, crm_import, ...); "
        "`api` when left out (`batch` in POST /v1/consent:batch)",
    )
    notice_version: Code | None = Field(None, description="The version of the privacy notice the customer saw")
    changed_at: Annotated[
        datetime | None,
        AsText,
        AfterValidator(_bounded),
        Field(
            description="When the customer gave or withdrew it; now if left out. A back-dated entry joins the "
            "history and changes the current state only if it is newer than the state's entry"
        ),
    ] = None


class ConsentBatchItem(ConsentCreate):
    customer_id: Id


class ConsentEntryOut(BaseModel):
    """One entry of the ledger (append-only)."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    customer_id: str
    purpose: str
    channel: str
    granted: bool
    legal_basis: str
    source: str
    notice_version: str | None
    changed_at: datetime
    recorded_at: datetime


class ConsentStateOut(BaseModel):
    """The current consent for one purpose on one channel: the newest entry's."""

    model_config = ConfigDict(from_attributes=True)

    purpose: str
    channel: str
    granted: bool
    changed_at: datetime
    entry_id: str = Field(description="The ledger entry that set it")


class CustomerConsent(Page[ConsentEntryOut]):
    """A customer's consent: `current` per purpose and channel (a pair never recorded is not
    listed and counts as not granted), and `items`, the ledger newest first, paginated."""

    customer_id: str
    current: list[ConsentStateOut]


class ConsentBatch(Strict):
    # Items are validated one by one (a bad item fails alone), so they arrive untyped.
    items: list[Any] = Field(
        min_length=1, max_length=1000, description="1 to 1,000 entries: ConsentCreate bodies with `customer_id`"
    )


class ItemError(BaseModel):
    error: str
    detail: Any


class ConsentBatchItemOut(BaseModel):
    index: int
    status: Literal["recorded", "error"]
    entry: ConsentEntryOut | None = None
    error: ItemError | None = None


class ConsentBatchOut(BaseModel):
    items: list[ConsentBatchItemOut]
    recorded: int
    errors: int
