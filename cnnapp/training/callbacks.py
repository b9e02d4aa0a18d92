"""The one callback list every model trains with."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import keras

from cnnapp.config import TrainConfig

log = logging.getLogger(__name__)


def build_callbacks(config: TrainConfig, run_dir: Path, *, resuming: bool) -> list[keras.callbacks.Callback]:
    """Early stopping (best weights restored), best checkpoint, BackupAndRestore, CSV log,
    TensorBoard and a plateau learning-rate schedule."""
    mode = "max" if "acc" in config.monitor else "min"
    return [
        # A killed run resumes from the last finished epoch when the same command is run again.
        keras.callbacks.BackupAndRestore(str(run_dir / "backup")),
        keras.callbacks.EarlyStopping(monitor=config.monitor, mode=mode, patience=config.patience,
                                      restore_best_weights=True, verbose=1),
        keras.callbacks.ModelCheckpoint(str(run_dir / "best.keras"), monitor=config.monitor, mode=mode,
                                        save_best_only=True),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=config.lr_patience,
                                          min_lr=1e-5, verbose=1),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=resuming),
        keras.callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard"), write_graph=False),
    ]


def progress_verbosity(config: TrainConfig) -> int:
    """Keras's progress bar on a terminal, one line per epoch in logs and CI."""
    if config.verbose is not None:
        return config.verbose
    return 1 if sys.stdout.isatty() else 2


class EpochTimer(keras.callbacks.Callback):
    """Wall seconds per epoch, for throughput in metrics.json and the benchmarks."""

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        import time
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        import time
        self.seconds.append(time.perf_counter() - self._start)
