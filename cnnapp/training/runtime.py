"""Runtime choices made before a model is built: seed, precision, XLA, strategy, the worker's place.

Nothing here reads the environment or keeps state between runs: the CLI reads TF_CONFIG once
(`read_tf_config`) and passes the cluster on as a value; the precision policy is set for one run
and restored after it (`precision_policy`), also when the run fails.
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass

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


def cpu_has_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX); read from /proc/cpuinfo
    (Linux), False where that cannot be read. Without those instructions bfloat16 is emulated and
    trained 15x slower here (docs/bench/scale.md)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def resolve_precision(precision: str, *, cpu_bfloat16: bool = False) -> str:
    """`auto`: mixed_float16 on GPUs with tensor cores (compute capability 7+); on a CPU,
    mixed_bfloat16 where `cpu_bfloat16` (the task's choice: image models, whose convolutions train
    up to 2x faster in bfloat16 on CPUs with AVX512-BF16; docs/bench/image.md) and the CPU has native
    bfloat16, else float32. The evaluation and the export are float32 either way (`float32_copy`)."""
    if precision not in PRECISIONS:
        raise CnnappError(f"--precision: choose from {', '.join(PRECISIONS)}. Received: {precision}")
    if precision != "auto":
        return precision
    for gpu in gpus():
        details = tf.config.experimental.get_device_details(gpu)
        if details.get("compute_capability", (0, 0)) >= (7, 0):
            return "mixed_float16"
    if cpu_bfloat16 and not gpus() and cpu_has_bfloat16():
        return "mixed_bfloat16"
    return "float32"


def float32_copy(model: keras.Model) -> keras.Model:
    """The same network and weights with every layer computing in float32: a model trained under
    mixed precision is evaluated and exported like this, so its answers do not depend on the
    machine that serves it (bfloat16 is emulated, and slow, on CPUs without it)."""
    def to_float32(node):
        if isinstance(node, dict):
            if node.get("class_name") in ("DTypePolicy", "FloatDTypePolicy") and isinstance(node.get("config"), dict):
                return {**node, "config": {**node["config"], "name": "float32"}}
            return {k: to_float32(v) for k, v in node.items()}
        if isinstance(node, list):
            return [to_float32(v) for v in node]
        return node

    with precision_policy("float32"):
        copy = model.__class__.from_config(to_float32(model.get_config()))
    copy.set_weights(model.get_weights())
    return copy


def resolve_jit(jit: str) -> bool:
    """`auto`: XLA on GPU only (on this project's 2-core CPUs XLA made training slower)."""
    if jit not in JIT_CHOICES:
        raise CnnappError(f"--jit: choose from {', '.join(JIT_CHOICES)}. Received: {jit}")
    return bool(gpus()) if jit == "auto" else jit == "on"


@contextmanager
def precision_policy(policy: str):
    """Keras's global dtype policy set to `policy` for the block, and restored after it (also when
    the block raises), so one run's mixed precision never leaks into the next model of a process."""
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(policy)
    log.debug("precision policy: %s", policy)
    try:
        yield policy
    finally:
        keras.mixed_precision.set_global_policy(previous)


@dataclass(frozen=True)
class Worker:
    """This process's place in the cluster: worker `index` of `count`; worker 0 is the chief."""

    index: int = 0
    count: int = 1

    @property
    def is_chief(self) -> bool:
        return self.index == 0


def read_tf_config(environ) -> dict | None:
    """The cluster from TF_CONFIG in `environ`, or None when it names no cluster of several workers.

    Called once, by the CLI (the edge); tf.distribute reads the same variable itself."""
    raw = environ.get("TF_CONFIG", "").strip()
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


def worker_of(cluster: dict | None) -> Worker:
    if cluster is None:
        return Worker()
    return Worker(index=int(cluster["task"]["index"]), count=len(cluster["cluster"]["worker"]))


def resolve_strategy_name(name: str, cluster: dict | None) -> str:
    if name not in STRATEGIES:
        raise CnnappError(f"--strategy: choose from {', '.join(STRATEGIES)}. Received: {name}")
    if name == "auto":
        return "multi-worker" if cluster else ("mirrored" if len(gpus()) > 1 else "default")
    if name == "multi-worker" and not cluster:
        raise CnnappError("--strategy multi-worker: TF_CONFIG names no cluster of several workers "
                          "(start them with `cnnapp launch`). Received: TF_CONFIG without a cluster")
    return name


def make_strategy(name: str, cluster: dict | None) -> tf.distribute.Strategy:
    """`auto`: multi-worker when `cluster` (TF_CONFIG) names one, mirrored over several local GPUs,
    else the default strategy. MultiWorkerMirroredStrategy can be made only at program start, before
    any other TensorFlow op: the CLI calls this first thing and passes the strategy to the run."""
    name = resolve_strategy_name(name, cluster)
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    # One INFO line per traced all-reduce ("Collective all_reduce tensors: ...") is noise here.
    logging.getLogger("tensorflow").setLevel(logging.WARNING)
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as e:
        raise CnnappError("--strategy multi-worker: the strategy must be made at program start, before "
                          "TensorFlow runs anything; run the command through `cnnapp launch -- train-...` "
                          f"(it does that). Received: {e}") from None


def worker_of_strategy(strategy: tf.distribute.Strategy, cluster: dict | None) -> Worker:
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return worker_of(cluster)
    return Worker()
