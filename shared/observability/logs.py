"""JSON log lines carrying the request and correlation ids, one format for every process.

The services and the gateway write the same line: `time`, `level`, `service`,
`logger`, `message`, `request_id`, `correlation_id`, then the record's own fields
(given as `extra={...}`, or grouped as `extra={"fields": {...}}`), all to stderr.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

from shared.observability import context

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "taskName"}

_second_prefix: tuple[int, str] = (-1, "")


def iso_time(created: float) -> str:
    """`created` (epoch seconds) as ISO 8601 in UTC to the millisecond, e.g.
    2026-12-05T01:49:31.123+00:00; the date and time are formatted once a second, a
    cost that shows in a request log."""

    global _second_prefix
    second = int(created)
    cached, prefix = _second_prefix
    if cached != second:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second_prefix = (second, prefix)
    return f"{prefix}.{int((created - second) * 1000):03d}+00:00"


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str):
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": iso_time(record.created),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": context.request_id.get(),
            "correlation_id": context.correlation_id.get(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD:
                if key == "fields" and isinstance(value, dict):
                    line.update(value)
                else:
                    line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def configure_logging(service: str, level: str = "INFO") -> None:
    """Every logger of the process to stderr as JSON lines (uvicorn's too; its access
    log stays off: the services and the gateway write their own request lines)."""

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access",):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


def uvicorn_log_config(service: str, level: str = "INFO") -> dict[str, Any]:
    """uvicorn's `log_config`: its own lines, before the app is made, in the same JSON format."""

    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter, "service": service}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"level": level.upper()},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }
