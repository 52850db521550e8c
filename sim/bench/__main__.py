"""`python -m sim.bench`: see sim.bench.core."""

from sim.bench.core import main

raise SystemExit(main())
