from __future__ import annotations

import asyncio
import io
import os
from contextlib import AsyncExitStack

import pytest

from tests.support import TEMPLATES, NatsCluster, NatsServer, Suite

# The end-to-end suites (`valuechain run`, which inherits this environment) run every default
# but one: engage, value, network and lifecycle's `lifecycle-events` linger 20 ms while busy,
# as identify and lifecycle's stage changes do, not their 100 ms. The tests wait for effects
# through them, hop after hop, and 100 ms a hop made `make test` about a minute longer. The
# benchmarks run the defaults; the linger has its own test (tests/shared/test_backbone.py).
for _service in ("ENGAGE", "VALUE", "NETWORK", "LIFECYCLE"):
    os.environ.setdefault(f"VALUECHAIN_{_service}_CONSUMER_LINGER_S", "0.02")

# A service that does not stop within this long is a bug: fail the test with every
# task's stack instead of hanging the whole run.
TEARDOWN_TIMEOUT_S = 60


@pytest.fixture(scope="session", autouse=True)
def migrated_templates():
    """The services' migrated template databases (tests.support.TEMPLATES), made on first use
    and removed after the run."""

    yield TEMPLATES
    asyncio.run(TEMPLATES.drop())


@pytest.fixture(scope="session", autouse=True)
def import_workers_fork_server():
    """identify's import workers' fork server, started before the first test of this
    process (as a running service has it): the ~3 s of CPU its imports take would otherwise
    land in whichever test starts identify first, beside its timings."""

    from services.identify.imports import worker

    asyncio.run(worker.warm())


@pytest.fixture
def nats_server(tmp_path):
    server = NatsServer(tmp_path / "jetstream")
    server.start()
    yield server
    server.stop()


def _task_stacks() -> str:
    out = io.StringIO()
    for task in asyncio.all_tasks():
        if task is not asyncio.current_task():
            task.print_stack(file=out)
    return out.getvalue()


async def _stopped(stack: AsyncExitStack) -> None:
    closing = asyncio.ensure_future(stack.pop_all().aclose())
    done, _ = await asyncio.wait({closing}, timeout=TEARDOWN_TIMEOUT_S)
    if not done:
        stacks = _task_stacks()
        closing.cancel()
        pytest.fail(f"the services did not stop within {TEARDOWN_TIMEOUT_S} s; tasks:\n{stacks}")
    closing.result()


@pytest.fixture
async def suite(nats_server, tmp_path):
    """Start services with `await suite.start("identify")`; all are stopped after the test."""

    stack = AsyncExitStack()
    async with stack:
        yield Suite(nats_server, tmp_path, stack)
        await _stopped(stack)


@pytest.fixture
def nats_cluster(tmp_path):
    """Three nats-servers on loopback with routes (tests.support.NatsCluster)."""

    cluster = NatsCluster(tmp_path / "var")
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
async def cluster_suite(nats_cluster, tmp_path):
    """`suite` on a three-node JetStream cluster: every service connects to all three nodes,
    the stream and its consumers are provisioned R3."""

    stack = AsyncExitStack()
    async with stack:
        yield Suite(nats_cluster, tmp_path, stack)
        await _stopped(stack)


@pytest.fixture(scope="module")
def module_nats_server(tmp_path_factory):
    server = NatsServer(tmp_path_factory.mktemp("module-nats") / "jetstream")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
async def module_suite(module_nats_server):
    """A `suite` for the whole module: for cases (a parametrized refusal, say) that can share
    services started once, each start costing seconds. Its tests must not depend on what the
    module's other tests wrote."""

    stack = AsyncExitStack()
    async with stack:
        yield Suite(module_nats_server, module_nats_server.var_dir, stack)
        await _stopped(stack)


@pytest.fixture(scope="session")
async def browser():
    """One headless Chromium (Debian's) for every console test of the run (tests/e2e/console.py)."""

    from playwright.async_api import async_playwright

    from tests.e2e.console import require_chromium

    executable = require_chromium()
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield chromium
        await chromium.close()


SUITE_DIRS = ("tests/e2e/", "tests/contract/")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Under pytest-xdist (`make test` runs two workers), every test that starts a whole suite
    (tests/e2e, tests/contract) goes to one worker, in collection order: the e2e modules share
    one running suite, a module's own suite lives for the whole module, and two suites never run
    at once on two cores. The other worker takes the in-process tests meanwhile, one at a time.

    A scheduler of our own, not `xdist_group` marks with `--dist loadgroup`: xdist 3.8 writes the
    group into `item._nodeid`, which pytest 9 no longer reads, so the marks grouped nothing and
    a module's tests were spread over both workers (each starting a suite)."""

    from xdist.scheduler import LoadScopeScheduling

    class SuitesOnOneWorker(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "suites" if nodeid.startswith(SUITE_DIRS) else nodeid

    return SuitesOnOneWorker(config, log)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Each phase's report on the item (`item.report_call`): fixtures that hold a browser page
    save a screenshot of it when the test failed (tests/e2e/console.py)."""

    report = yield
    setattr(item, f"report_{report.when}", report)
    return report
