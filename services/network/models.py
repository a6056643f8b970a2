"""network's tables: the customers it knows (plus the messaging tables); each part's own are in
its sub-package (stakeholders/, referrals/, webhooks/)."""

from __future__ import annotations

from typing import ClassVar

from sqlalchemy import MetaData, Table
from sqlalchemy.orm import DeclarativeBase

from shared.db.database import NAMING_CONVENTION
from shared.events.customer_aliases import CustomerAliases
from shared.events.known_customers import KnownCustomers
from shared.events.messaging import messaging_tables
from shared.privacy.erasure import ErasedCustomers


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)  # the service's own
    __table__: ClassVar[Table]  # every model maps one table (SQLAlchemy types it a FromClause)


messaging = messaging_tables(Base.metadata)
known_customers = KnownCustomers(Base.metadata)
aliases = CustomerAliases(Base.metadata)
erased_customers = ErasedCustomers(Base.metadata)


# The sub-domains' tables, on this Base (imported last: they import Base from here).
from services.network.referrals import models as _referrals  # noqa: E402, F401
from services.network.stakeholders import models as _stakeholders  # noqa: E402, F401
from services.network.webhooks import models as _webhooks  # noqa: E402, F401
