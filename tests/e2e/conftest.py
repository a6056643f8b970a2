from __future__ import annotations

import pytest

from tests.e2e.harness import scratch_suite


@pytest.fixture(scope="module")
def running_suite(tmp_path_factory):
    """The whole suite, started once per module the way `make run` starts it."""

    with scratch_suite(tmp_path_factory.mktemp("suite") / "var", "e2e") as suite:
        yield suite
