"""The console's reads at the scale of a real base: search as you type and the portfolio
page, over 1,000,000 customers in identify on SQLite, through identify's HTTP app.

1. Loads a fresh identify SQLite database at head with `--customers` customers, straight
   into the tables with bulk inserts (not timed with the queries):
   - names from common US first and last names with a census-like skew (bench/search_bench.py's
     lists: the commonest surname on ~1.9% of customers), emails made of them, US phones
     (70%), external ids, and the substring search index filled set-based as the API and
     imports fill it;
   - purchase summaries of a BG/NBD purchase process with Gamma-Gamma spend
     (bench/portfolio_data.py, ~10 transactions a customer over two years) for nine in
     ten customers (the rest are prospects who never bought), spend compounded to the
     reference day as the recording path keeps it. Purchase days and the transactions
     themselves are not inserted: nothing measured here reads them.
2. Fits a model with the service's own refit (`RefitRunner.refit`, statements on threads):
   BG/NBD, Pareto/NBD, Gamma-Gamma, every customer scored, the kinds, and the stored
   Pareto and segment views. The million `crm.identify.customer.scored` events it leaves
   in the outbox are dropped, as if the relay had published them, so that publishing
   them does not load the measurement.
3. Serves identify's app in-process (httpx's ASGITransport: FastAPI, validation and the
   JSON answer, no socket) and measures, one request at a time:
   (a) search as a user types: for a few names, each keystroke from the third character
       on (the console sends no `q` shorter than 3) is `GET /v1/customers?q=<typed so
       far>&limit=25` in the default order, as the console's customer list asks it, and
       sorted by name ("Name A-Z"). The names are typed `--repeat` times over (after one
       round that warms SQLite's page cache), keystroke after keystroke as a person
       types, and each keystroke's median and p95 are reported, against the 200 ms target;
   (b) the portfolio page's data: `GET /v1/portfolio/pareto`, `/segments`,
       `/significant` (the first page of every kind, and of one kind) and `/model`,
       `--repeat` times each, median and p95, their sum and all fetched at once (as a
       page does), against the page's 1 s budget; and for comparison the two views
       computed per request (as every request did before they were stored at refit, and
       as the endpoints still do before a refit has stored them).

Targets (issue 18): customer search answers in under 200 ms per keystroke; the portfolio
page renders in under 1 s, so its data well under that.

Run: `.venv/bin/python -m bench.console_bench [--customers N] [--repeat K] [--db PATH] [--reuse]`
(`--customers 20000` for a quick check; `--db` keeps the loaded database, `--reuse` runs
the queries again on it without loading).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np

from bench import portfolio_data
from bench.search_bench import AREAS, DOMAINS, FIRST, LAST, SURNAME_WEIGHTS, _ascii
from services.identify.portfolio.repository import REFERENCE_DAY_NUMBER
from services.identify.settings import portfolio_settings

SEARCH_TARGET_MS = 200.0
PAGE_TARGET_MS = 1000.0
MIN_Q = 3  # services/identify/search/schemas.py: the console sends no shorter q
LIMIT = 25  # the console's page
# What people type: a common first name and surname, the commonest surname alone, a rarer
# surname, a short one (its three letters are inside many longer names), first names alone
# (Tyler and Anna: sorted by name, their customers sit far from the list's start).
TYPED = ("Michael Smith", "Johnson", "Maria Garcia", "Lovelace", "Chen", "Tyler", "Anna")
# The console's default order (oldest first), and "Name A-Z".
SORTS = (None, "name")
PORTFOLIO: tuple[tuple[str, str, dict], ...] = (
    ("pareto", "/v1/portfolio/pareto", {}),
    ("segments", "/v1/portfolio/segments", {}),
    ("significant", "/v1/portfolio/significant", {"limit": 50}),
    ("significant of a kind", "/v1/portfolio/significant", {"kind": "high_future_value", "limit": 50}),
    ("model", "/v1/portfolio/model", {}),
)
STAMP = "%Y-%m-%d %H:%M:%S.%f"


def _day_stamps(days: np.ndarray, seconds: np.ndarray) -> list[str]:
    """'YYYY-MM-DD HH:MM:SS.000000' (SQLAlchemy's SQLite datetime text) of day numbers plus seconds."""

    moments = days.astype("datetime64[D]").astype("datetime64[s]") + seconds.astype("timedelta64[s]")
    return [stamp.replace("T", " ") + ".000000" for stamp in np.datetime_as_string(moments).tolist()]


def load(path: Path, customers: int, seed: int) -> dict:
    """identify's schema at head, then `customers` generated customers (see the module doc)."""

    from shared.db.migrations import upgrade

    upgrade("identify", f"sqlite+aiosqlite:///{path}")
    rng = np.random.default_rng(seed)
    rate = portfolio_settings().discount_rate
    started = time.perf_counter()
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    first_ascii = [_ascii(name).lower() for name in FIRST]
    last_ascii = [_ascii(name).lower() for name in LAST]
    for index, chunk in enumerate(portfolio_data.transaction_chunks(customers, seed)):
        offset = index * portfolio_data.CHUNK
        n = int(chunk.customer.max()) - offset + 1
        summary = portfolio_data.summarise(chunk, offset, n)
        first = rng.integers(0, len(FIRST), n)
        last = rng.choice(len(LAST), n, p=SURNAME_WEIGHTS)
        number = rng.integers(1, 10_000, n)
        domain = rng.integers(0, len(DOMAINS), n)
        area = rng.choice(AREAS, n)
        exchange = rng.integers(201, 990, n)
        line = rng.integers(0, 10_000, n)
        has_phone = rng.random(n) < 0.7
        has_name = rng.random(n) < 0.95
        bought = rng.random(n) < 0.9
        # Created up to 30 days before the first purchase; a prospect, any time in the two years.
        created_day = np.where(
            bought,
            summary["first_day"] - rng.integers(0, 30, n),
            portfolio_data.START_DAY + rng.integers(0, portfolio_data.OBSERVED_DAYS, n),
        )
        created = _day_stamps(created_day, rng.integers(0, 86_400, n))
        ids = [f"c{offset + i:09d}" for i in range(n)]
        rows = []
        for i in range(n):
            name = f"{FIRST[first[i]]} {LAST[last[i]]}" if has_name[i] else None
            # Unique as the email_key requires: the customer's number after the name.
            email = (
                f"{first_ascii[first[i]]}.{last_ascii[last[i]]}{offset + i + number[i] * customers}"
                f"@{DOMAINS[domain[i]]}"
            )
            phone = f"({area[i]}) {exchange[i]:03d}-{line[i]:04d}" if has_phone[i] else None
            key = f"+1{area[i]}{exchange[i]:03d}{line[i]:04d}" if has_phone[i] else None
            purchases = int(summary["transactions"][i]) if bought[i] else 0
            rows.append(
                (ids[i], email, email.lower(), f"ext-{offset + i:08d}", name, phone, key, purchases, created[i])
            )
        db.executemany(
            "INSERT INTO customers (id, email, email_key, external_id, name, phone, phone_key, purchase_count, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?9)",
            rows,
        )
        # The search index, as services/identify/customers/repository.py index_new_customers fills it.
        db.executemany("INSERT INTO customer_search_rows (customer_id) VALUES (?)", [(cid,) for cid in ids])
        db.execute(
            "INSERT INTO customer_search (rowid, name, email, phone, phone_key, external_id) "
            "SELECT r.id, c.name, c.email, c.phone, c.phone_key, c.external_id FROM customers c "
            "JOIN customer_search_rows r ON r.customer_id = c.id WHERE c.id >= ? AND c.id <= ?",
            (ids[0], ids[-1]),
        )
        # Spend compounded to the reference day per purchase day, as the recording path keeps it.
        key = (chunk.customer - offset).astype(np.int64) * 100_000 + (chunk.day - portfolio_data.START_DAY)
        unique, starts = np.unique(key, return_index=True)
        day_spend = np.add.reduceat(chunk.amount, starts)
        who, day = unique // 100_000, unique % 100_000 + portfolio_data.START_DAY
        discounted = np.bincount(
            who, weights=day_spend * (1 + rate) ** ((REFERENCE_DAY_NUMBER - day) / 365.0), minlength=n
        )
        first_at = _day_stamps(summary["first_day"], np.full(n, 12 * 3600))
        last_at = _day_stamps(summary["last_day"], np.full(n, 12 * 3600))
        columns = (
            summary["transactions"].tolist(),
            summary["purchase_days"].tolist(),
            np.round(summary["total_spend"], 2).tolist(),
            np.round(summary["first_day_spend"], 2).tolist(),
            discounted.tolist(),
        )
        db.executemany(
            "INSERT INTO purchase_summaries (customer_id, first_purchase_at, last_purchase_at, purchases, "
            "purchase_days, total_spend, first_day_spend, discounted_spend, discount_rate, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?3)",
            [
                (ids[i], first_at[i], last_at[i], *(column[i] for column in columns), rate)
                for i in range(n)
                if bought[i]
            ],
        )
        db.commit()
    db.close()  # no ANALYZE: identify runs none, so its SQLite plans without statistics
    return {"customers": customers, "load_s": round(time.perf_counter() - started, 1)}


async def fit(path: Path) -> dict:
    """The service's refit over the loaded base: model, scores, kinds and stored views."""

    from sqlalchemy import text, update

    from services.identify.models import Refit, messaging
    from services.identify.portfolio.refits import RefitRunner
    from shared.db.database import Database, utcnow
    from shared.db.ids import uuid7
    from shared.db.sqlite_inline import statements_on_threads
    from shared.db.uow import transaction

    db = Database.connect(f"sqlite+aiosqlite:///{path}", service="identify")
    db.info.update({"messaging": messaging})
    runner = RefitRunner(SimpleNamespace(db=db, tasks=[]))  # what a refit uses of the service's runtime
    try:
        refit_id = uuid7()
        async with transaction(db.writer) as session:
            session.add(Refit(id=refit_id, status="running", time_unit="week", requested_at=utcnow()))

        async def on_threads():
            statements_on_threads()  # as RefitRunner._run runs it
            return await runner.refit(refit_id)

        started, cpu = time.perf_counter(), time.process_time()
        version, scored = await asyncio.create_task(on_threads())
        took = {"refit_s": round(time.perf_counter() - started, 1), "refit_cpu_s": round(time.process_time() - cpu, 1)}
        async with transaction(db.writer) as session:
            done = {"status": "done", "model_version": version, "customers_scored": scored, "finished_at": utcnow()}
            await session.execute(update(Refit).where(Refit.id == refit_id).values(**done))
            # The refit's events, as if the relay had published them (see the module doc).
            dropped = (await session.execute(text("SELECT count(*) FROM outbox"))).scalar()
            await session.execute(text("DELETE FROM outbox"))
        return {"model_version": version, "scored": scored, "outbox_rows_dropped": dropped, **took}
    finally:
        await db.dispose()


def _summary(times: list[float]) -> dict:
    ordered = sorted(times)
    return {
        "n": len(ordered),
        "median_ms": round(statistics.median(ordered), 1),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 1),
        "max_ms": round(ordered[-1], 1),
    }


def keystrokes(names: tuple[str, ...]) -> list[tuple[str, str]]:
    """(name, q) of each keystroke that sends a search: from the third character on, a
    trailing space sends nothing new (q is trimmed)."""

    out = []
    for name in names:
        sent = None
        for end in range(MIN_Q, len(name) + 1):
            q = name[:end].strip()
            if len(q) >= MIN_Q and q != sent:
                out.append((name, q))
                sent = q
    return out


async def measure(path: Path, repeat: int, names: tuple[str, ...]) -> dict:
    from services.identify.main import create_app
    from services.identify.portfolio import repository, service
    from shared.db.migrations import upgrade
    from shared.internal_auth import load_or_create_internal_secret
    from shared.settings import SuiteSettings, service_settings
    from tests.support import NatsServer
    from valuechain.nats_setup import provision_all

    url = f"sqlite+aiosqlite:///{path}"
    upgrade("identify", url)  # a kept database (--reuse) follows the code's migrations
    typed = keystrokes(names)
    with tempfile.TemporaryDirectory() as scratch:
        nats = NatsServer(Path(scratch) / "js")
        nats.start()
        try:
            await provision_all(nats.address, nats.credentials("admin"))  # as `valuechain migrate`
            settings = service_settings("identify", database_url=url, nats_url=nats.address, var_dir=nats.var_dir)
            app = create_app(settings)
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                logging.getLogger("httpx").setLevel(logging.WARNING)  # no log line per request
                # identify answers only what carries the gateway's internal secret.
                headers = {"x-valuechain-internal": load_or_create_internal_secret(SuiteSettings(var_dir=nats.var_dir))}
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://identify", timeout=60, headers=headers
                ) as client:

                    async def get(path: str, params: dict) -> tuple[float, dict]:
                        started = time.perf_counter()
                        response = await client.get(path, params=params)
                        took = (time.perf_counter() - started) * 1000
                        assert response.status_code == 200, (path, params, response.text[:300])
                        return took, response.json()

                    # (a) search as you type
                    await get("/v1/customers", {"limit": LIMIT})  # the list the page opens with
                    keys = [(sort, name, q) for sort in SORTS for name, q in typed]
                    search_times: dict[tuple, list[float]] = {key: [] for key in keys}
                    found: dict[tuple, str] = {}
                    for lap in range(repeat + 1):  # the first lap warms SQLite's page cache: not counted
                        for sort, name, q in keys:
                            took, body = await get(
                                "/v1/customers", {"q": q, "limit": LIMIT, **({"sort": sort} if sort else {})}
                            )
                            if lap:
                                search_times[(sort, name, q)].append(took)
                            found[(sort, name, q)] = f"{len(body['items'])}{'+' if body['next_cursor'] else ''}"
                    search = [
                        {"sort": sort, "name": name, "q": q, "items": found[(sort, name, q)]}
                        | _summary(search_times[(sort, name, q)])
                        for sort, name, q in keys
                    ]
                    for row in search:
                        print(row, flush=True)

                    # (b) the portfolio page
                    page_times: dict[str, list[float]] = {name: [] for name, _, _ in PORTFOLIO}
                    together: list[float] = []
                    stamps = {}
                    for _ in range(repeat):
                        for name, path_, params in PORTFOLIO:
                            took, body = await get(path_, params)
                            page_times[name].append(took)
                            stamps[name] = body.get("computed_at", body.get("fitted_at"))
                        started = time.perf_counter()
                        await asyncio.gather(*(get(path_, params) for _, path_, params in PORTFOLIO))
                        together.append((time.perf_counter() - started) * 1000)
                    portfolio = [
                        {"read": name, "stored": stamps[name], **_summary(page_times[name])} for name in page_times
                    ]
                    portfolio.append(
                        {
                            "read": "sum of the medians",
                            "median_ms": round(sum(r["median_ms"] for r in portfolio), 1),
                        }
                    )
                    portfolio.append({"read": "all at once (as a page fetches)", **_summary(together)})

                    # For comparison: the two views computed per request (see the module doc).
                    computed: dict[str, list[float]] = {"pareto": [], "segments": []}
                    for _ in range(max(1, min(repeat, 3))):
                        for name, call in (("pareto", service.pareto), ("segments", service.segments)):
                            started = time.perf_counter()
                            async with repository.bulk_reader(url) as session:
                                await call(session=session)
                            computed[name].append((time.perf_counter() - started) * 1000)
                    for name, times in computed.items():
                        portfolio.append({"read": f"{name} computed per request", **_summary(times)})
                    for row in portfolio:
                        print(row, flush=True)
                    return {"search": search, "portfolio": portfolio}
        finally:
            nats.stop()


def report(customers: int, result: dict) -> str:
    lines = [
        f"\n(a) search as you type over {customers:,} customers: GET /v1/customers?q=…&limit={LIMIT}[&sort=…]",
        f"\n| sort | name | q | items | median ms | p95 ms | max ms | p95 < {SEARCH_TARGET_MS:.0f} ms |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for row in result["search"]:
        ok = "yes" if row["p95_ms"] < SEARCH_TARGET_MS else "**no**"
        sort = row["sort"] or "(default)"
        cells: tuple = (
            sort,
            row["name"],
            f"`{row['q']}`",
            row["items"],
            row["median_ms"],
            row["p95_ms"],
            row["max_ms"],
            ok,
        )
        lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    every = [row["p95_ms"] for row in result["search"]]
    lines.append(
        f"\nslowest keystroke p95: {max(every)} ms; keystrokes over target: {sum(p >= SEARCH_TARGET_MS for p in every)}"
    )
    lines += [
        f"\n(b) the portfolio page's data over {customers:,} customers",
        "\n| read | median ms | p95 ms | max ms | stored at |",
        "|---|---:|---:|---:|---|",
    ]
    for row in result["portfolio"]:
        cells = (
            row["read"],
            row.get("median_ms", ""),
            row.get("p95_ms", ""),
            row.get("max_ms", ""),
            row.get("stored") or "",
        )
        lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=int(os.environ.get("BENCH_REPEATS", "20")))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--db", type=Path, help="where to keep the database (default: a temporary directory)")
    parser.add_argument("--reuse", action="store_true", help="query the database at --db without loading it")
    parser.add_argument("--json", type=Path, help="write the raw results here")
    args = parser.parse_args()
    scratch = None
    path = args.db
    if path is None:
        scratch = tempfile.TemporaryDirectory()
        path = Path(scratch.name) / "identify.db"
    try:
        loaded: dict = {}
        if not args.reuse:
            for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                leftover.unlink(missing_ok=True)
            loaded = load(path, args.customers, args.seed)
            print(loaded, flush=True)
            loaded.update(asyncio.run(fit(path)))
            loaded["size_mb"] = round(os.path.getsize(path) / 1e6)
            print(loaded, flush=True)
        result = asyncio.run(measure(path, args.repeat, TYPED))
        print(report(args.customers, result))
        if args.json:
            args.json.write_text(json.dumps({"loaded": loaded, **result}, indent=2))
    finally:
        if scratch is not None:
            scratch.cleanup()


if __name__ == "__main__":
    main()
