"""The paper's analysis settings (conf/method/paper.yaml), read here, low in the package, so that
`python -m sim.match` takes its defaults without importing the API (pandas, Hydra) it does not need."""

from __future__ import annotations

from importlib import resources
from typing import Any

__all__ = ["paper_method"]


def paper_method() -> dict[str, Any]:
    """The paper's analysis settings (conf/method/paper.yaml): the one source of their defaults."""
    import yaml

    text = resources.files("sim.conf").joinpath("method", "paper.yaml").read_text()
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
