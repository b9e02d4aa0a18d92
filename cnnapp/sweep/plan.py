"""Zhang & Wallace's (2015) staged line search for the sentence CNN, as a built-in sweep plan.

Their "practitioner's guide" tunes one thing at a time and keeps each stage's winner:

    region   one region size, 1..10 (feature maps as given, or the model's 100)
    combos   combinations of sizes near the best one r: (r), (r-1,r), (r,r+1), (r-1,r,r+1), ...
    maps     feature maps per region size: 10, 50, 100, 200, 400, 600
    dropout  0.0 .. 0.5
    max-norm none (0), 1, 3, 5

Each stage is its own keras-tuner project (it resumes on its own) and carries the earlier stages'
winners as fixed values, so a trial's values say everything that was set. Repeated sizes such as
Zhang & Wallace's (7,7,7) are left out: text_cnn has one branch per width (`conv_w7`).
Pure functions: no keras-tuner and no TensorFlow here.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from cnnapp.errors import CnnappError
from cnnapp.sweep.spec import Param

ZW_STAGES = ("region", "combos", "maps", "dropout", "max-norm")
FEATURE_MAPS = (10, 50, 100, 200, 400, 600)
DROPOUTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
MAX_NORMS = (0.0, 1.0, 3.0, 5.0)    # 0: no constraint (text_cnn's `max_norm` is off when falsy)
PLOTS = {"region": ("region_sizes", "region_size.png"), "maps": ("feature_maps", "feature_maps.png")}


@dataclass(frozen=True)
class Stage:
    """One search: what it varies (`params`), on top of `fixed` values (encoded, as keras-tuner holds them)."""

    name: str                             # its keras-tuner project folder in the sweep directory
    params: tuple[Param, ...]
    method: str = "grid"
    max_trials: int | None = None
    fixed: tuple = ()                     # ((name, encoded value), ...) from earlier stages' winners

    @property
    def varied(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def grid_size(self) -> int | None:
        sizes = [p.size() for p in self.params]
        return None if any(s is None for s in sizes) else math.prod(sizes)


def parse_region_range(text: str) -> tuple[int, int]:
    """`--region-range 1-10` -> (1, 10)."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", str(text))
    lo, hi = (int(match.group(1)), int(match.group(2) or match.group(1))) if match else (0, 0)
    if not match or lo < 1 or hi < lo:
        raise CnnappError(f"--region-range: expected A-B with 1 <= A <= B (or one size). Received: {text!r}")
    return lo, hi


def parse_stages(names) -> tuple[str, ...]:
    """`--stages region,maps` -> the named stages, in the plan's order."""
    names = tuple(names or ZW_STAGES)
    unknown = [n for n in names if n not in ZW_STAGES]
    if unknown:
        raise CnnappError(f"--stages: unknown stage {unknown[0]!r}; the zhang-wallace plan has "
                          f"{', '.join(ZW_STAGES)}. Received: {','.join(names)}")
    if not names:
        raise CnnappError("--stages: name at least one stage. Received: ''")
    return tuple(n for n in ZW_STAGES if n in names)


def region_combinations(best: int) -> list[tuple[int, ...]]:
    """Zhang & Wallace's stage 2: combinations of distinct region sizes near the best single size.

    >>> region_combinations(3)
    [(3,), (2, 3), (3, 4), (2, 3, 4), (1, 2, 3), (3, 4, 5), (2, 3, 4, 5), (1, 2, 3, 4)]
    """
    r = best
    candidates = [(r,), (r - 1, r), (r, r + 1), (r - 1, r, r + 1), (r - 2, r - 1, r), (r, r + 1, r + 2),
                  (r - 1, r, r + 1, r + 2), (r - 2, r - 1, r, r + 1)]
    out = []
    for c in candidates:
        if min(c) >= 1 and c not in out:
            out.append(c)
    return out


def sizes_text(sizes) -> str:
    return ",".join(str(s) for s in sizes)


def zhang_wallace_stage(name: str, *, winners: dict, base_options: dict, region_range=(1, 10),
                        max_trials: int | None = None) -> Stage:
    """The stage `name`, given the decoded winners of the stages before it (and the base options)."""
    if name == "region":
        lo, hi = region_range
        param = Param("region_sizes", "choice", values=tuple(str(r) for r in range(lo, hi + 1)), int_list=True)
    elif name == "combos":
        sizes = tuple(winners.get("region_sizes") or base_options.get("region_sizes") or (3, 4, 5))
        best = sorted(sizes)[len(sizes) // 2]    # the single size, or the middle of a combination
        param = Param("region_sizes", "choice", values=tuple(sizes_text(c) for c in region_combinations(best)),
                      int_list=True)
    elif name == "maps":
        param = Param("feature_maps", "choice", values=FEATURE_MAPS)
    elif name == "dropout":
        param = Param("dropout", "choice", values=DROPOUTS)
    elif name == "max-norm":
        param = Param("max_norm", "choice", values=MAX_NORMS)
    else:
        raise CnnappError(f"--stages: unknown stage {name!r}. Received: {name}")
    fixed = tuple((k, sizes_text(v) if isinstance(v, tuple) else v) for k, v in sorted(winners.items())
                  if k != param.name)
    return Stage(name=name, params=(param,), max_trials=max_trials, fixed=fixed)
