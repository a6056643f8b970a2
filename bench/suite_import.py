"""The README's CDNOW import against a running suite (`make run`, fresh `var/`): the
seconds until the import is `done`, and until every JetStream consumer of every
service has caught up with the events it set off (nothing pending or unacked, and
at least the import's own 93,229 events in the stream).

Not one of the `*_bench` modules `python -m bench` runs: it needs the suite up.
Run: `make run` in one terminal (after `rm -rf var`), then
`.venv/bin/python -m bench.suite_import` in another.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import nats

from tests.support import cdnow_dir

MAPPING = '{"customer_id": "customer_external_id", "date": "occurred_at", "dollar_value": "amount"}'
IMPORT_EVENTS = 93_229  # 69,659 transactions recorded + 23,570 customers created


async def _pending(js) -> int:
    return sum(info.num_pending + info.num_ack_pending for info in await js.consumers_info("CRM"))


async def run(args) -> None:
    nc = await nats.connect(args.nats_url)
    try:
        js = nc.jetstream()
        started = time.perf_counter()
        command = await asyncio.create_subprocess_exec(
            str(Path(".venv/bin/valuechain").resolve()),
            "import",
            "transactions",
            str(args.file),
            "--create-customers",
            "--currency",
            "USD",
            "--mapping",
            MAPPING,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await command.communicate()
        done = time.perf_counter() - started
        while True:
            await asyncio.sleep(0.2)
            stream = await js.stream_info("CRM")
            if stream.state.messages >= IMPORT_EVENTS and await _pending(js) == 0:
                break
        caught_up = time.perf_counter() - started
        print(output.decode().strip().splitlines()[-1].split("\r")[-1])
        print(
            f"import done {done:.1f} s; every consumer caught up {caught_up:.1f} s; "
            f"{stream.state.messages:,} events in the stream"
        )
    finally:
        await nc.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", type=Path, default=cdnow_dir() / "CDNOW_master.txt")
    # NATS asks for credentials: the admin's, e.g. nats://admin:$(cat var/nats/admin.password)@127.0.0.1:4222
    parser.add_argument("--nats-url", default="nats://127.0.0.1:4222")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
