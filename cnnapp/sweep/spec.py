"""What a sweep varies: a spec file's parameters, checked, as plain values (no keras-tuner here).

A spec is JSON or TOML:

    {"method": "grid", "max_trials": 20,
     "params": {"region_sizes": ["3", "3,4,5"], "feature_maps": [100, 200],
                "dropout": {"min": 0.1, "max": 0.5, "step": 0.1},
                "learning_rate": {"min": 1e-4, "max": 1e-2, "sampling": "log"}}}

A list is a choice; `{min, max[, step][, sampling]}` a range (integers if min, max and step are);
a single value is fixed. Names are the chosen model factory's keywords (`ModelSpec.options()`) or
the training fields in `TRAIN_PARAMS`. An option whose default is a tuple (`region_sizes`) takes
lists or comma strings ("3,4,5"); keras-tuner's choices hold scalars, so such values travel as
their canonical comma string and are decoded back to tuples for the trial (`decode`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from cnnapp.config import CLASS_WEIGHTS, LR_SCHEDULES, OPTIMIZERS
from cnnapp.errors import CnnappError

METHODS = ("grid", "random")
SAMPLINGS = ("linear", "log", "reverse_log")
# TrainConfig fields a trial may vary, with the check of one value (None: fine, else what it must be).
TRAIN_PARAMS = {
    "learning_rate": lambda v: None if _number(v) and v > 0 else "a number > 0",
    "batch_size": lambda v: None if _integer(v) and v >= 1 else "an integer >= 1",
    "epochs": lambda v: None if _integer(v) and v >= 1 else "an integer >= 1",
    "patience": lambda v: None if _integer(v) and v >= 1 else "an integer >= 1",
    "label_smoothing": lambda v: None if _number(v) and 0 <= v < 1 else "a number in [0, 1)",
    "optimizer": lambda v: None if v in OPTIMIZERS else f"one of {', '.join(OPTIMIZERS)}",
    "lr_schedule": lambda v: None if v in LR_SCHEDULES else f"one of {', '.join(LR_SCHEDULES)}",
    "class_weight": lambda v: None if v in CLASS_WEIGHTS + ("none",) else f"one of {', '.join(CLASS_WEIGHTS)}, none",
}


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _integer(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class Param:
    """One swept name: a choice of `values`, an int/float range, or one fixed value."""

    name: str
    kind: str                             # choice | int | float | fixed
    values: tuple = ()                    # choice and fixed (encoded: int lists as "3,4,5")
    min: float | None = None
    max: float | None = None
    step: float | None = None
    sampling: str = "linear"
    int_list: bool = False                # values are tuples of ints (region_sizes, filters)

    def size(self) -> int | None:
        """How many values a grid takes from it (None: a continuous range)."""
        if self.kind in ("choice", "fixed"):
            return len(self.values)
        if self.step is None:
            return int(self.max - self.min) + 1 if self.kind == "int" and self.sampling == "linear" else None
        return len(self.stepped_values())

    def stepped_values(self) -> tuple:
        """The values of a range with a step, max included. keras-tuner's own stepped Float loses its max to
        floating point (0.0..0.5 step 0.1 gives 0.0..0.4), so a stepped range becomes a Choice of these."""
        if self.sampling == "linear":
            count = int(math.floor((self.max - self.min) / self.step + 1e-9)) + 1
            values = [self.min + i * self.step for i in range(count)]
        else:   # log: the step multiplies (reverse_log: the same values, sampled toward max)
            count = int(math.floor(math.log(self.max / self.min, self.step) + 1e-9)) + 1
            values = [self.min * self.step ** i for i in range(count)]
        if self.kind == "int":
            return tuple(int(round(v)) for v in values)
        return tuple(float(f"{v:.10g}") for v in values)

    def describe(self) -> str:
        if self.kind in ("choice", "fixed"):
            return ", ".join(str(v) for v in self.values)
        step = f" step {self.step:g}" if self.step is not None else ""
        sampling = f" ({self.sampling})" if self.sampling != "linear" else ""
        return f"{self.min:g}..{self.max:g}{step}{sampling}"


@dataclass(frozen=True)
class SweepSpec:
    """A user's search space: the method, the parameters, and at most `max_trials` trials."""

    method: str = "grid"
    params: tuple[Param, ...] = ()
    max_trials: int | None = None
    source: str = ""                      # the file it came from

    def grid_size(self) -> int | None:
        sizes = [p.size() for p in self.params]
        return None if any(s is None for s in sizes) else math.prod(sizes)


def read_spec(path: str | Path) -> dict:
    """The raw spec (JSON, or TOML for a .toml file); an unreadable or malformed file is one line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CnnappError(f"--spec: no such file. Received: spec={path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CnnappError(f"--spec: cannot read {path} ({getattr(e, 'strerror', None) or e}). "
                          f"Received: spec={path}") from None
    if path.suffix.lower() == ".toml":
        try:
            import tomllib
        except ImportError:   # Python 3.10
            raise CnnappError(f"--spec: TOML specs need Python 3.11 (tomllib); write it as JSON. "
                              f"Received: spec={path}") from None
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise CnnappError(f"--spec: {path} is not valid TOML ({e}). Received: spec={path}") from None
    else:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise CnnappError(f"--spec: {path} line {e.lineno} column {e.colno} is not valid JSON ({e.msg}). "
                              f"Received: spec={path}") from None
    if not isinstance(raw, dict):
        raise CnnappError(f"--spec: {path} must hold an object with \"params\". Received: {type(raw).__name__}")
    return raw


def parse_spec(raw: dict, *, model_options: dict, model_name: str, source: str = "",
               max_trials: int | None = None) -> SweepSpec:
    """Check a raw spec against the model's options and the training fields; one line per problem.

    `model_options` is `ModelSpec.options()` ({keyword: default}); `max_trials` (the CLI's) wins over
    the file's.
    """
    where = f"--spec: {source}: " if source else "--spec: "
    unknown_keys = sorted(set(raw) - {"method", "max_trials", "params"})
    if unknown_keys:
        raise CnnappError(f"{where}unknown key {unknown_keys[0]!r}; a spec has method, max_trials and params. "
                          f"Received: {unknown_keys[0]}")
    method = raw.get("method", "grid")
    if method not in METHODS:
        raise CnnappError(f"{where}method must be one of {', '.join(METHODS)}. Received: method={method!r}")
    params = raw.get("params")
    if not isinstance(params, dict) or not params:
        raise CnnappError(f"{where}\"params\" must map at least one hyperparameter name to its values. "
                          f"Received: params={params!r}")
    valid = sorted(set(model_options) | set(TRAIN_PARAMS))
    parsed = []
    for name, value in params.items():
        if name not in model_options and name not in TRAIN_PARAMS:
            raise CnnappError(f"{where}unknown hyperparameter {name!r}: {model_name} and training take "
                              f"{', '.join(valid)}. Received: {name}")
        parsed.append(parse_param(name, value, default=model_options.get(name), where=where))
    spec_max = raw.get("max_trials")
    if spec_max is not None and not (_integer(spec_max) and spec_max >= 1):
        raise CnnappError(f"{where}max_trials must be an integer >= 1. Received: max_trials={spec_max!r}")
    spec = SweepSpec(method=method, params=tuple(parsed), max_trials=max_trials or spec_max, source=source)
    if method == "grid":
        for p in spec.params:
            if p.size() is None:
                raise CnnappError(f"{where}{p.name}: a grid needs a step or a list of values for a float range. "
                                  f"Received: {p.name}={params[p.name]!r}")
    elif spec.max_trials is None:
        raise CnnappError(f"{where}random search needs max_trials (in the spec or --max-trials). "
                          f"Received: max_trials=None")
    return spec


def parse_param(name: str, value, *, default=None, where: str = "") -> Param:
    """One spec entry -> a Param; `default` is the factory's default (a tuple makes it an int list)."""
    int_list = isinstance(default, tuple) or (default is None and _looks_like_int_lists(value))
    if isinstance(value, list):
        if not value:
            raise CnnappError(f"{where}{name}: the list of values is empty. Received: {name}=[]")
        values = tuple(_encode(name, v, int_list, where) for v in value)
        values = _one_type(name, values, where)
        if len(set(values)) != len(values):
            raise CnnappError(f"{where}{name}: a value is listed twice. Received: {name}={value!r}")
        _check_train_values(name, values, where)
        return Param(name, "choice", values=values, int_list=int_list)
    if isinstance(value, dict):
        return _parse_range(name, value, where)
    encoded = _encode(name, value, int_list, where)
    _check_train_values(name, (encoded,), where)
    return Param(name, "fixed", values=(encoded,), int_list=int_list)


def _parse_range(name: str, value: dict, where: str) -> Param:
    extra = sorted(set(value) - {"min", "max", "step", "sampling"})
    if extra or "min" not in value or "max" not in value:
        raise CnnappError(f"{where}{name}: a range is {{\"min\", \"max\"[, \"step\"][, \"sampling\"]}}. "
                          f"Received: {name}={value!r}")
    lo, hi, step = value["min"], value["max"], value.get("step")
    sampling = value.get("sampling", "linear")
    if not (_number(lo) and _number(hi)) or (step is not None and not _number(step)):
        raise CnnappError(f"{where}{name}: min, max and step must be numbers. Received: {name}={value!r}")
    if lo > hi:
        raise CnnappError(f"{where}{name}: the range is empty (min > max). Received: {name}={value!r}")
    if sampling not in SAMPLINGS:
        raise CnnappError(f"{where}{name}: sampling must be one of {', '.join(SAMPLINGS)}. "
                          f"Received: sampling={sampling!r}")
    if step is not None and (step <= 0 or (sampling != "linear" and step <= 1)):
        raise CnnappError(f"{where}{name}: step must be > 0 (> 1 for log sampling, where it multiplies). "
                          f"Received: {name}={value!r}")
    if sampling != "linear" and lo <= 0:
        raise CnnappError(f"{where}{name}: {sampling} sampling needs min > 0. Received: {name}={value!r}")
    kind = "int" if all(_integer(v) for v in (lo, hi) + ((step,) if step is not None else ())) else "float"
    for v in (lo, hi):
        _check_train_values(name, (v,), where)
    if name in ("batch_size", "epochs", "patience") and kind != "int":
        raise CnnappError(f"{where}{name}: a range of integers needs integer min, max and step. "
                          f"Received: {name}={value!r}")
    return Param(name, kind, min=lo, max=hi, step=step, sampling=sampling)


def _looks_like_int_lists(value) -> bool:
    values = value if isinstance(value, list) else [value]
    return bool(values) and all(isinstance(v, list) or (isinstance(v, str) and _int_list(v) is not None)
                                for v in values)


def _int_list(text: str) -> tuple[int, ...] | None:
    parts = [p.strip() for p in text.split(",")]
    if not parts or not all(p.isdigit() and int(p) > 0 for p in parts):
        return None
    return tuple(int(p) for p in parts)


def _encode(name: str, value, int_list: bool, where: str):
    """A spec value as keras-tuner holds it: scalars as they are, int lists as "3,4,5"."""
    if value is None:
        raise CnnappError(f"{where}{name}: null is not a value a sweep can hold (use 0 to turn max_norm off). "
                          f"Received: {name}=null")
    if int_list:
        items = value if isinstance(value, list) else ([value] if _integer(value) else None)
        ints = (tuple(items) if items is not None and all(_integer(i) and i > 0 for i in items)
                else _int_list(value) if isinstance(value, str) else None)
        if not ints:
            raise CnnappError(f"{where}{name}: expected positive integers, as a list or \"3,4,5\". "
                              f"Received: {name}={value!r}")
        return ",".join(str(i) for i in ints)
    if isinstance(value, (list, dict)):
        raise CnnappError(f"{where}{name}: expected a number, a string or true/false here. Received: {name}={value!r}")
    return value


def _one_type(name: str, values: tuple, where: str) -> tuple:
    """keras-tuner's Choice holds one type: ints and floats together become floats."""
    kinds = {bool if isinstance(v, bool) else (float if isinstance(v, (int, float)) else type(v)) for v in values}
    if len(kinds) > 1:
        raise CnnappError(f"{where}{name}: the values mix types (numbers, strings, true/false). "
                          f"Received: {name}={list(values)!r}")
    if kinds == {float} and any(isinstance(v, float) for v in values):
        return tuple(float(v) for v in values)
    return values


def _check_train_values(name: str, values, where: str) -> None:
    check = TRAIN_PARAMS.get(name)
    for v in values:
        problem = check(v) if check else None
        if problem:
            raise CnnappError(f"{where}{name}: each value must be {problem}. Received: {name}={v!r}")


def decode(values: dict, int_lists: set[str] | frozenset = frozenset()) -> dict:
    """A trial's keras-tuner values as option values: "3,4,5" -> (3, 4, 5) for int-list names; float
    noise of stepped ranges (0.30000000000000004) rounded away."""
    out = {}
    for name, value in values.items():
        if name in int_lists and isinstance(value, str):
            value = tuple(int(p) for p in value.split(","))
        elif isinstance(value, float):
            value = float(f"{value:.10g}")
        out[name] = value
    return out


def split_values(values: dict) -> tuple[dict, dict]:
    """(model options, training fields) of decoded trial values."""
    return ({k: v for k, v in values.items() if k not in TRAIN_PARAMS},
            {k: None if (k, v) == ("class_weight", "none") else v for k, v in values.items() if k in TRAIN_PARAMS})
