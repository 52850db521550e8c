"""`python -m sim.weight`: the command lives in sim.cli.weight; this name keeps the command short."""

from sim.cli.weight import main

if __name__ == "__main__":
    raise SystemExit(main())
