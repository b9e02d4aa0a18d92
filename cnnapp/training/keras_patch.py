"""The Keras 3 workaround that lets `fit` run under tf.distribute.MultiWorkerMirroredStrategy.

Keras 3.15's TensorFlow trainer fails in `fit` under MultiWorkerMirroredStrategy with
"Attempt to convert a value (PerReplica...)":
    https://github.com/keras-team/keras/issues/20585
    https://github.com/tensorflow/tensorflow/issues/72388
Two small replacements fix it (fit, evaluate, predict and export then work, with identical losses
and weights on every worker):
  1. `TensorFlowTrainer._maybe_symbolic_build` builds the model from the first local replica's
     batch instead of a cross-worker MEAN reduce of the batch (which fails on integer labels and
     is not needed: only shapes and dtypes matter for a symbolic build);
  2. `reduce_per_replica` reduces scalar logs (loss, accuracy) with `axis=None`: its `axis=0`
     fails on rank-0 values across workers.
The other route, legacy Keras 2 (`TF_USE_LEGACY_KERAS=1` with `tf-keras`), works unmodified but
would mean a second Keras in the code base; these two patches keep Keras 3.

`apply()` is called by the training loop only under MultiWorkerMirroredStrategy, and only on the
Keras versions listed in CHECKED_KERAS_VERSIONS: internals change between releases, so on any
other version it refuses with a message rather than patching blind.
"""

from __future__ import annotations

import logging

from cnnapp.errors import CnnappError

log = logging.getLogger(__name__)
# Checked by tests/test_distributed.py (2 CPU workers: identical weights, export = in-memory model).
CHECKED_KERAS_VERSIONS = ("3.15.1",)
UPSTREAM = "keras-team/keras#20585, tensorflow/tensorflow#72388"


def check_version(keras_version: str) -> None:
    """Raise CnnappError unless the workaround was checked on `keras_version`."""
    if keras_version not in CHECKED_KERAS_VERSIONS:
        raise CnnappError(
            f"--strategy multi-worker: cnnapp's Keras workaround (cnnapp/training/keras_patch.py, for "
            f"{UPSTREAM}) was checked on Keras {', '.join(CHECKED_KERAS_VERSIONS)} only; see whether the "
            f"upstream fix landed, then run tests/test_distributed.py and add the version. "
            f"Received: keras=={keras_version}")


def is_applied() -> bool:
    from keras.src.backend.tensorflow import trainer as tf_trainer
    return hasattr(tf_trainer.TensorFlowTrainer._maybe_symbolic_build, "cnnapp_patch")


def apply(keras_version: str | None = None) -> None:
    """Patch Keras's TensorFlow trainer for MultiWorkerMirroredStrategy (idempotent)."""
    import keras
    check_version(keras_version or keras.__version__)
    import tensorflow as tf
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer as tf_trainer
    if is_applied():
        return

    original_reduce = tf_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if not (tf_trainer._collective_all_reduce_multi_worker(strategy)
                and reduction in ("auto", "mean")):
            return original_reduce(values, strategy, reduction)

        def _mean(v):
            # Scalars (the logs) cannot be reduced along axis 0; every worker gets the same mean.
            axis = None if v.shape.rank == 0 else 0
            return strategy.reduce("MEAN", v, axis=axis)
        return tree.map_structure(_mean, values)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if self._distribute_strategy is None:
            return
        if iterator is not None:
            for _, _, it in iterator:
                batch = next(it)
                # Shapes and dtypes are all a symbolic build needs: one local replica's batch.
                data_batch = tree.map_structure(
                    lambda x: self.distribute_strategy.experimental_local_results(x)[0]
                    if isinstance(x, tf.distribute.DistributedValues) else x, batch)
                break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    tf_trainer.reduce_per_replica = reduce_per_replica
    _maybe_symbolic_build.cnnapp_patch = UPSTREAM   # the patch marks itself: no module flag
    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
    log.info("applied the Keras %s multi-worker workaround (%s)", keras.__version__, UPSTREAM)
