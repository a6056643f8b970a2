"""The `valuechain` command.

Each subcommand is a `(name, help, add_arguments, handler)` entry in COMMANDS; handlers
import what they need lazily so `valuechain --help` stays fast. To add a command, write
`def _cmd_x(args) -> int` (and optionally `def _args_x(parser)`), then add it to COMMANDS.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path


def _args_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--replicas",
        type=int,
        default=1,
        metavar="N",
        help="N processes of every service and of the gateway (ports: docs/operations.md, 'Replicas')",
    )
    parser.add_argument(
        "--nats-cluster",
        type=int,
        default=1,
        choices=[1, 3, 5],
        metavar="N",
        help="run NATS as a JetStream cluster of N nodes on loopback (3 or 5; the stream gets N replicas)",
    )


def _cmd_run(args: argparse.Namespace) -> int:
    from valuechain.supervisor import run

    if args.replicas < 1:
        print("valuechain run: --replicas must be at least 1", file=sys.stderr)
        return 2
    return run(args.replicas, nats_cluster=args.nats_cluster)


def _cmd_migrate(args: argparse.Namespace) -> int:
    from shared.db.migrations import upgrade_all
    from valuechain.supervisor import SupervisorSettings, provision_nats, settings_or_exit

    settings = settings_or_exit(SupervisorSettings)
    upgrade_all()
    print("migrations: every service's database and the gateway's are at head")
    try:
        provisioned = provision_nats(settings)
    except Exception as exc:  # noqa: BLE001 - said plainly, with what to check
        print(f"migrate: provisioning NATS at {settings.nats_url} as the admin failed: {exc!r}", file=sys.stderr)
        return 1
    for line in provisioned:
        print(f"nats: {line}")
    return 0


def _args_wait_migrations(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "databases", nargs="+", metavar="database", help="identify, engage, network, value, lifecycle or gateway"
    )
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds before giving up (default 1800)")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between looks (default 2)")


def _cmd_wait_migrations(args: argparse.Namespace) -> int:
    """Wait until each database is at the head of this code's migrations: a Kubernetes pod's
    init container, so a new version's pods start only once its `valuechain migrate` ran."""

    from shared.db.migrations import DATABASES, revisions

    unknown = [name for name in args.databases if name not in DATABASES]
    if unknown:
        print(
            f"wait-migrations: unknown database {unknown[0]!r}: expected one of {', '.join(DATABASES)}", file=sys.stderr
        )
        return 2
    deadline = time.monotonic() + args.timeout
    waiting = list(args.databases)
    said: dict[str, str] = {}
    while True:
        for name in list(waiting):
            try:
                current, heads = revisions(name)
            except Exception as exc:  # noqa: BLE001 - not reachable yet: look again
                state = f"not reachable ({type(exc).__name__}: {exc})"
            else:
                if current == heads:
                    print(f"wait-migrations: {name} is at {', '.join(sorted(heads))}", flush=True)
                    waiting.remove(name)
                    continue
                state = f"at {', '.join(sorted(current)) or 'no revision'}, waiting for {', '.join(sorted(heads))}"
            if said.get(name) != state:  # each change once, not every look
                print(f"wait-migrations: {name}: {state} (valuechain migrate)", flush=True)
                said[name] = state
        if not waiting:
            return 0
        if time.monotonic() >= deadline:
            print(f"wait-migrations: gave up after {args.timeout:g} s: {', '.join(waiting)}", file=sys.stderr)
            return 1
        time.sleep(args.interval)


def _args_migration(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "service", help="the service whose models changed (identify, engage, network, value, lifecycle)"
    )
    parser.add_argument("message", help='what the revision changes, e.g. "tickets" (it names the file)')


def _cmd_migration(args: argparse.Namespace) -> int:
    from shared.db.migrations import MigrationError, make_revision

    try:
        path = make_revision(args.service, args.message)
    except MigrationError as exc:
        print(f"migration: {exc}", file=sys.stderr)
        return 2
    if path is None:
        print(f"migration: {args.service}'s models match its migrations: nothing to generate")
        return 0
    print(f"migration: wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    print("  read it before committing: autogenerate misses renames and data changes")
    return 0


def _no_args(parser: argparse.ArgumentParser) -> None:
    return None


# --- valuechain import transactions FILE ------------------------------------------


def _args_import(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=["transactions"], help="what the file holds")
    parser.add_argument("file", type=Path, help="CSV (any delimiter, or whitespace-separated) or NDJSON")
    mapping = parser.add_mutually_exclusive_group()
    mapping.add_argument(
        "--mapping", help='JSON object renaming the file\'s columns to ours, e.g. \'{"id": "customer_external_id"}\''
    )
    mapping.add_argument("--mapping-file", type=Path, help="the mapping, from a JSON file")
    parser.add_argument("--create-customers", action="store_true", help="create customers for unknown external ids")
    parser.add_argument("--format", choices=["csv", "ndjson"], help="default: guessed from the name or content")
    parser.add_argument("--columns", help="comma-separated column names of a file without a header row")
    parser.add_argument("--delimiter", help="CSV delimiter: one character, tab or whitespace (default: guessed)")
    parser.add_argument("--date-format", help="strptime format of the dates (default: ISO 8601 or YYYYMMDD)")
    parser.add_argument("--currency", help="currency of rows without one, e.g. USD")
    parser.add_argument(
        "--gateway", help="gateway URL (default: $VALUECHAIN_GATEWAY_URL, else the local suite's gateway)"
    )
    parser.add_argument("--api-key", help="default: $VALUECHAIN_ADMIN_API_KEY, else <var dir>/admin-api-key")


def _api_key(given: str | None, settings) -> str:
    key = (given or "").strip() or (settings.admin_api_key.get_secret_value() if settings.admin_api_key else "")
    if key:
        return key
    path = settings.var_dir / "admin-api-key"
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise SystemExit(
            f"no API key: pass --api-key, set VALUECHAIN_ADMIN_API_KEY, or run from where {path} exists"
        ) from error


def _count_rows(path: Path, *, header: bool) -> int:
    """The rows the import will read, for the progress bar's 100%: the non-blank lines
    (the reader skips blank ones), less the header row when the file has one."""

    with open(path, "rb") as file:
        lines = sum(1 for line in file if not line.isspace())
    return max(lines - header, 0)


def _progress(job: dict, total: int, started: float) -> str:
    done = job["rows_read"]
    share = min(done / total, 1.0) if total else 1.0
    width = 30
    bar = "#" * int(share * width) + "." * (width - int(share * width))
    rate = done / max(time.monotonic() - started, 1e-9)
    return (
        f"\r[{bar}] {share:4.0%} {done:,}/{total:,} rows  recorded {job['recorded']:,}  "
        f"duplicates {job['duplicates']:,}  rejected {job['rejected']:,}  {rate:,.0f} rows/s "
    )


def _cmd_import(args: argparse.Namespace) -> int:
    import json

    import httpx

    from valuechain.supervisor import SupervisorSettings, settings_or_exit

    if not args.file.is_file():
        print(f"no such file: {args.file}", file=sys.stderr)
        return 2
    mapping = args.mapping_file.read_text(encoding="utf-8") if args.mapping_file else args.mapping
    if mapping:
        try:
            json.loads(mapping)
        except ValueError as exc:
            print(f"--mapping is not JSON: {exc}", file=sys.stderr)
            return 2
    form = {
        "mapping": mapping,
        "format": args.format,
        "columns": args.columns,
        "delimiter": args.delimiter,
        "date_format": args.date_format,
        "currency": args.currency,
        "create_customers": "true" if args.create_customers else "false",
    }
    form = {name: value for name, value in form.items() if value is not None}
    settings = settings_or_exit(SupervisorSettings)
    args.gateway = args.gateway or settings.gateway_url
    headers = {"Authorization": f"Bearer {_api_key(args.api_key, settings)}"}
    started = time.monotonic()
    try:
        with httpx.Client(base_url=args.gateway, headers=headers, timeout=httpx.Timeout(30.0, read=300.0)) as client:
            with open(args.file, "rb") as file:  # httpx sends it by chunks
                response = client.post("/v1/imports", files={"file": (args.file.name, file)}, data=form)
            if response.status_code != 202:
                print(f"the import was refused ({response.status_code}): {response.text}", file=sys.stderr)
                return 1
            accepted = response.json()
            import_id = accepted["id"]
            print(f"import {import_id} started", file=sys.stderr)
            # A CSV file's first line names its columns unless --columns does.
            total = _count_rows(args.file, header=accepted["format"] == "csv" and not args.columns)
            while True:
                answer = client.get(f"/v1/imports/{import_id}")
                if answer.status_code != 200:
                    print(f"\ncannot read the import ({answer.status_code}): {answer.text}", file=sys.stderr)
                    return 1
                job = answer.json()
                print(_progress(job, total, started), end="", file=sys.stderr, flush=True)
                if job["status"] != "running":
                    break
                time.sleep(0.25)
    except httpx.HTTPError as exc:
        print(f"\ncannot reach the gateway at {args.gateway}: {exc}", file=sys.stderr)
        return 1
    print(file=sys.stderr)
    elapsed = time.monotonic() - started
    print(
        f"import {import_id}: {job['status']} in {elapsed:.1f} s — {job['rows_read']:,} rows read, "
        f"{job['recorded']:,} recorded, {job['duplicates']:,} duplicates, {job['rejected']:,} rejected, "
        f"{job['customers_created']:,} customers created ({job['rows_read'] / max(elapsed, 1e-9):,.0f} rows/s)"
    )
    for error in job["errors"][:10]:
        print(f"  line {error['line']}: {error['reason']}")
    if job["errors_total"] > 10:
        print(f"  … {job['errors_total'] - 10:,} more: GET /v1/imports/{import_id}/errors")
    if job["status"] != "done":
        print(f"the import failed: {job['failure']}", file=sys.stderr)
        return 1
    return 0


def _cmd_compose_secrets(args: argparse.Namespace) -> int:
    """Lines for docker compose's `.env`: a fresh random value for every secret it needs."""

    from shared.nats_auth import ADMIN_USER, GATEWAY_USER, password_variable
    from shared.secret_files import new_secret
    from shared.settings import SERVICES
    from valuechain.nats_setup import ROUTE_USER

    names = [
        "VALUECHAIN_ADMIN_API_KEY",
        "VALUECHAIN_INTERNAL_SECRET",
        "VALUECHAIN_LINKS_SECRET",
        "VALUECHAIN_DB_PASSWORD",
        # identify's suppression-list key: every replica must hash alike (deploy/k8s).
        "VALUECHAIN_IDENTIFY_SUPPRESSION_KEY",
        *(password_variable(user) for user in (ADMIN_USER, GATEWAY_USER, *SERVICES, ROUTE_USER)),
    ]
    for name in names:
        # Starting with a letter: nats-server parses an environment variable it reads into its
        # configuration (`password: $VAR`) as a value, and one starting with a digit or `-` as a
        # number or a date, which fails ("All ISO8601 dates must be in full Zulu form").
        print(f"{name}=k{new_secret()}")
    return 0


COMMANDS: list[tuple[str, str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = [
    (
        "run",
        "start NATS, migrate, then run the five services and the gateway under a supervisor",
        _args_run,
        _cmd_run,
    ),
    (
        "migrate",
        "upgrade every service's database and the gateway's, then provision NATS (stream, consumers) as its admin",
        _no_args,
        _cmd_migrate,
    ),
    (
        "wait-migrations",
        "wait until the named databases are at the head of this version's migrations (Kubernetes init containers)",
        _args_wait_migrations,
        _cmd_wait_migrations,
    ),
    (
        "migration",
        "autogenerate a dated revision of one service's database from its models (make migration)",
        _args_migration,
        _cmd_migration,
    ),
    (
        "compose-secrets",
        "print a fresh random value for every secret docker-compose.yml needs, as .env lines",
        _no_args,
        _cmd_compose_secrets,
    ),
    (
        "import",
        "import a file of transactions through the gateway, with a progress bar (see docs/imports.md)",
        _args_import,
        _cmd_import,
    ),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="valuechain",
        description="Value Chain CRM: run the suite locally or manage its databases.",
        epilog="Configuration comes from VALUECHAIN_* environment variables (see docs/operations.md).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, help_text, add_arguments, handler in COMMANDS:
        command = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(command)
        command.set_defaults(handler=handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
