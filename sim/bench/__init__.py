"""`python -m sim.bench`: what a study costs, and why (core: the sections and the command; agreement:
the batched rows against the reference; baseline: the naive yardstick; matching: the matcher at
scale; process: measurements in fresh processes). Kept apart from the tests: no timing is asserted."""
