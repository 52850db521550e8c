"""`python -m sim.match`: the command lives in sim.cli.match; this name keeps the command short."""

from sim.cli.match import main

if __name__ == "__main__":
    raise SystemExit(main())
