"""Process-wide runtime choices made once before a model is built: seed, precision, XLA, strategy."""

from __future__ import annotations

import logging

import keras
import tensorflow as tf

from cnnapp.errors import CnnappError

log = logging.getLogger(__name__)
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
JIT_CHOICES = ("auto", "on", "off")
STRATEGIES = ("auto", "default", "mirrored", "multi-worker")


def gpus() -> list:
    return tf.config.list_physical_devices("GPU")


def seed_everything(seed: int, *, deterministic: bool) -> None:
    """Seed Python, NumPy and TensorFlow; optionally make TF ops deterministic (slower)."""
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def resolve_precision(precision: str) -> str:
    """`auto`: mixed_float16 on GPUs with tensor cores (compute capability 7+), float32 on CPU."""
    if precision not in PRECISIONS:
        raise CnnappError(f"--precision: choose from {', '.join(PRECISIONS)}. Received: {precision}")
    if precision != "auto":
        return precision
    for gpu in gpus():
        details = tf.config.experimental.get_device_details(gpu)
        if details.get("compute_capability", (0, 0)) >= (7, 0):
            return "mixed_float16"
    return "float32"


def resolve_jit(jit: str) -> bool:
    """`auto`: XLA on GPU only (on this project's 2-core CPUs XLA made training slower)."""
    if jit not in JIT_CHOICES:
        raise CnnappError(f"--jit: choose from {', '.join(JIT_CHOICES)}. Received: {jit}")
    return bool(gpus()) if jit == "auto" else jit == "on"


def apply_precision(policy: str) -> None:
    keras.mixed_precision.set_global_policy(policy)
    log.info("precision policy: %s", policy)


def make_strategy(name: str) -> tf.distribute.Strategy:
    """`auto`: multi-worker when TF_CONFIG names a cluster, mirrored over several local GPUs,
    else the default strategy. `--batch-size` is per replica (see the training loop)."""
    if name not in STRATEGIES:
        raise CnnappError(f"--strategy: choose from {', '.join(STRATEGIES)}. Received: {name}")
    if name == "auto":
        name = "mirrored" if len(gpus()) > 1 else "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    raise CnnappError(f"--strategy: {name} is not available yet. Received: {name}")
