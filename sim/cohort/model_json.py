"""The cohort model as JSON: what the package ships (sim/cohort/snapshots/) and the calibration
cache holds, read back without unpickling (loading runs no code a file names).

Exact: every number comes back as it was, to the bit and of the same type (a NaN as the quiet NaN).
A float is written as Python's shortest repr, which reads back as the same double (-0.0 too; a
non-finite one is {"@float": "nan" | "inf" | "-inf"}); a numpy float64 scalar is {"@float64": x}; an array is
{"@array": {"dtype", "shape", "data"}} with its values in C order; a tuple is a JSON list (a list
is {"@list": [...]}); a dataclass of the model (sim.cohort.model, scales, attrition) is
{"@CovariateModel": {field: value, ...}}, built by its class, which is looked up among those
modules' dataclasses only; a dict keeps its (string) keys, none starting with "@".
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np

from sim.cohort import attrition as A
from sim.cohort import model as M
from sim.cohort import scales as S

FORMAT = "sim.cohort.model/1"
SUFFIX = ".json"
CLASSES = {cls.__name__: cls for mod in (M, S, A) for cls in vars(mod).values()
           if isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__module__ == mod.__name__}
ARRAY_DTYPES = ("float64", "int64", "bool")


def _float(x: float) -> Any:
    return x if math.isfinite(x) else {"@float": repr(x)}


def encode(value: Any) -> Any:
    """The JSON value of a model, or of any part of it (module docstring)."""
    if value is None or isinstance(value, (bool, str)) or type(value) is int:
        return value
    if type(value) is float:
        return _float(value)
    if isinstance(value, np.float64):
        return {"@float64": _float(float(value))}
    if isinstance(value, np.ndarray) and str(value.dtype) in ARRAY_DTYPES:
        data = [_float(x) if isinstance(x, float) else x for x in value.ravel().tolist()]
        return {"@array": {"dtype": str(value.dtype), "shape": list(value.shape), "data": data}}
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return [encode(v) for v in value]
    if type(value) is list:
        return {"@list": [encode(v) for v in value]}
    if type(value) is dict:
        if any(not isinstance(k, str) or k.startswith("@") for k in value):
            raise TypeError(f"a model's dict keys are strings not starting with '@': {list(value)}")
        return {k: encode(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and CLASSES.get(type(value).__name__) is type(value):
        return {f"@{type(value).__name__}": {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    raise TypeError(f"the cohort model's JSON holds no {type(value).__module__}.{type(value).__qualname__}")


def decode(value: Any) -> Any:
    """The inverse of `encode`."""
    if isinstance(value, list):
        return tuple(decode(v) for v in value)
    if not isinstance(value, dict):
        return value
    if len(value) == 1 and next(iter(value)).startswith("@"):
        (tag, body), = value.items()
        if tag == "@float":
            return float(body)
        if tag == "@float64":
            return np.float64(decode(body))
        if tag == "@list":
            return [decode(v) for v in body]
        if tag == "@array":
            data = [decode(x) if isinstance(x, dict) else x for x in body["data"]]
            return np.array(data, dtype=body["dtype"]).reshape(body["shape"])
        cls = CLASSES.get(tag[1:])
        if cls is None:
            raise ValueError(f"the cohort model's JSON names no known part: {tag}")
        return cls(**{k: decode(v) for k, v in body.items()})
    return {k: decode(v) for k, v in value.items()}


def dumps(model: M.CohortModel) -> str:
    return json.dumps({"format": FORMAT, "model": encode(model)}, indent=1) + "\n"


def loads(text: str) -> M.CohortModel:
    doc = json.loads(text)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"not a cohort model of format {FORMAT}")
    model = decode(doc["model"])
    if not isinstance(model, M.CohortModel):
        raise ValueError("the file holds no CohortModel")
    return model
