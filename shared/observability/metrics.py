"""Prometheus metrics of one service process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self, service: str):
        self.service = service
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "valuechain_http_requests_total", "HTTP requests", ["service", "method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "valuechain_http_request_seconds",
            "HTTP request latency",
            ["service", "method", "route"],
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.outbox_published = Counter(
            "valuechain_outbox_published_total", "Events relayed to JetStream", ["service"], registry=r
        )
        self.outbox_pending = Gauge(
            "valuechain_outbox_pending",
            "Outbox rows waiting to be published (an event, or a bundle of up to 50 of one type)",
            ["service"],
            registry=r,
        )
        self.events_handled = Counter(
            "valuechain_events_handled_total", "Events applied by a consumer", ["service", "consumer"], registry=r
        )
        self.events_duplicate = Counter(
            "valuechain_events_duplicate_total",
            "Events skipped because the inbox had them",
            ["service", "consumer"],
            registry=r,
        )
        self.events_failed = Counter(
            "valuechain_events_failed_total", "Failed event deliveries", ["service", "consumer"], registry=r
        )
        self.dead_letters = Counter(
            "valuechain_dead_letters_total",
            "Events sent to the dead-letter subject",
            ["service", "consumer"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
