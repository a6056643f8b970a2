from __future__ import annotations

from contextlib import AsyncExitStack

import pytest

from tests.support import NatsServer, Suite


@pytest.fixture
def nats_server(tmp_path):
    server = NatsServer(tmp_path / "jetstream")
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def suite(nats_server, tmp_path):
    """Start services with `await suite.start("identify")`; all are stopped after the test."""

    async with AsyncExitStack() as stack:
        yield Suite(nats_server, tmp_path, stack)
