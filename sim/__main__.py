"""`python -m sim experiment=NAME [key=value ...]`: the Hydra entry point."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig


@hydra.main(version_base=None, config_path="pkg://sim.conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from sim.app import output_dir_and_overrides, run

    code = run(cfg, *output_dir_and_overrides())
    if code:
        sys.exit(code)


if __name__ == "__main__":
    main()
