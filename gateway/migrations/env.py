import gateway.models  # noqa: F401 - every table of the gateway registered on Base
from gateway.store import Base
from shared.db.migrations import run_env

run_env(Base.metadata)
