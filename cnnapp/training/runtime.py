"""Process-wide runtime choices made once before a model is built: seed, precision, XLA, strategy."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

import keras
import tensorflow as tf

from cnnapp.errors import CnnappError

log = logging.getLogger(__name__)
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
JIT_CHOICES = ("auto", "on", "off")
STRATEGIES = ("auto", "default", "mirrored", "multi-worker")
# Test hook set only by `cnnapp launch --dump-weights DIR`: every worker saves its final weights
# there as worker-<i>.weights.h5, so a test can prove that all workers end identical.
debug_weights_dir: str | None = None


def gpus() -> list:
    return tf.config.list_physical_devices("GPU")


def seed_everything(seed: int, *, deterministic: bool) -> None:
    """Seed Python, NumPy and TensorFlow; optionally make TF ops deterministic (slower)."""
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def resolve_precision(precision: str) -> str:
    """`auto`: mixed_float16 on GPUs with tensor cores (compute capability 7+), float32 on CPU
    (mixed_bfloat16 trained 15x slower on this project's CPUs, which lack avx512_bf16:
    docs/bench/scale.md)."""
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


@dataclass(frozen=True)
class Worker:
    """This process's place in the cluster: worker `index` of `count`; worker 0 is the chief."""

    index: int = 0
    count: int = 1

    @property
    def is_chief(self) -> bool:
        return self.index == 0


def read_tf_config(environ=None) -> dict | None:
    """The cluster from TF_CONFIG, or None when it names no cluster of several workers.

    Read here and in the CLI layer only: tf.distribute reads the same variable itself."""
    raw = (os.environ if environ is None else environ).get("TF_CONFIG", "").strip()
    if not raw:
        return None
    try:
        tf_config = json.loads(raw)
        workers = tf_config["cluster"]["worker"]
        index = int(tf_config["task"]["index"])
    except (ValueError, KeyError, TypeError) as e:
        raise CnnappError(f"TF_CONFIG: expected {{\"cluster\": {{\"worker\": [...]}}, \"task\": {{\"type\": "
                          f"\"worker\", \"index\": i}}}} ({e}). Received: {raw[:200]}") from None
    if set(tf_config["cluster"]) - {"worker"} or tf_config["task"].get("type", "worker") != "worker":
        raise CnnappError(f"TF_CONFIG: cnnapp runs worker-only clusters (worker 0 is the chief). Received: {raw[:200]}")
    if not 0 <= index < len(workers):
        raise CnnappError(f"TF_CONFIG: task index out of range for {len(workers)} workers. Received: index={index}")
    return tf_config if len(workers) > 1 else None


def worker_of(tf_config: dict | None) -> Worker:
    if tf_config is None:
        return Worker()
    return Worker(index=int(tf_config["task"]["index"]), count=len(tf_config["cluster"]["worker"]))


# One strategy per process: MultiWorkerMirroredStrategy can be made once, before any other
# TensorFlow op, so the CLI makes it at program start and the training loop reuses it.
_strategies: dict[str, tf.distribute.Strategy] = {}


def resolve_strategy_name(name: str, tf_config: dict | None) -> str:
    if name not in STRATEGIES:
        raise CnnappError(f"--strategy: choose from {', '.join(STRATEGIES)}. Received: {name}")
    if name == "auto":
        return "multi-worker" if tf_config else ("mirrored" if len(gpus()) > 1 else "default")
    if name == "multi-worker" and not tf_config:
        raise CnnappError("--strategy multi-worker: TF_CONFIG names no cluster of several workers "
                          f"(start them with `cnnapp launch`). Received: TF_CONFIG={os.environ.get('TF_CONFIG', '')!r}")
    return name


def make_strategy(name: str) -> tf.distribute.Strategy:
    """`auto`: multi-worker when TF_CONFIG names a cluster, mirrored over several local GPUs,
    else the default strategy. `--batch-size` is per replica (see the training loop)."""
    name = resolve_strategy_name(name, read_tf_config())
    if name in _strategies:
        return _strategies[name]
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
    else:
        # One INFO line per traced all-reduce ("Collective all_reduce tensors: ...") is noise here.
        logging.getLogger("tensorflow").setLevel(logging.WARNING)
        try:
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as e:
            raise CnnappError("--strategy multi-worker: the strategy must be made at program start, before "
                              "TensorFlow runs anything; run the command through `cnnapp launch -- train-...` "
                              f"(it does that). Received: {e}") from None
    _strategies[name] = strategy
    return strategy


def start_multi_worker() -> Worker:
    """At program start: make MultiWorkerMirroredStrategy from TF_CONFIG when it names a cluster."""
    tf_config = read_tf_config()
    if tf_config is not None:
        make_strategy("multi-worker")
    return worker_of(tf_config)


def worker_of_strategy(strategy: tf.distribute.Strategy) -> Worker:
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return worker_of(read_tf_config())
    return Worker()
