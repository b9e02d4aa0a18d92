"""The one callback list every model trains with."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
from pathlib import Path

import keras

from cnnapp.atomic import save_model_atomically, write_atomically
from cnnapp.config import TrainConfig
from cnnapp.training.recipe import WallClock

log = logging.getLogger(__name__)


def build_callbacks(config: TrainConfig, run_dir: Path, *, resuming: bool,
                    backup_dir: Path | None = None, keep_backup: bool = False) -> list[keras.callbacks.Callback]:
    """Early stopping (best weights restored unless `config.restore_best` is False), best checkpoint, BackupAndRestore, CSV log,
    TensorBoard and a learning-rate schedule (`config.lr_schedule`: halve on a val_loss plateau,
    or cosine decay over the epochs); with `config.ema`, the weights' moving average is what is
    validated, checkpointed and restored. `backup_dir` defaults to run_dir/backup (one per worker under
    multi-worker training); with `keep_backup`, the backup outlives the training (a run that exports
    removes it once the export is written, so a failed export is redone without training). best.keras,
    history.csv and the backup are written atomically (`cnnapp.atomic`)."""
    mode = "max" if "acc" in config.monitor else "min"
    # restore_best False (photo folders: their validation split is a few dozen images): the run keeps its
    # last epoch's weights, and best.keras holds those (saved every epoch), so inspect sees the export.
    restore = config.restore_best is not False
    if config.lr_schedule == "cosine":
        schedule = [CosineDecay(config.epochs)]
    elif config.lr_schedule == "plateau":
        schedule = [keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=config.lr_patience,
                                                      min_lr=1e-5, verbose=1)]
    elif config.lr_schedule == "onecycle":
        schedule = []   # an in-graph LearningRateSchedule of the optimizer (cnnapp.training.recipe.OneCycle)
    else:
        from cnnapp.errors import CnnappError
        raise CnnappError(f"--lr-schedule: choose plateau, cosine or onecycle. Received: {config.lr_schedule}")
    # With --ema, validation, early stopping and the checkpoint all see the averaged weights (swapped
    # in after BackupAndRestore has saved the raw ones, so a resumed run continues from those).
    ema = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if config.ema else []
    # The clock first, so `wall_seconds` is in the logs every later callback reads (CSVLogger fixes its
    # columns at the first epoch); then the schedule: CosineDecay reads the initial rate before a
    # resume restores it.
    clock = WallClock(offset=wall_clock_offset(run_dir / "history.csv") if resuming else 0.0)
    return [clock] + schedule + [
        # A killed run resumes from the last finished epoch when the same command is run again.
        BackupAndRestore(str(backup_dir or run_dir / "backup"), delete_checkpoint=not keep_backup),
        *ema,
        EarlyStopping(monitor=config.monitor, mode=mode, patience=config.patience,
                      restore_best_weights=restore, verbose=1),
        ModelCheckpoint(str(run_dir / "best.keras"), monitor=config.monitor, mode=mode, save_best_only=restore),
        CSVLogger(str(run_dir / "history.csv"), append=resuming),
        EpochTensorBoard(log_dir=str(run_dir / "tensorboard"), write_graph=False),
    ]


def wall_clock_offset(history_csv: Path) -> float:
    """The wall seconds an interrupted run had reached (its history's last `wall_seconds`)."""
    import csv
    try:
        with history_csv.open() as f:
            rows = [r for r in csv.DictReader(f) if r.get("wall_seconds")]
    except OSError:
        return 0.0
    return float(rows[-1]["wall_seconds"]) if rows else 0.0


class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras BackupAndRestore whose failure to restore (a backup of another model) is one line.

    `cnnapp.training.loop.claim_backup` refuses a backup of other settings before training; this
    catches what a fingerprint cannot: a backup written before fingerprints, or a damaged file.
    """

    def _save_model(self):
        """As Keras saves it, but built in memory and then written to a temporary file renamed into place:
        a full disk leaves the previous epoch's backup whole (h5py writing straight to a full disk
        leaves a broken file and can crash the process) and raises a plain OSError."""
        try:
            from keras.src.saving import saving_lib
            saving_lib.H5IOStore, saving_lib._save_state   # Keras internals (3.15): else Keras's own way
        except (ImportError, AttributeError):
            return super()._save_model()
        buffer = io.BytesIO()
        store = saving_lib.H5IOStore(buffer, mode="w")
        saving_lib._save_state(self.model, weights_store=store, assets_store=None, inner_path="",
                               visited_saveables=set())
        store.close()
        os.makedirs(self.backup_dir, exist_ok=True)
        write_atomically(self._weights_path, buffer.getvalue())
        write_atomically(self._training_metadata_path,
                         json.dumps({"epoch": self._current_epoch, "batch": self._last_batch_seen}).encode())

    def on_train_begin(self, logs=None):
        try:
            super().on_train_begin(logs)
        except (ValueError, OSError, KeyError) as e:
            from cnnapp.errors import CnnappError
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
            raise CnnappError(f"--fresh: the backup in {self.backup_dir} does not fit this model ({reason}); add "
                              f"--fresh to discard it and start over, or choose another --name. "
                              f"Received: {self.backup_dir}") from None


class CosineDecay(keras.callbacks.Callback):
    """Per epoch, the rate follows half a cosine from the optimizer's initial rate to 1% of it.

    Epoch e of E uses base * (0.01 + 0.99 * (1 + cos(pi * e / E)) / 2); a resumed run continues
    the same curve, because the base is read before BackupAndRestore restores the optimizer.
    """

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs, self.base = epochs, None

    def on_train_begin(self, logs=None):
        if self.base is None:
            self.base = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def rate(self, epoch: int) -> float:
        import math
        return self.base * (0.01 + 0.99 * (1 + math.cos(math.pi * epoch / max(self.epochs, 1))) / 2)

    def on_epoch_begin(self, epoch, logs=None):
        self.model.optimizer.learning_rate.assign(self.rate(epoch))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:  # in history.csv and TensorBoard, as ReduceLROnPlateau does
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


class _LowerLossBreaksTies:
    """On a tie of the monitored accuracy, the epoch with the lower val_loss wins.

    Small dev sets tie often (40 demo sentences reach 100% by epoch 2), and plain Keras keeps the
    first epoch of a tie: an undertrained model with timid probabilities.
    """

    _epoch_loss = None
    _best_loss = float("inf")

    def on_epoch_end(self, epoch, logs=None):
        self._epoch_loss = (logs or {}).get("val_loss")
        super().on_epoch_end(epoch, logs)

    def _is_improvement(self, monitor_value, reference_value):
        better = super()._is_improvement(monitor_value, reference_value)
        tie = (not better and "loss" not in self.monitor and self._epoch_loss is not None
               and float(monitor_value) == float(reference_value) and self._epoch_loss < self._best_loss)
        if (better or tie) and self._epoch_loss is not None:
            self._best_loss = self._epoch_loss
        return better or tie


class EarlyStopping(_LowerLossBreaksTies, keras.callbacks.EarlyStopping):
    """Keras EarlyStopping whose ties on accuracy go to the lower validation loss."""


class ModelCheckpoint(_LowerLossBreaksTies, keras.callbacks.ModelCheckpoint):
    """Keras ModelCheckpoint whose ties on accuracy go to the lower validation loss, and whose file is
    saved to a temporary name and renamed over the last one: a full disk leaves the previous best whole."""

    def _save_model(self, epoch, batch, logs):
        filepath = self._get_file_path(epoch, batch, logs)
        if self.save_weights_only or not str(filepath).endswith(".keras"):
            return super()._save_model(epoch, batch, logs)
        if self._should_save_model(epoch, batch, logs, filepath):
            os.makedirs(os.path.dirname(filepath) or ".", exist_ok=True)
            save_model_atomically(self.model, filepath)
            if self.verbose > 0:
                log.info("epoch %d: saved the model to %s", epoch + 1, filepath)


class CSVLogger(keras.callbacks.CSVLogger):
    """Keras CSVLogger (the same columns and rows) whose every epoch's row is an atomic rewrite of the
    file: the rows so far are kept in memory, written to a temporary file and renamed. A full disk
    leaves the history of the epochs before, never an empty or half-written file."""

    def on_train_begin(self, logs=None):
        before = ""
        if self.append and os.path.exists(self.filename):
            with open(self.filename, encoding="utf-8", newline="") as f:
                before = f.read()
            self.append_header = not before.strip()
        self.csv_file = io.StringIO(before, newline="")
        self.csv_file.seek(0, io.SEEK_END)
        self.writer, self.keys = None, None

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        write_atomically(self.filename, self.csv_file.getvalue())


def progress_verbosity(config: TrainConfig) -> int:
    """Keras's progress bar on a terminal, one line per epoch in logs and CI."""
    if config.verbose is not None:
        return config.verbose
    return 1 if sys.stdout.isatty() else 2


class EpochHeartbeat(keras.callbacks.Callback):
    """Where Keras prints one line per epoch (logs, CI), a line every `every` seconds inside a long epoch
    (steps done, rate, ETA), so a first epoch that decodes 25,000 photos is not minutes of silence."""

    async_safe = True

    def __init__(self, every: float = 10.0):
        super().__init__()
        self.every = every

    def on_epoch_begin(self, epoch, logs=None):
        import time
        self.epoch, self.start = epoch, time.monotonic()
        self.last = self.start

    def on_train_batch_end(self, batch, logs=None):
        import time
        now = time.monotonic()
        if now - self.last < self.every:
            return
        self.last = now
        total = self.params.get("steps") if self.params else None
        done = batch + 1
        rate = done / max(now - self.start, 1e-9)
        eta = f", ETA {int((total - done) / rate)}s" if total and rate > 0 else ""
        logging.getLogger("cnnapp.progress").info(
            "epoch %d: %s%s steps, %.1f steps/s%s", self.epoch + 1, done, f"/{total}" if total else "", rate, eta)


class EpochTimer(keras.callbacks.Callback):
    """Wall seconds per epoch, for throughput in metrics.json and the benchmarks, and the seconds from the
    process's start to the end of its first training step (`first_step_seconds`: listing, checking, model
    build, tracing and the first batches' decoding together). Its batch hook is safe for Keras's
    asynchronous batch-end dispatch, so it costs the steps nothing."""

    async_safe = True

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []
        self.first_step_seconds: float | None = None

    def on_train_batch_end(self, batch, logs=None):
        if self.first_step_seconds is None:
            import time

            import psutil
            self.first_step_seconds = round(time.time() - psutil.Process().create_time(), 2)

    def on_epoch_begin(self, epoch, logs=None):
        import time
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        import time
        self.seconds.append(time.perf_counter() - self._start)


class EpochTensorBoard(keras.callbacks.TensorBoard):
    """TensorBoard that logs per epoch only and stays out of the training steps.

    With update_freq="epoch", Keras 3.15's TensorBoard still runs after every batch: it calls
    tf.summary.scalar for each metric (into no writer) and, because it overrides the batch hooks,
    it turns off Keras's asynchronous batch-end dispatch. That cost about 10-20 ms a step on the
    2-core CPU, ~20% of a Fashion-MNIST step for the keras-io net (docs/bench/image.md). The
    batch hooks only serve update_freq=<int> and profiling, which cnnapp does not use.
    """

    on_train_batch_begin = keras.callbacks.Callback.on_train_batch_begin
    on_train_batch_end = keras.callbacks.Callback.on_train_batch_end
