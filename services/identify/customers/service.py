"""identify's rules for customers: identities, match keys, and the one rule for a merged customer.

A merged customer takes no new data: every write that names one is refused by
`refuse_merged` with the same error, 409 `customer_merged` naming the survivor to use."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.identify.customers import normalize, referral_codes, repository
from services.identify.customers.schemas import CustomerCreate, CustomerPatch
from services.identify.models import Customer
from shared.db.database import utcnow
from shared.db.ids import uuid7
from shared.events.messaging import emit
from shared.http.errors import Conflict, MergedCustomer, NotFound, field_error
from shared.privacy import suppression
from shared.settings import IdentifySettings, current_settings

CUSTOMER_FIELDS = ("email", "external_id", "name", "phone")


def merged_error(customer: Customer | dict) -> MergedCustomer | None:
    """The error a write naming this customer gets when it was merged (None when it was not).
    Batches answer it item by item; everything else raises it through `refuse_merged`."""

    survivor = customer["merged_into"] if isinstance(customer, dict) else customer.merged_into
    if not survivor:
        return None
    customer_id = customer["id"] if isinstance(customer, dict) else customer.id
    return MergedCustomer(customer_id, survivor)


def refuse_merged(customer: Customer | dict) -> None:
    """A merged customer takes no new data: 409 `customer_merged` naming the survivor to use instead."""

    error = merged_error(customer)
    if error is not None:
        raise error


async def refresh_match_keys(session: AsyncSession, customer: Customer, *, name_changed: bool = True) -> None:
    """Set the customer's match keys from its fields (and its name tokens when the name changed)."""

    for column, value in normalize.match_keys(email=customer.email, phone=customer.phone, name=customer.name).items():
        setattr(customer, column, value)
    if name_changed:
        await session.flush()
        await repository.replace_name_tokens(session, customer.id, set(normalize.name_tokens(customer.name)))


def _email_key(email: str | None) -> str | None:
    return email.lower() if email else None


async def _refuse_clash(session: AsyncSession, *, email: str | None, external_id: str | None, exclude_id=None) -> None:
    clash = await repository.find_identity_clash(
        session, email_key=_email_key(email), external_id=external_id, exclude_id=exclude_id
    )
    if clash is None:
        return
    if email and clash.email_key == _email_key(email):
        raise Conflict(f"a customer with email {email!r} already exists: {clash.id}")
    raise Conflict(f"a customer with external_id {external_id!r} already exists: {clash.id}")


async def get_customer(*, session: AsyncSession, customer_id: str) -> Customer:
    customer = await repository.get_customer(session, customer_id)
    if customer is None:
        raise NotFound(f"no customer with id {customer_id}")
    return customer


async def new_referral_codes(session: AsyncSession, n: int) -> list[str]:
    """n referral codes no customer holds yet."""

    return await referral_codes.unique_codes(n, lambda codes: repository.held_referral_codes(session, codes))


async def referrer_of(session: AsyncSession, data: CustomerCreate) -> str | None:
    """Who referred a new customer: `referred_by`, or the holder of `referral_code` (a merged
    holder's code refers to its survivor). An unknown code, or one that names another customer
    than `referred_by`, is 422 naming body.referral_code."""

    referrer = data.referred_by
    if referrer and await repository.get_customer(session, referrer) is None:
        raise field_error("body.referred_by", f"no customer with id {referrer}")
    if data.referral_code is None:
        return referrer
    code = referral_codes.normalized(data.referral_code)
    holder = await repository.by_referral_code(session, code) if code else None
    if holder is None:
        raise field_error("body.referral_code", f"no customer holds the referral code {data.referral_code!r}")
    by_code = holder.merged_into or holder.id
    if referrer and referrer not in (holder.id, by_code):
        raise field_error(
            "body.referral_code",
            f"the referral code {data.referral_code!r} is another customer's than referred_by ({referrer})",
        )
    return referrer or by_code


async def create_customer(*, session: AsyncSession, data: CustomerCreate) -> Customer:
    await _refuse_clash(session, email=data.email, external_id=data.external_id)
    referred_by = await referrer_of(session, data)
    now = utcnow()
    customer = Customer(
        id=uuid7(),
        email=data.email,
        email_key=_email_key(data.email),
        external_id=data.external_id,
        name=data.name,
        phone=data.phone,
        referred_by=referred_by,
        referral_code=(await new_referral_codes(session, 1))[0],
        purchase_count=0,
        created_at=now,
        updated_at=now,
    )
    session.add(customer)
    await refresh_match_keys(session, customer)  # flushes the new row
    customer.suppressed = await repository.suppressed(session, suppression_digests(customer))
    await repository.index_new_customers(session, [customer.id])
    emit(
        session,
        "crm.identify.customer.created",
        {
            field: getattr(customer, field)
            for field in (*CUSTOMER_FIELDS, "id", "referred_by", "referral_code", "created_at", "suppressed")
        },
        subject=customer.id,
    )
    return customer


def suppression_key() -> bytes:
    settings = current_settings(IdentifySettings)
    configured = settings.suppression_key.get_secret_value() if settings.suppression_key else None
    return suppression.load_or_create_key(settings.var_dir, configured)


def suppression_digests(customer: Customer) -> list[str]:
    """The keyed hashes of the customer's normalised email (gmail dots and +tags folded)
    and phone (E.164) that the suppression list holds for an erased person."""

    key = suppression_key()
    values = (("email", customer.email_match_key), ("phone", customer.phone_key))
    return [suppression.digest(key, kind, value) for kind, value in values if value]


async def update_customer(*, session: AsyncSession, customer_id: str, patch: CustomerPatch) -> Customer:
    customer = await get_customer(session=session, customer_id=customer_id)
    refuse_merged(customer)
    if customer.erased_at is not None:
        # Forgotten on request: the id keeps the facts, and takes no personal data again.
        raise Conflict(
            f"customer {customer_id} was erased: its personal data cannot be set again", error="customer_erased"
        )
    changes = {
        field: getattr(patch, field)
        for field in patch.model_fields_set
        if getattr(patch, field) != getattr(customer, field)
    }
    if not changes:
        return customer
    email = changes.get("email", customer.email)
    external_id = changes.get("external_id", customer.external_id)
    if not email and not external_id:
        if {"email", "external_id"} <= patch.model_fields_set:  # the body alone breaks it (its schema says so)
            raise field_error("body", "a customer keeps at least one of email and external_id")
        # The body is fine; with what the customer has, it would leave neither.
        raise Conflict(
            f"a customer keeps at least one of email and external_id; customer {customer.id} would have neither"
        )
    await _refuse_clash(
        session,
        email=changes.get("email"),
        external_id=changes.get("external_id"),
        exclude_id=customer.id,
    )
    for field, value in changes.items():
        setattr(customer, field, value)
    customer.email_key = _email_key(customer.email)
    customer.updated_at = utcnow()
    await refresh_match_keys(session, customer, name_changed="name" in changes)
    await session.flush()
    emit(
        session,
        "crm.identify.customer.updated",
        {"id": customer.id, "changes": changes, "updated_at": customer.updated_at},
        subject=customer.id,
    )
    return customer
