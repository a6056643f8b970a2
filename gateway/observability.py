"""Prometheus metrics and the request log of the gateway.

Its other log lines are the suite's (shared.observability.logs): the request log writes the same
JSON line, only faster.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from shared.observability.logs import iso_time

ACCESS_LOGGER = "gateway.access"

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class GatewayMetrics:
    """The gateway's metrics, in a registry of their own (one per app)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "gateway_requests",
            "HTTP requests answered by the gateway, by route pattern, method and status.",
            ("route", "method", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "gateway_request_duration_seconds",
            "Time from request to the end of the answer, by route pattern, method and status.",
            ("route", "method", "status"),
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.upstream_errors = Counter(
            "gateway_upstream_errors",
            "Upstream requests that got no usable answer, by service and kind (unavailable, timeout).",
            ("service", "kind"),
            registry=self.registry,
        )
        # labels() takes a lock and builds a key each call: keep the children.
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            label = str(status)
            children = (self.requests.labels(route, method, label), self.latency.labels(route, method, label))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def upstream_error(self, service: str, kind: str) -> None:
        self.upstream_errors.labels(service, kind).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class AccessLog:
    """One JSON line per request, the suite's (shared.observability.logs.JsonFormatter's), written in batches.

    Going through `logging` (LogRecord, findCaller, the handler lock, one
    write+flush per line) cost ~25 us a request, a sixth of the proxy's whole
    CPU budget; this builds the line with orjson and hands lines to stderr at
    most every `flush_interval` seconds (like nginx's `access_log ... flush=`),
    or at once when `flush_interval` is 0. It honours the level of the
    `gateway.access` logger (set it above INFO to silence request lines). In
    these lines `service` names the service that answered (null for the gateway's
    own routes).
    """

    def __init__(self, flush_interval: float = 0.2, max_buffer: int = 256 * 1024):
        self.logger = logging.getLogger(ACCESS_LOGGER)
        self.flush_interval = flush_interval
        self.max_buffer = max_buffer
        self._lines: list[bytes] = []
        self._size = 0
        self._timer: asyncio.TimerHandle | None = None

    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)

    def write(self, fields: dict[str, Any]) -> None:
        entry = {
            "time": iso_time(time.time()),
            "level": "INFO",
            "service": "gateway",
            "logger": ACCESS_LOGGER,
            "message": "request",
        }
        entry.update(fields)
        line = orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE)
        self._lines.append(line)
        self._size += len(line)
        if self.flush_interval <= 0 or self._size >= self.max_buffer:
            self.flush()
        elif self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(self.flush_interval, self.flush)
            except RuntimeError:
                self.flush()

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._lines:
            return
        lines = self._lines
        self._lines = []
        self._size = 0
        stream = sys.stderr
        # Writes of at most PIPE_BUF (4096) bytes, cut at line ends, are atomic on
        # pipes: lines from several workers sharing stderr never interleave.
        chunk: list[bytes] = []
        size = 0
        try:
            for line in lines:
                if size + len(line) > 4096 and chunk:
                    stream.write(b"".join(chunk).decode("utf-8"))
                    stream.flush()
                    chunk, size = [], 0
                chunk.append(line)
                size += len(line)
            if chunk:
                stream.write(b"".join(chunk).decode("utf-8"))
                stream.flush()
        except (OSError, ValueError):
            pass
