"""End to end through the gateway: the whole suite as `make run` starts it (`valuechain run`:
nats-server, the five services, the gateway), driven over HTTP.

The rule every module here follows (new ones too):

- Take `running_suite`: ONE suite for the whole directory, shared by every module (each start
  of a suite costs ~15 s of the run).
- Its databases are not empty and keep every earlier test's data, whatever the order. Make
  what a test creates and then looks for its own: emails, external ids, names, order ids,
  correlation ids with `unique()` / `unique_email()` (tests/e2e/harness.py). Read lists
  filtered to the test's own ids, counts as deltas, and global reports (cohorts, survival,
  the value map, the NPS report) over a window (dates, `from`/`to`) no other test writes into.
- Leave nothing switched on that changes what later tests see: a survey with triggers, a
  playbook, ... is switched off when the test ends (the `afterwards` fixture).
- The shared suite runs with the default settings; do not change them. Reading the stream
  directly: from the stream's sequence when the test started, not from the beginning.
- Only a module that really cannot share takes `own_suite` (one suite for that module) and says
  why in its docstring: today test_import_e2e.py (thousands of imported customers and
  purchases would enter every other module's global reads and keep the consumers busy for
  minutes) and test_readme_tour_e2e.py (the README's tour: fixed emails, the fx rates, the
  referral programme, a default SLA policy and sweeps; it takes a suite of its own through
  `scratch_suite`, its links on its gateway). test_run_keeps_data.py starts and restarts
  suites of its own on purpose.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.harness import scratch_suite


@pytest.fixture(scope="package")
def running_suite(tmp_path_factory):
    """The whole suite, started once and shared by every e2e module; stopped after the last
    test of this directory (package scope), so it does not idle through the rest of the run."""

    with scratch_suite(tmp_path_factory.mktemp("suite") / "var", "e2e") as suite:
        yield suite


@pytest.fixture
async def afterwards(running_suite):
    """PATCHes a test adds here, `(path, body)`, are sent when it ends, passed or failed: they
    switch off what the test switched on (a survey's triggers, a playbook) in the shared suite,
    which would otherwise reach every later test's customers."""

    patches: list[tuple[str, dict]] = []
    yield patches
    async with running_suite.client() as gw:
        for path, body in patches:
            undone = await gw.patch(path, json=body)
            assert undone.status_code == 200, undone.text


@pytest.fixture(scope="module")
def own_suite(tmp_path_factory):
    """A suite of the module's own, for the few modules that cannot share `running_suite`."""

    with scratch_suite(tmp_path_factory.mktemp("own-suite") / "var", "e2e-own") as suite:
        yield suite


def pytest_collection_modifyitems(items):
    """This directory's modules with suites of their own run first, before the shared suite
    starts, so that two suites never run at once (the machine's cores are few)."""

    here = Path(__file__).parent
    mine = [n for n, item in enumerate(items) if item.path.is_relative_to(here)]
    ordered = sorted((items[n] for n in mine), key=lambda item: "running_suite" in item.fixturenames)
    for n, item in zip(mine, ordered, strict=True):
        items[n] = item


@pytest.fixture
async def console(browser, running_suite, request):
    """A fresh browser context on the shared suite's console (tests/e2e/console.py)."""

    from tests.e2e.console import open_console, save_failure

    async with open_console(browser, running_suite) as page:
        yield page
        await save_failure(page, request.node)
