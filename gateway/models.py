"""Every table of the gateway's database, imported in one place for Alembic.

Each module that owns tables (API keys, the audit log, export jobs) defines them on
gateway.store.Base and is imported here, so `make migration SERVICE=gateway` sees them all.
"""

from __future__ import annotations

import gateway.audit.models  # noqa: F401 - audit_entries, audit_resources
from gateway import exports  # noqa: F401  (export_jobs)
from gateway.access import keys  # noqa: F401  (api_keys, api_key_secrets)
