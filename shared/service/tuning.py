"""Interpreter tuning for a long-lived service process: GIL switch interval and GC."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from shared.settings import ServiceSettings


def tune_interpreter(settings: ServiceSettings) -> None:
    # aiosqlite runs every statement on a worker thread; with CPython's default 5 ms
    # switch interval a busy event loop can hold the GIL that long before the
    # worker (and then the loop) get it back, several times per transaction.
    sys.setswitchinterval(settings.gil_switch_interval_s)
    gc.set_threshold(settings.gc_gen0_threshold, *gc.get_threshold()[1:])


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Modules, schemas, metadata and the app live as long as the process: keep the
    collector from walking them again and again. Unfrozen at the end, so processes
    that start many services, like the tests, leak nothing."""

    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
