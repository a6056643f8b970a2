"""Run the gateway: `python -m gateway` (settings from VALUECHAIN_GATEWAY_* variables)."""

from __future__ import annotations

import uvicorn

from gateway.settings import GatewaySettings
from shared.observability.logs import uvicorn_log_config


def main() -> None:
    settings = GatewaySettings()
    uvicorn.run(
        "gateway.main:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers if settings.workers > 1 else None,
        loop="uvloop",
        http="httptools",
        # The gateway writes its own JSON line per request.
        access_log=False,
        server_header=False,
        proxy_headers=bool(settings.forwarded_allow_ips),
        forwarded_allow_ips=settings.forwarded_allow_ips or None,
        log_config=uvicorn_log_config("gateway", settings.log_level),
        log_level=settings.log_level.lower(),
    )


if __name__ == "__main__":
    main()
