"""Gateway throughput: the same small JSON GET, straight to a service, through our
gateway, and through nginx, measured in one run on one machine.

    .venv/bin/python -m bench.gateway_bench [--duration 10] [--connections 50] [--repeat 5]

It starts, on loopback ports:

* an upstream: a plain FastAPI app (one uvicorn process, uvloop + httptools)
  answering `GET /v1/customers/{id}` with a small JSON and `/readyz`;
  `--upstream raw` uses a bare ASGI callable instead (a much cheaper upstream,
  which shows the proxies' own cost more);
* the gateway as a real process (`python -m gateway`) with every service URL
  pointing at that upstream, its JSON request log going to a file;
* nginx, when installed, proxying to the upstream over keep-alive connections
  (`worker_processes auto`, `keepalive 64`, access log off).

With `--baseline DIR` (another commit's tree: `git archive <commit> | tar -x -C DIR`)
the gateway of DIR runs too, as one more target in the same rotation: before and after,
interleaved. With `--replicas N` one more gateway spreads over N upstream processes
(replicas of every service, gateway/upstream.py ReplicaSet).

Load: `wrk` (one thread, `--connections` connections) when installed, else a
Python aiohttp loop in a separate process (which is itself the bottleneck far
sooner: the numbers are then only comparable with each other). Each target is
warmed up, then measured `--repeat` times in rotating order; the table gives
medians of requests/s and of wrk's p50/p99 latency, and the CPU time the proxy
process(es) used per request (from /proc). The verdict compares the gateway's
median throughput with nginx's (target: at least 0.8x).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATH = "/v1/customers/0b6d3a52-3f7e-4c3e-9a55-5a1f4c7b2f10"
TARGET_RATIO = 0.8

# -- the upstream ------------------------------------------------------------------

_CUSTOMER = {
    "name": "Ada Lovelace",
    "email": "ada@example.com",
    "segment": "gold",
    "lifetime_value": "1234.50",
    "created_at": "2026-11-01T10:00:00Z",
}


def _fastapi_upstream():
    from fastapi import FastAPI

    app = FastAPI(title="bench upstream")

    @app.get("/v1/customers/{customer_id}")
    async def get_customer(customer_id: str):
        return {"id": customer_id, **_CUSTOMER}

    @app.get("/readyz")
    async def readyz():
        return {"status": "ready", "checks": {}}

    return app


upstream_app = _fastapi_upstream()


async def raw_upstream_app(scope, receive, send):
    """The same answers from a bare ASGI callable."""

    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    path = scope["path"]
    if path.startswith("/v1/customers/"):
        body = json.dumps({"id": path.rsplit("/", 1)[1], **_CUSTOMER}, separators=(",", ":")).encode()
    elif path == "/readyz":
        body = b'{"status":"ready","checks":{}}'
    else:
        await send({"type": "http.response.start", "status": 404, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


# -- processes -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float = 20.0, headers: dict | None = None) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=1) as response:
                if response.status == 200:
                    return
        except Exception as exc:  # still starting
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up: {last}")


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen

    def pids(self) -> list[int]:
        """The process and its direct children (uvicorn or nginx workers)."""

        pids = [self.popen.pid]
        try:
            children = Path(f"/proc/{self.popen.pid}/task/{self.popen.pid}/children").read_text().split()
            pids += [int(pid) for pid in children]
        except OSError:
            pass
        return pids

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM if self.name != "nginx" else signal.SIGQUIT)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def cpu_seconds(pids: list[int]) -> float | None:
    """User+system CPU time of these processes so far (Linux /proc), or None."""

    total = 0
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    except (OSError, ValueError, IndexError):
        return None
    return total / ticks


def start_upstream(kind: str, port: int, tmp: Path, name: str = "upstream") -> Proc:
    app = "bench.gateway_bench:upstream_app" if kind == "fastapi" else "bench.gateway_bench:raw_upstream_app"
    popen = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
            "--loop",
            "uvloop",
            "--http",
            "httptools",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / f"{name}.log", "wb"),  # noqa: SIM115 - the child holds it; Popen keeps it
    )
    wait_http(f"http://127.0.0.1:{port}/readyz")
    return Proc(name, popen)


def start_gateway(
    port: int,
    upstream_ports: int | list[int],
    key: str,
    tmp: Path,
    workers: int,
    *,
    source: Path = ROOT,
    name: str = "gateway",
) -> Proc:
    """`python -m gateway` from `source` (this tree, or --baseline's), every service's URL
    listing `upstream_ports` (several: replicas of it, spread by the gateway)."""

    if isinstance(upstream_ports, int):
        upstream_ports = [upstream_ports]
    env = dict(os.environ)
    upstream = ",".join(f"http://127.0.0.1:{upstream_port}" for upstream_port in upstream_ports)
    env.update(
        {
            "VALUECHAIN_GATEWAY_HOST": "127.0.0.1",
            "VALUECHAIN_GATEWAY_PORT": str(port),
            "VALUECHAIN_GATEWAY_WORKERS": str(workers),
            "VALUECHAIN_ADMIN_API_KEY": key,
            # Each gateway its own database (the first keeps <tmp>/var: feed_bench's services share it).
            "VALUECHAIN_VAR_DIR": str(tmp / "var" if name == "gateway" else tmp / f"var-{name}"),
            # The rate limit is checked on every request (its cost is in the numbers) but
            # never refuses one: at thousands of requests a second the admin default
            # (60,000 a minute) would turn the runs into a benchmark of 429s.
            "VALUECHAIN_GATEWAY_RATE_LIMITS": '{"admin": 1000000000}',
            **{
                f"VALUECHAIN_GATEWAY_{service.upper()}_URL": upstream
                for service in ("identify", "engage", "network", "value", "lifecycle")
            },
        }
    )
    popen = subprocess.Popen(
        [sys.executable, "-m", "gateway"],
        cwd=source,  # `python -m` imports the gateway (and shared/) from there
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / f"{name}.log", "wb"),  # noqa: SIM115 - the child holds it; Popen keeps it  # the JSON request log: written, as in production
    )
    wait_http(f"http://127.0.0.1:{port}/healthz")
    return Proc(name, popen)


NGINX_CONF = """\
worker_processes auto;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream crm {{
        server 127.0.0.1:{upstream_port};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://crm;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"""


def start_nginx(port: int, upstream_port: int, tmp: Path) -> Proc | None:
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if binary is None:
        return None
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, port=port, upstream_port=upstream_port))
    popen = subprocess.Popen(
        [binary, "-p", str(tmp), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / "nginx.log", "wb"),  # noqa: SIM115 - the child holds it; Popen keeps it
    )
    wait_http(f"http://127.0.0.1:{port}/readyz")
    return Proc("nginx", popen)


# -- load ------------------------------------------------------------------------------


@dataclass
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    cpu_us_per_request: float | None = None
    # Share of the machine's CPUs busy with processes outside this benchmark
    # during the run (other users' work skews the numbers; 0.0 = quiet).
    foreign_cpu: float | None = None


def _to_ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if not match:
        raise ValueError(value)
    number, unit = float(match[1]), match[2]
    return {"us": number / 1000, "ms": number, "s": number * 1000, "m": number * 60000}[unit]


def _wrk_value(pattern: str, out: str, flags: int = 0) -> str:
    """The first group of pattern in wrk's report."""
    match = re.search(pattern, out, flags)
    if match is None:
        raise ValueError(f"no {pattern!r} in wrk's report:\n{out}")
    return match[1]


def run_wrk(url: str, key: str, connections: int, duration: float, header: str = "") -> Run:
    """`header`: one more `name: value` line (a service straight on wants the internal secret)."""

    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            "--latency",
            "-H",
            f"Authorization: Bearer {key}",
            *(["-H", header] if header else []),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    requests = int(_wrk_value(r"(\d+) requests in", out))
    errors = 0
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(match[1])
    if match := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(g) for g in match.groups())
    return Run(
        rps=float(_wrk_value(r"Requests/sec:\s+([\d.]+)", out)),
        p50_ms=_to_ms(_wrk_value(r"^\s+50%\s+(\S+)", out, re.M)),
        p99_ms=_to_ms(_wrk_value(r"^\s+99%\s+(\S+)", out, re.M)),
        requests=requests,
        errors=errors,
    )


def run_python_load(url: str, key: str, connections: int, duration: float, header: str = "") -> Run:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.gateway_bench",
            "--loadgen",
            url,
            f"--key={key}",  # one argument: a key may start with "-", which argparse would take for an option
            f"--header={header}",
            "--connections",
            str(connections),
            "--duration",
            str(duration),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    data = json.loads(out.strip().splitlines()[-1])
    return Run(**data)


async def _loadgen(url: str, key: str, connections: int, duration: float, header: str = "") -> dict:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    headers = {"Authorization": f"Bearer {key}"}
    if header:
        name, _, value = header.partition(":")
        headers[name.strip()] = value.strip()
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        deadline = time.perf_counter() + duration

        async def worker():
            nonlocal errors
            while (start := time.perf_counter()) < deadline:
                try:
                    async with session.get(url, headers=headers) as response:
                        await response.read()
                        if response.status != 200:
                            errors += 1
                except aiohttp.ClientError:
                    errors += 1
                latencies.append(time.perf_counter() - start)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    n = len(latencies)
    return {
        "rps": n / elapsed,
        "p50_ms": latencies[n // 2] * 1000 if n else 0.0,
        "p99_ms": latencies[min(n - 1, int(n * 0.99))] * 1000 if n else 0.0,
        "requests": n,
        "errors": errors,
    }


# -- the run ------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    url: str
    proc: Proc
    runs: list[Run] = field(default_factory=list)

    def median(self, attr: str) -> float | None:
        values = [getattr(run, attr) for run in self.runs if getattr(run, attr) is not None]
        return statistics.median(values) if values else None


def busy_seconds() -> float | None:
    """CPU time the whole machine spent busy so far (Linux /proc/stat), or None."""

    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def measure(target: Target, load, key: str, connections: int, duration: float, upstreams: list[Proc]) -> Run:
    pids = target.proc.pids()
    ours = sorted(set(pids + [pid for upstream in upstreams for pid in upstream.pids()]))
    before, ours_before, busy_before = cpu_seconds(pids), cpu_seconds(ours), busy_seconds()
    children_before = os.times()
    started = time.monotonic()
    run = load(target.url, key, connections, duration)
    elapsed = time.monotonic() - started
    children_after = os.times()
    after, ours_after, busy_after = cpu_seconds(pids), cpu_seconds(ours), busy_seconds()
    if before is not None and after is not None and run.requests:
        run.cpu_us_per_request = (after - before) / run.requests * 1e6
    if ours_before is not None and ours_after is not None and busy_before is not None and busy_after is not None:
        loadgen = (children_after.children_user + children_after.children_system) - (
            children_before.children_user + children_before.children_system
        )
        foreign = (busy_after - busy_before) - (ours_after - ours_before) - loadgen
        run.foreign_cpu = max(0.0, foreign / (elapsed * (os.cpu_count() or 1)))
    return run


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} CPUs ({cpu}){memory}"


def report(targets: list[Target], args, loadgen: str, skipped: list[str]) -> str:
    lines = [
        f"Machine: {machine()}; Python {sys.version.split()[0]}; load: {loadgen}, "
        f"{args.connections} connections, {args.duration:g} s x {args.repeat} runs per target (medians); "
        f"upstream: {args.upstream}; gateway workers: {args.gateway_workers}"
        + (
            f"; `gateway, {args.replicas} replicas`: its upstream in {args.replicas} processes"
            if args.replicas > 1
            else ""
        )
        + (f"; `gateway (baseline)`: the gateway of {args.baseline}" if args.baseline else "")
        + ".",
        "",
        "| target | requests/s | p50 ms | p99 ms | proxy CPU µs/request | requests/s per run | other load |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    for target in targets:
        cpu = target.median("cpu_us_per_request")
        cpu_text = "—" if target.name.startswith("upstream") else (f"{cpu:.0f}" if cpu is not None else "n/a")
        runs = ", ".join(f"{run.rps:,.0f}" for run in target.runs)
        errors = sum(run.errors for run in target.runs)
        note = f" ({errors} errors)" if errors else ""
        foreign = target.median("foreign_cpu")
        foreign_text = f"{100 * foreign:.0f}%" if foreign is not None else "n/a"
        lines.append(
            f"| {target.name}{note} | {target.median('rps'):,.0f} | {target.median('p50_ms'):.2f} | "
            f"{target.median('p99_ms'):.2f} | {cpu_text} | {runs} | {foreign_text} |"
        )
    by_name = {target.name: target for target in targets}
    lines.append("")
    gateway = by_name.get("gateway")
    nginx = by_name.get("nginx")
    upstream = by_name.get("upstream direct")
    gateway_rps = gateway.median("rps") if gateway else None
    upstream_rps = upstream.median("rps") if upstream else None
    nginx_rps = nginx.median("rps") if nginx else None
    if gateway_rps is not None and upstream_rps is not None:
        lines.append(f"gateway / upstream direct: {gateway_rps / upstream_rps:.2f}x")
    for other in ("gateway (baseline)", f"gateway, {args.replicas} replicas"):
        compared = by_name.get(other)
        other_rps = compared.median("rps") if compared else None
        if gateway_rps is not None and other_rps is not None:
            lines.append(f"{other} / gateway: {other_rps / gateway_rps:.2f}x")
    if gateway_rps is not None and nginx_rps is not None:
        ratio = gateway_rps / nginx_rps
        verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
        lines.append(f"gateway / nginx: {ratio:.2f}x (target >= {TARGET_RATIO}x: {verdict})")
    for note in skipped:
        lines.append(note)
    lines.append(
        "(proxy CPU: user+system time of the proxy's processes per request; other load: median share of "
        "the machine's CPUs used by processes outside the benchmark during a run.)"
    )
    return "\n".join(lines)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.gateway_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run (default 10)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up per target (default 3)")
    parser.add_argument("--connections", type=int, default=50, help="concurrent connections (default 50)")
    parser.add_argument("--repeat", type=int, default=5, help="measured runs per target (default 5)")
    parser.add_argument("--upstream", choices=("fastapi", "raw"), default="fastapi")
    parser.add_argument("--gateway-workers", type=int, default=1)
    parser.add_argument("--no-nginx", action="store_true")
    parser.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="also a gateway whose upstream runs in this many processes (its replicas, spread by the gateway)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="also the gateway of this source tree (e.g. `git archive <commit> | tar -x -C DIR`), interleaved",
    )
    parser.add_argument("--python-load", action="store_true", help="use the Python load generator even if wrk exists")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    # Internal: the Python load generator's own process.
    parser.add_argument("--loadgen", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--header", default="", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.loadgen:
        print(json.dumps(asyncio.run(_loadgen(args.loadgen, args.key, args.connections, args.duration, args.header))))
        return

    # Stop the processes we started when killed, too (the finally below).
    previous_sigterm = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        _bench(args)
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def _bench(args) -> None:
    use_wrk = shutil.which("wrk") is not None and not args.python_load
    load = run_wrk if use_wrk else run_python_load
    loadgen = "wrk -t1" if use_wrk else "Python aiohttp loop (wrk not installed)"
    key = secrets.token_urlsafe(24)
    skipped: list[str] = []
    procs: list[Proc] = []
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            upstream_port, gateway_port, nginx_port = free_port(), free_port(), free_port()
            upstream = start_upstream(args.upstream, upstream_port, tmp)
            procs.append(upstream)
            upstreams = [upstream]
            gateway = start_gateway(gateway_port, [upstream_port], key, tmp, args.gateway_workers)
            procs.append(gateway)
            targets = [
                Target("upstream direct", f"http://127.0.0.1:{upstream_port}{PATH}", upstream),
                Target("gateway", f"http://127.0.0.1:{gateway_port}{PATH}", gateway),
            ]
            if args.baseline:
                port = free_port()
                baseline = start_gateway(
                    port, [upstream_port], key, tmp, args.gateway_workers, source=args.baseline, name="baseline"
                )
                procs.append(baseline)
                targets.append(Target("gateway (baseline)", f"http://127.0.0.1:{port}{PATH}", baseline))
            if args.replicas > 1:
                ports = [upstream_port]
                for i in range(1, args.replicas):
                    ports.append(free_port())
                    upstreams.append(start_upstream(args.upstream, ports[-1], tmp, name=f"upstream-{i + 1}"))
                    procs.append(upstreams[-1])
                port = free_port()
                spread = start_gateway(port, ports, key, tmp, args.gateway_workers, name="gateway-replicas")
                procs.append(spread)
                targets.append(Target(f"gateway, {args.replicas} replicas", f"http://127.0.0.1:{port}{PATH}", spread))
            nginx = None if args.no_nginx else start_nginx(nginx_port, upstream_port, tmp)
            if nginx is not None:
                procs.append(nginx)
                targets.append(Target("nginx", f"http://127.0.0.1:{nginx_port}{PATH}", nginx))
            else:
                skipped.append(
                    "nginx: skipped ("
                    + ("--no-nginx" if args.no_nginx else "not installed; `apt-get install -y nginx`")
                    + ")"
                )

            # The gateway must really be proxying before we time it.
            for target in targets[1:]:
                wait_http(target.url, headers={"Authorization": f"Bearer {key}"})
            for target in targets:
                print(f"warming up {target.name} ...", file=sys.stderr)
                load(target.url, key, args.connections, args.warmup)
            for rep in range(args.repeat):
                order = targets[rep % len(targets) :] + targets[: rep % len(targets)]
                for target in order:
                    run = measure(target, load, key, args.connections, args.duration, upstreams)
                    target.runs.append(run)
                    print(
                        f"run {rep + 1}/{args.repeat} {target.name:16s} {run.rps:9,.0f} req/s  "
                        f"p50 {run.p50_ms:6.2f} ms  p99 {run.p99_ms:6.2f} ms  "
                        f"other load {100 * (run.foreign_cpu or 0):3.0f}%",
                        file=sys.stderr,
                    )
        finally:
            for proc in reversed(procs):
                proc.stop()

    text = report(targets, args, loadgen, skipped)
    print("\n## Gateway\n")
    print(text)
    if args.json:
        args.json.write_text(
            json.dumps({t.name: [run.__dict__ for run in t.runs] for t in targets} | {"machine": machine()}, indent=2)
        )


if __name__ == "__main__":
    main()
