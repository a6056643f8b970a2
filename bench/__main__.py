"""Run the benchmarks: `python -m bench` runs every `bench/*_bench.py` module's `main()`.

`python -m bench gateway consumer` runs only those (names without `_bench`).
Each module sees a clean `sys.argv`, so it runs with its defaults.
"""

from __future__ import annotations

import importlib
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent


def discover() -> list[str]:
    return sorted(path.stem for path in HERE.glob("*_bench.py"))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any(arg in ("-h", "--help") for arg in argv):
        print(__doc__.strip())
        print(f"\nbenchmarks: {', '.join(discover())}")
        return 0
    wanted = {name.removesuffix("_bench") for name in argv}
    modules = [name for name in discover() if not wanted or name.removesuffix("_bench") in wanted]
    unknown = wanted - {name.removesuffix("_bench") for name in discover()}
    if unknown:
        print(f"no such benchmark: {', '.join(sorted(unknown))}; have: {', '.join(discover())}", file=sys.stderr)
        return 2
    failed = []
    saved_argv = sys.argv
    for name in modules:
        print(f"\n=== bench.{name} ===", flush=True)
        started = time.monotonic()
        sys.argv = [f"bench.{name}"]
        try:
            importlib.import_module(f"bench.{name}").main()
        except Exception:  # report and go on with the others
            traceback.print_exc()
            failed.append(name)
        finally:
            sys.argv = saved_argv
        print(f"=== bench.{name}: {time.monotonic() - started:.0f} s ===", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
