"""The parts of a fast-converging training recipe: a one-cycle learning rate, label smoothing, and the
wall time at which validation accuracy first reached given levels (time to accuracy).

One-cycle (Smith & Topin 2017, as airbench and fast.ai use it): the rate rises linearly from
peak/25 to the peak over the first 25% of the steps, then follows half a cosine down to peak/1e4.
It is a `LearningRateSchedule` computed in the graph from the optimizer's step counter, so it costs
nothing per step, and a resumed run (BackupAndRestore restores the counter) continues the curve.
"""

from __future__ import annotations

import math
import time

import keras


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
