"""`python -m valuechain ...` is the same as the `valuechain` console script."""

from valuechain.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
