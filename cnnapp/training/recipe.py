"""The training recipe: optimizers, the loss (label smoothing, class weights), a one-cycle learning
rate, test-time augmentation views, and the wall time at which validation accuracy first reached given
levels (time to accuracy).

One-cycle (Smith & Topin 2017, as airbench and fast.ai use it): the rate rises linearly from
peak/25 to the peak over the first 25% of the steps, then follows half a cosine down to peak/1e4.
It is a `LearningRateSchedule` computed in the graph from the optimizer's step counter, so it costs
nothing per step, and a resumed run (BackupAndRestore restores the counter) continues the curve.
"""

from __future__ import annotations

import math
import time

import keras
import numpy as np

from cnnapp.config import CLASS_WEIGHTS, OPTIMIZERS as OPTIMIZER_NAMES
from cnnapp.errors import CnnappError


@keras.saving.register_keras_serializable(package="cnnapp")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    def __init__(self, peak: float, total_steps: int, warmup: float = 0.25, start_div: float = 25.0,
                 end_div: float = 1e4):
        self.peak, self.total_steps, self.warmup = float(peak), int(max(total_steps, 1)), float(warmup)
        self.start_div, self.end_div = float(start_div), float(end_div)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warm = max(self.warmup * self.total_steps, 1.0)
        start, end = self.peak / self.start_div, self.peak / self.end_div
        rising = start + (self.peak - start) * step / warm
        progress = keras.ops.clip((step - warm) / max(self.total_steps - warm, 1.0), 0.0, 1.0)
        falling = end + (self.peak - end) * 0.5 * (1.0 + keras.ops.cos(math.pi * progress))
        return keras.ops.where(step < warm, rising, falling)

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps, "warmup": self.warmup,
                "start_div": self.start_div, "end_div": self.end_div}


@keras.saving.register_keras_serializable(package="cnnapp")
class SparseSmoothedCrossentropy(keras.losses.Loss):
    """Cross-entropy on integer labels with label smoothing (Szegedy et al. 2016): the target puts
    1 - s on the true class and s spread over all classes. Keras's sparse loss has no smoothing."""

    def __init__(self, smoothing: float = 0.1, name: str = "sparse_smoothed_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.smoothing = float(smoothing)

    def call(self, y_true, y_pred):
        labels = keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32")
        onehot = keras.ops.one_hot(labels, keras.ops.shape(y_pred)[-1])
        return keras.losses.categorical_crossentropy(onehot, y_pred, label_smoothing=self.smoothing)

    def get_config(self):
        return {**super().get_config(), "smoothing": self.smoothing}


class WallClock(keras.callbacks.Callback):
    """Wall seconds since training began, at the end of each epoch: `wall_seconds` in the logs, so in
    history.csv, from which `time_to_accuracy` reads when validation accuracy first reached a level.
    A resumed run starts its clock where the interrupted run's history ended (`offset`)."""

    def __init__(self, offset: float = 0.0):
        super().__init__()
        self.offset = float(offset)

    def on_train_begin(self, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["wall_seconds"] = round(self.offset + time.perf_counter() - self._start, 2)


def time_to_accuracy(history: dict, levels, monitor: str = "val_accuracy") -> dict[str, float | None]:
    """{level: wall seconds of the first epoch whose `monitor` reached it, or None}, from the history
    (so a resumed run's earlier epochs count)."""
    values, seconds = history.get(monitor, []), history.get("wall_seconds", [])
    out = {}
    for level in sorted(levels):
        out[f"{level:g}"] = next((round(s, 1) for v, s in zip(values, seconds) if v >= level), None)
    return out


TTA_CHOICES = ("flip", "none")


def flip_views(images):
    """Test-time augmentation views of an image batch [N, H, W, C]: itself and its mirror image."""
    import tensorflow as tf
    return [images, tf.reverse(images, axis=[2])]


def tta_views(name: str | None):
    """The views function of a test-time augmentation name (None or 'none': no TTA)."""
    if name in (None, "none"):
        return None
    if name == "flip":
        return flip_views
    from cnnapp.errors import CnnappError
    raise CnnappError(f"--tta: choose from {', '.join(TTA_CHOICES)}. Received: tta={name}")


OPTIMIZERS = {
    # name: (Keras class, default learning rate). Adadelta's 1.0 is Kim's setting (Keras's own is 0.001).
    "adam": (keras.optimizers.Adam, 1e-3),
    "adamw": (keras.optimizers.AdamW, 1e-3),
    "adadelta": (keras.optimizers.Adadelta, 1.0),
    "sgd": (keras.optimizers.SGD, 1e-2),
    "rmsprop": (keras.optimizers.RMSprop, 1e-3),
}
assert tuple(OPTIMIZERS) == OPTIMIZER_NAMES  # the CLI's choices come from cnnapp.config


def make_optimizer(name: str, learning_rate: float | None, ema: float = 0.0, *,
                   onecycle_steps: int | None = None) -> keras.optimizers.Optimizer:
    """The named optimizer; `ema` > 0 also keeps an exponential moving average of the weights;
    `onecycle_steps` runs the rate as a one-cycle schedule over that many steps, peaking at the rate."""
    if name not in OPTIMIZERS:
        raise CnnappError(f"--optimizer: choose from {', '.join(OPTIMIZERS)}. Received: {name}")
    if not 0.0 <= ema < 1.0:
        raise CnnappError(f"--ema: the averaging momentum must be in [0, 1), e.g. 0.99. Received: ema={ema}")
    cls, default_lr = OPTIMIZERS[name]
    kwargs = {"rho": 0.95, "epsilon": 1e-6} if name == "adadelta" else {}
    if ema:
        kwargs.update(use_ema=True, ema_momentum=ema)
    rate = learning_rate or default_lr
    if onecycle_steps:
        rate = OneCycle(peak=rate, total_steps=onecycle_steps)
    return cls(learning_rate=rate, **kwargs)


def check_class_weight(mode: str | None) -> None:
    if mode is not None and mode not in CLASS_WEIGHTS:
        raise CnnappError(f"--class-weight: choose {', '.join(CLASS_WEIGHTS)} or none. Received: class_weight={mode}")


def class_weights(y_train, num_classes: int, mode: str | None) -> dict[int, float] | None:
    """`balanced`: class c weighs n / (k * n_c), so every class carries the same total weight in the loss
    (scikit-learn's "balanced"); a class absent from training keeps 1. None: no weighting."""
    check_class_weight(mode)
    if mode is None:
        return None
    counts = np.bincount(np.asarray(y_train, dtype=np.int64), minlength=num_classes)
    return {c: float(len(y_train) / (num_classes * n)) if n else 1.0 for c, n in enumerate(counts)}


def make_loss(label_smoothing: float):
    if not 0.0 <= label_smoothing < 1.0:
        raise CnnappError(f"--label-smoothing: must be in [0, 1). Received: label_smoothing={label_smoothing}")
    return SparseSmoothedCrossentropy(label_smoothing) if label_smoothing else "sparse_categorical_crossentropy"
