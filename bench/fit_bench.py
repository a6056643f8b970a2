"""Portfolio model fits on a million customers: ours against `lifetimes`, side by side.

Generates a seeded customer base (`bench/portfolio_data.py`: a BG/NBD purchase process
with Gamma-Gamma spend, 1,000,000 customers, ~10,000,000 transactions), summarises it in
weeks, and times on the same (x, t_x, T):

- our BG/NBD fit (`services.identify.analysis.fit_bgnbd`), median of `--repeats` runs;
- `lifetimes` 0.11.3 `BetaGeoFitter.fit`, median of `--lifetimes-repeats` runs, in its own
  throwaway virtualenv (`--lifetimes-venv`, created on first use with `pip install
  lifetimes`; never a dependency of ours) reading the same data from an .npz file;
- our Pareto/NBD and Gamma-Gamma fits (and lifetimes' GammaGammaFitter), and scoring
  everyone: P(alive) and a 52-week predictive CLV.

Target (issue 3): our BG/NBD fit at least 20x faster than lifetimes' on the same data.
Run: `.venv/bin/python -m bench.fit_bench` (options: --help).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.portfolio_data import generate
from services.identify.analysis import (
    WEEK,
    bgnbd_probability_alive,
    fit_bgnbd,
    fit_gamma_gamma,
    fit_pareto_nbd,
    mean_repeat_spend,
    predictive_clv,
    rfm_summary,
)

ROOT = Path(__file__).resolve().parent.parent
LIFETIMES_VENV = Path(tempfile.gettempdir()) / "valuechain-bench-lifetimes"
TARGET = 20.0

# Runs inside the lifetimes virtualenv: fit on the saved arrays, print timings and estimates as JSON.
LIFETIMES_SCRIPT = r"""
import json, statistics, sys, time, warnings
warnings.filterwarnings("ignore")
import numpy as np, pandas as pd, lifetimes
from lifetimes import BetaGeoFitter, GammaGammaFitter
data = np.load(sys.argv[1])
repeats = int(sys.argv[2])
x, t_x, T = (pd.Series(data[name]) for name in ("x", "t_x", "T"))
times, fitter = [], None
for _ in range(repeats):
    started = time.perf_counter()
    fitter = BetaGeoFitter().fit(x, t_x, T)
    times.append(time.perf_counter() - started)
repeat = (data["x"] > 0) & (data["mean_spend"] > 0)
started = time.perf_counter()
spend = GammaGammaFitter().fit(x[repeat], pd.Series(data["mean_spend"])[repeat])
gg = time.perf_counter() - started
print(json.dumps({"version": lifetimes.__version__, "numpy": np.__version__, "pandas": pd.__version__,
                  "bgnbd_times": times, "bgnbd": {k: float(v) for k, v in fitter.params_.items()},
                  "gamma_gamma_time": gg, "gamma_gamma": {k: float(v) for k, v in spend.params_.items()}}))
"""


def timed(function, repeats: int):
    """(result of the last run, every run's seconds)."""
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return result, times


def lifetimes_python(venv: Path) -> Path:
    """The lifetimes virtualenv's python, creating the virtualenv on first use."""
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} with lifetimes (once)", flush=True)
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "lifetimes"], check=True)
    return python


def run_lifetimes(data: Path, repeats: int, venv: Path) -> dict:
    try:
        python = lifetimes_python(venv)
    except subprocess.CalledProcessError as error:
        return {"error": f"could not install lifetimes into {venv}: {error}"}
    done = subprocess.run(
        [str(python), "-c", LIFETIMES_SCRIPT, str(data), str(repeats)], capture_output=True, text=True
    )
    if done.returncode:
        return {"error": f"lifetimes failed: {done.stderr.strip().splitlines()[-1:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def machine() -> str:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()[:10]
    return "\n".join([f"nproc: {os.cpu_count()}; python {platform.python_version()}; numpy {np.__version__}", *lscpu])


def spread(times: list[float]) -> str:
    return f"{statistics.median(times):.3f} | {', '.join(f'{t:.3f}' for t in times)}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=int(os.environ.get("BENCH_REPEATS", "5")))
    parser.add_argument("--lifetimes-repeats", type=int, default=3)
    parser.add_argument("--lifetimes-venv", type=Path, default=LIFETIMES_VENV)
    parser.add_argument("--no-lifetimes", action="store_true")
    args = parser.parse_args(argv)

    print(machine())
    (base, generation) = timed(lambda: generate(args.customers, seed=args.seed), 1)
    print(
        f"\ngenerated {len(base):,} customers, {int(base.transactions.sum()):,} transactions in {generation[0]:.1f} s",
        flush=True,
    )
    x, t_x, T = rfm_summary(base.first_day, base.last_day, base.purchase_days, base.end_day, WEEK)
    mean_spend = mean_repeat_spend(base.total_spend, base.first_day_spend, x)

    bgnbd, bgnbd_times = timed(lambda: fit_bgnbd(x, t_x, T), args.repeats)
    print(f"ours BG/NBD: {bgnbd}", flush=True)
    spend, spend_times = timed(lambda: fit_gamma_gamma(x, mean_spend), args.repeats)
    pareto, pareto_times = timed(lambda: fit_pareto_nbd(x, t_x, T), 1)
    _, alive_times = timed(lambda: bgnbd_probability_alive(bgnbd, x, t_x, T), args.repeats)
    _, clv_times = timed(
        lambda: predictive_clv(bgnbd, spend, x, t_x, T, mean_spend, horizon=52, discount_rate=0.0019), args.repeats
    )

    theirs: dict = {"error": "skipped (--no-lifetimes)"}
    if not args.no_lifetimes:
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "summary.npz"
            np.savez(data, x=x, t_x=t_x, T=T, mean_spend=mean_spend)
            theirs = run_lifetimes(data, args.lifetimes_repeats, args.lifetimes_venv)

    print(f"\nPortfolio model fits, {len(base):,} customers (weeks), seconds\n")
    print("| step | median s | runs |")
    print("|---|---:|---|")
    print(f"| ours: BG/NBD fit | {spread(bgnbd_times)} |")
    if "bgnbd_times" in theirs:
        print(f"| lifetimes {theirs['version']}: BetaGeoFitter.fit | {spread(theirs['bgnbd_times'])} |")
    print(f"| ours: Pareto/NBD fit | {spread(pareto_times)} |")
    print(
        f"| ours: Gamma-Gamma fit ({int(((x > 0) & (mean_spend > 0)).sum()):,} repeat buyers) | {spread(spend_times)} |"
    )
    if "gamma_gamma_time" in theirs:
        print(f"| lifetimes: GammaGammaFitter.fit | {theirs['gamma_gamma_time']:.3f} | 1 run |")
    print(f"| ours: P(alive), everyone | {spread(alive_times)} |")
    print(f"| ours: 52-week predictive CLV, everyone | {spread(clv_times)} |")
    print(f"\nours: BG/NBD {bgnbd}\n      Pareto/NBD {pareto}\n      Gamma-Gamma {spend}")
    if "bgnbd_times" in theirs:
        ratio = statistics.median(theirs["bgnbd_times"]) / statistics.median(bgnbd_times)
        print(
            f"lifetimes (numpy {theirs['numpy']}, pandas {theirs['pandas']}): BG/NBD {theirs['bgnbd']}, "
            f"Gamma-Gamma {theirs['gamma_gamma']}"
        )
        verdict = "met" if ratio >= TARGET else "missed"
        print(f"\n**BG/NBD fit: ours {ratio:.0f}x faster than lifetimes** (target >= {TARGET:.0f}x: {verdict})")
    else:
        print(f"\nlifetimes: {theirs['error']}")


if __name__ == "__main__":
    main()
