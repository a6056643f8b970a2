"""Run the gateway: `python -m gateway [--host H] [--port P]` (settings from
VALUECHAIN_GATEWAY_* variables; the options override host and port).

Served with gateway/server.py's protocol: the request header caps, read deadlines
and the bound on a client's idle connections live there, below the app."""

from __future__ import annotations

import argparse

import uvicorn

from gateway.server import GatewayHttpProtocol
from gateway.settings import GatewaySettings
from shared.observability.logs import uvicorn_log_config


def main(argv: list[str] | None = None) -> None:
    settings = GatewaySettings()
    parser = argparse.ArgumentParser(prog="python -m gateway", description="Run the API gateway.")
    parser.add_argument("--host", default=settings.host, help="address to listen on (VALUECHAIN_GATEWAY_HOST)")
    parser.add_argument("--port", type=int, default=settings.port, help="port (VALUECHAIN_GATEWAY_PORT)")
    args = parser.parse_args(argv)
    uvicorn.run(
        "gateway.main:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=settings.workers if settings.workers > 1 else None,
        loop="uvloop",
        # Imported by name in each worker process, where it reads its limits from
        # the same VALUECHAIN_GATEWAY_* variables as the app.
        http=GatewayHttpProtocol,
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
