"""One answer of `predict`, whichever runtime computed it (no TensorFlow here)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Prediction:
    input: str
    classes: list[str] | None = None
    scores: list[float] | None = None
    error: str | None = None

    def top(self, k: int) -> list[tuple[str, float]]:
        order = np.argsort(self.scores)[::-1][:k]
        return [(self.classes[i], float(self.scores[i])) for i in order]
