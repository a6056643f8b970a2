from __future__ import annotations

import asyncio

import pytest

from tests.e2e.harness import RunningSuite, postgres_databases


@pytest.fixture(scope="module")
def running_suite(tmp_path_factory):
    """The whole suite, started once per module the way `make run` starts it."""

    urls, drops = asyncio.run(postgres_databases("e2e"))
    suite = RunningSuite(tmp_path_factory.mktemp("suite") / "var", urls)
    suite.start()
    yield suite
    suite.stop()
    for drop in drops:
        asyncio.run(drop())
