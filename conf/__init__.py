"""The protocols (Hydra configs), shipped inside the package as `sim.conf` (found as pkg://sim.conf)."""
