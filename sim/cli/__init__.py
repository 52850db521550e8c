"""The command-line tools: app (the Hydra entry point's compose -> validate -> run), match and
sensitivity (real data: `python -m sim.match`, `python -m sim.sensitivity`), common (their shared
parser and one-line errors)."""
