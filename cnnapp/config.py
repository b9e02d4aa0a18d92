"""Configuration as frozen dataclasses of plain values, and the defaults that depend on the task.

The CLI builds these from its options; the library takes them as arguments (no hidden environment
reads: TF_CONFIG is read at the edge and travels here as `TrainConfig.cluster`); the resolved
config is written to every run directory as config.json. A model's own defaults live in its
factory's keyword arguments (`cnnapp.models`), not here.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

# Sentence preprocessing (cnnapp.tasks.sentences and the CLI read these; no TensorFlow here).
STANDARDIZE = ("kim", "kim_sst", "lower", "lower_and_strip_punctuation", "none")
STANDARDIZE_DEFAULT = "kim"
MAX_TOKENS_DEFAULT = 30000
MAX_DEFAULT_LENGTH = 400                  # the data-driven sequence length is capped here
OPTIMIZERS = ("adam", "adamw", "adadelta", "sgd", "rmsprop")

# Training defaults that differ by kind of data; None in TrainConfig means "the task's".
TASK_DEFAULTS = {
    # batch_size None: `default_batch_size(len(train))`
    # one-cycle + label smoothing 0.1 (+ the data's flips and flip TTA): Fashion-MNIST 92.74% -> 93.25% (docs/bench/image.md)
    # cpu_bfloat16: `--precision auto` trains in mixed_bfloat16 on CPUs with native bfloat16 (the keras-io
    # network 1.2-2.4x the images/s of float32 there; the sentence CNN gained nothing: docs/bench/image.md)
    "image": {"epochs": 20, "batch_size": None, "lr_schedule": "onecycle", "label_smoothing": 0.1,
              "cpu_bfloat16": True, "restore_best": True},
    # Kim's mini-batch of 50
    "text": {"epochs": 15, "batch_size": 50, "lr_schedule": "plateau", "label_smoothing": 0.0,
             "cpu_bfloat16": False, "restore_best": True},
}
LR_SCHEDULES = ("plateau", "cosine", "onecycle")
CLASS_WEIGHTS = ("balanced",)


def default_batch_size(num_train: int) -> int:
    """128, or less for small data so an epoch has at least ~20 steps (a power of two, >= 16).

    Batch norm's moving statistics and Adam both need steps: 400 photos at batch 128 are 3 steps
    an epoch, and such a run never left chance (docs/bench/image.md).
    """
    batch = 128
    while batch > 16 and num_train / batch < 20:
        batch //= 2
    return batch


@dataclass(frozen=True)
class TrainConfig:
    """What the shared run path needs, for any model and data kind."""

    name: str | None = None               # None: the data's name
    epochs: int | None = None             # None: TASK_DEFAULTS
    batch_size: int | None = None         # per replica; None: TASK_DEFAULTS (images: by the data size)
    learning_rate: float | None = None    # None: the optimizer's default
    optimizer: str = "adam"
    seed: int = 1337
    deterministic: bool = False           # tf.config.experimental.enable_op_determinism()
    patience: int | None = None           # early stopping on the validation metric; None: 6 (> 2 x lr_patience),
                                          # or the whole run under onecycle (best weights still restored)
    restore_best: bool | None = None      # at the end, restore the epoch with the best validation score (else keep
                                          # the last epoch's weights); None: the task's, or the data's preset
    lr_schedule: str | None = None        # plateau (halve on a val_loss plateau) | cosine | onecycle; None: the task's
    label_smoothing: float | None = None  # None: the task's
    class_weight: str | None = None       # "balanced": each class weighs n / (k * count) in the loss; None: all 1
    tta: str | None = None                # test-time augmentation (flip | none), in evaluation and the export; None: the data's
    accuracy_levels: tuple = (0.8, 0.9, 0.95)   # metrics.json: wall seconds to first reach each (val accuracy)
    lr_patience: int = 2                  # ReduceLROnPlateau
    ema: float = 0.0                      # > 0: weights averaged with this momentum (Polyak); validated and kept
    ensemble: int = 1                     # > 1: train this many members (seeds seed, seed+1, ...) and average them
    cv: int | None = None                 # K-fold cross-validation instead of a held-out test split
    repeats: int = 1                      # under cv: seeds seed, seed+1, ... ; mean (min, max)
    export_fold: int | None = None        # under cv: export this fold's model (first seed)
    steps_per_execution: int = 32         # training steps per call into the graph (less Python per step)
    monitor: str = "val_accuracy"
    strategy: str = "auto"                # auto | default | mirrored | multi-worker
    precision: str = "auto"               # auto | float32 | mixed_float16 | mixed_bfloat16
    cpu_bfloat16: bool | None = None      # what `auto` means on a CPU with native bfloat16; None: the task's
    jit: str = "auto"                     # auto | on | off
    run_dir: str = "runs"
    export_base: str = "saved_models"
    export: bool = True
    litert: str = "float"                 # the LiteRT model beside the export: float | int8 (dynamic range) | none
    fresh: bool = False                   # discard the backup of an interrupted run instead of resuming it
    verbose: int | None = None            # None: progress bar on a terminal, one line per epoch otherwise
    cluster: dict | None = None           # the parsed TF_CONFIG of a multi-worker cluster (read by the CLI)
    dump_weights_dir: str | None = None   # test hook: each worker saves its final weights here
    cache: str | None = None              # decoded files: memory | disk | none | a folder (disk there); None: by size
    memory_budget: int | None = None      # bytes of data cached in memory; None: 1/32 of the machine's memory

    @property
    def reads_validation(self) -> bool:
        """Whether anything in the run acts on the validation score (on a config resolved by `for_task`):
        restoring the best epoch, stopping early, or a plateau schedule. A run that keeps its last epoch
        of a one-cycle schedule followed to its end reads none of it, so its validation data may be the
        held-out test part, shown but never chosen on."""
        return not (self.restore_best is False and self.lr_schedule == "onecycle"
                    and (self.patience or 0) >= (self.epochs or 0))

    def for_task(self, kind: str, num_train: int, preset: dict | None = None) -> "TrainConfig":
        """Fill the task-dependent defaults (a data source's `preset` of them first)."""
        defaults = {**TASK_DEFAULTS[kind], **(preset or {})}
        batch = self.batch_size or defaults["batch_size"] or default_batch_size(num_train)
        epochs = self.epochs or defaults["epochs"]
        schedule = self.lr_schedule or defaults["lr_schedule"]
        # One-cycle's validation score dips while the rate is high and climbs as it anneals: stopping
        # on a plateau mid-cycle cut a cats-vs-dogs run from 74% to 62.5%.
        patience = self.patience or (epochs if schedule == "onecycle" else 6)
        restore_best = self.restore_best
        if restore_best is None:
            # A preset may keep the last epoch (photo folders: picking the "best" epoch on a few dozen validation
            # images is noise), but only for a run that follows one-cycle to its annealed end; a run that may stop
            # mid-schedule restores its best epoch.
            runs_to_end = schedule == "onecycle" and patience >= epochs
            restore_best = defaults["restore_best"] or not runs_to_end
        return dataclasses.replace(
            self, epochs=epochs, batch_size=batch, patience=patience,
            lr_schedule=schedule,
            cpu_bfloat16=defaults["cpu_bfloat16"] if self.cpu_bfloat16 is None else self.cpu_bfloat16,
            restore_best=restore_best,
            label_smoothing=defaults["label_smoothing"] if self.label_smoothing is None else self.label_smoothing)


@dataclass(frozen=True)
class ModelChoice:
    """A registered model and only the options the user set; the factory owns every other default."""

    name: str | None = None               # None: the kind's default (cnnapp.models.DEFAULT_MODEL)
    options: dict = field(default_factory=dict)


def to_dict(*configs: Any, **extra: Any) -> dict:
    """Merge dataclass configs into one JSON-ready dict (tuples become lists)."""
    out: dict[str, Any] = {}
    for cfg in configs:
        out[type(cfg).__name__] = dataclasses.asdict(cfg)
    out.update(extra)
    return json.loads(json.dumps(out, default=str))
