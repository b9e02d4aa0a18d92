"""Data sources: each turns what the user has into in-memory `Splits` plus class names.

Data flows one way: a source here -> `cnnapp.preprocessing` (Keras layers, in tf.data and in the
export) -> a model from `cnnapp.models` -> `cnnapp.training` -> `cnnapp.export`. A source never
normalises or augments; it only reads, checks and splits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from cnnapp.errors import CnnappError

log = logging.getLogger(__name__)


@dataclass
class Splits:
    """Train / validation / test arrays and the class names they index.

    Images are uint8 arrays of shape [N, H, W, C]; sentences are 1-D object arrays of str.
    Labels are int64 class indices into `class_names`. `test` may be absent (then the validation
    split is reported as the held-out set). `description` says where each split came from, for
    the run log and metrics.json.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    class_names: list[str]
    description: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def counts(self) -> dict:
        return {
            "train": int(len(self.y_train)),
            "validation": int(len(self.y_val)),
            "test": int(len(self.y_test)) if self.y_test is not None else 0,
        }


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, held_out): `fraction` of every class held out, seeded and repeatable."""
    rng = np.random.default_rng(seed)
    keep, held = [], []
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        rng.shuffle(idx)
        n_held = int(round(len(idx) * fraction))
        if len(idx) > 1:
            n_held = min(max(n_held, 1), len(idx) - 1)
        else:
            n_held = 0
        held.append(idx[:n_held])
        keep.append(idx[n_held:])
    keep_idx, held_idx = np.concatenate(keep), np.concatenate(held)
    rng.shuffle(keep_idx)
    rng.shuffle(held_idx)
    return keep_idx, held_idx


def make_splits(
    x_train, y_train, class_names, *, x_test=None, y_test=None, x_val=None, y_val=None,
    validation_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 1337,
    description: dict | None = None,
) -> Splits:
    """Complete the missing splits with seeded stratified hold-outs and check the labels.

    - no validation: `validation_fraction` of train is held out for early stopping;
    - no test either: `test_fraction` of the data is held out first, so the reported accuracy
      is on data that neither trained nor selected the model.
    """
    description = {k: v for k, v in (description or {}).items() if v is not None}
    y_train = np.asarray(y_train, dtype=np.int64)
    check_classes(y_train, class_names)
    if x_test is None and x_val is None and test_fraction > 0:
        keep, held = stratified_split(y_train, test_fraction, seed)
        x_test, y_test = x_train[held], y_train[held]
        x_train, y_train = x_train[keep], y_train[keep]
        description.setdefault("test", f"seeded stratified {test_fraction:.0%} of the data (seed {seed})")
    if x_val is None:
        keep, held = stratified_split(y_train, validation_fraction, seed + 1)
        x_val, y_val = x_train[held], y_train[held]
        x_train, y_train = x_train[keep], y_train[keep]
        description.setdefault(
            "validation", f"seeded stratified {validation_fraction:.0%} of train (seed {seed + 1})")
    splits = Splits(
        x_train=x_train, y_train=y_train,
        x_val=x_val, y_val=np.asarray(y_val, dtype=np.int64),
        x_test=x_test, y_test=None if y_test is None else np.asarray(y_test, dtype=np.int64),
        class_names=[str(c) for c in class_names], description=description,
    )
    if len(splits.y_val) == 0:
        raise CnnappError(
            f"too little data to hold out a validation split: {len(splits.y_train)} training examples.")
    return splits


def check_classes(y: np.ndarray, class_names) -> None:
    """At least two classes, and every label indexes a class name."""
    present = np.unique(y)
    if len(class_names) < 2 or len(present) < 2:
        raise CnnappError(
            "a classifier needs at least 2 classes. "
            f"Received: {len(present)} class(es) in the data: {list(class_names)[:5]}")
    if present.min() < 0 or present.max() >= len(class_names):
        raise CnnappError(
            f"labels must be 0..{len(class_names) - 1}. Received: labels {present.min()}..{present.max()}")
