from __future__ import annotations

import pytest

from tests.shared import probe


@pytest.fixture(params=["per-event", "batch"])
def probe_definition(request):
    """Every consumer behaviour holds for per-event handlers and for batch handlers."""
    return probe.DEFINITION if request.param == "per-event" else probe.BATCH_DEFINITION
