"""`python -m sim.sensitivity`: the command lives in sim.cli.sensitivity; this name keeps the command short."""

from sim.cli.sensitivity import main

if __name__ == "__main__":
    raise SystemExit(main())
