"""The one training loop for every cnnapp model.

    data (Splits) -> preprocess (a Keras layer/function, mapped in tf.data) -> build_model() under
    the strategy scope -> compile -> fit with the shared callbacks -> held-out evaluation ->
    run directory (config.json, history.csv, metrics.json, PNG plots, best.keras, tensorboard/)

With `config.ensemble` = N > 1, that runs N times (seeds seed, seed+1, ...; the same splits and
preprocessing) into run_dir/member1..N, and the result is one model averaging the members'
probabilities, evaluated like a single one: it is what the export holds.

Images and sentences differ only in the data, the preprocessing and the model factory that
`cnnapp.training.run` passes in; export is a separate step (`cnnapp.export`).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from cnnapp.config import CLASS_WEIGHTS, OPTIMIZERS as OPTIMIZER_NAMES, TrainConfig
from cnnapp.data import Splits
from cnnapp.errors import CnnappError
from cnnapp.training import keras_patch, runtime
from cnnapp.training.callbacks import EpochTimer, build_callbacks, progress_verbosity
from cnnapp.training.recipe import OneCycle, SparseSmoothedCrossentropy, time_to_accuracy, tta_views
from cnnapp.training.evaluation import classification_report, plot_confusion, plot_history, write_json

log = logging.getLogger(__name__)
AUTOTUNE = tf.data.AUTOTUNE
OPTIMIZERS = {
    # name: (Keras class, default learning rate). Adadelta's 1.0 is Kim's setting (Keras's own is 0.001).
    "adam": (keras.optimizers.Adam, 1e-3),
    "adamw": (keras.optimizers.AdamW, 1e-3),
    "adadelta": (keras.optimizers.Adadelta, 1.0),
    "sgd": (keras.optimizers.SGD, 1e-2),
    "rmsprop": (keras.optimizers.RMSprop, 1e-3),
}
assert tuple(OPTIMIZERS) == OPTIMIZER_NAMES  # the CLI's choices come from cnnapp.config


@dataclass
class TrainResult:
    model: keras.Model
    history: dict
    metrics: dict
    run_dir: Path
    is_chief: bool = True


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


def make_dataset(x, y, *, batch_size: int, preprocess: Callable, augment=None,
                 shuffle_seed: int | None = None, options: tf.data.Options | None = None) -> tf.data.Dataset:
    """In-memory arrays -> preprocessed once and cached -> (shuffled) batches -> (augmented) -> prefetch.

    Preprocessing is deterministic, so it runs once (in batches of 1024) and is cached; shuffling
    and augmentation happen every epoch, augmentation on training batches only.
    """
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    ds = ds.batch(1024).map(lambda a, b: (preprocess(a), b), num_parallel_calls=AUTOTUNE).unbatch()
    # unbatch() loses the cardinality; restating it keeps Keras's progress bar and epoch end exact.
    ds = ds.apply(tf.data.experimental.assert_cardinality(len(y))).cache()
    if shuffle_seed is not None:
        ds = ds.shuffle(len(y), seed=shuffle_seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if augment is not None:
        # One batch at a time: the layers draw from one seeded generator, and parallel calls would
        # take its draws in a different order each run (prefetch still overlaps it with training).
        ds = ds.map(lambda a, b: (augment(a, training=True), b))
    if options is not None:
        ds = ds.with_options(options)
    return ds.prefetch(AUTOTUNE)


def read_history_csv(path: Path) -> dict:
    """The whole history, resumed epochs included (CSVLogger appends on resume)."""
    if not path.exists():
        return {}
    with path.open() as f:
        rows = list(csv.DictReader(f))
    out: dict[str, list[float]] = {}
    for row in rows:
        for k, v in row.items():
            if k != "epoch" and v not in (None, ""):
                out.setdefault(k, []).append(float(v))
    return out


def data_fingerprint(splits: Splits, preprocess) -> str:
    """SHA-256 of what every worker must share: class names, split sizes and labels, and the
    vocabulary when the preprocessing has one (text: adapted on the seeded training split)."""
    h = hashlib.sha256(json.dumps({"class_names": list(splits.class_names), "counts": splits.counts()},
                                  sort_keys=True, default=str).encode())
    h.update(np.ascontiguousarray(np.asarray(splits.y_train, dtype=np.int64)).tobytes())
    if hasattr(preprocess, "get_vocabulary"):
        h.update("\n".join(preprocess.get_vocabulary()).encode())
    return h.hexdigest()


# The backup of an interrupted run holds weights and optimizer state for one model on one data set.
# A rerun resumes it only when what shapes those weights is the same; epochs, patience, folders,
# precision and verbosity may change between the two.
FINGERPRINT_FILE = "fingerprint.json"
RESUME_TRAIN_FIELDS = ("seed", "batch_size", "optimizer", "learning_rate", "ema", "lr_schedule")
# The loss's own settings, fingerprinted only when on: a backup written before they were fingerprinted
# still matches a run that leaves them off.
RESUME_LOSS_FIELDS = ("label_smoothing", "class_weight")
# Task options whose effect the data hash or the preprocessing facts already hold (paths, sizes, columns):
# `--image-size 8` on the 8x8 digits is the same run as no --image-size.
_COVERED_TASK_KEYS = ("data", "dataset", "data_dir", "dev", "test", "embeddings", "encoding", "text_column",
                      "label_column", "image_size", "channels", "sequence_length", "max_tokens")


def _example_bytes(x) -> bytes:
    x = np.asarray(x)
    if x.dtype == object or x.dtype.kind in "US":
        return "\0".join(str(v) for v in x.ravel()).encode("utf-8", "surrogatepass")
    return np.ascontiguousarray(x).tobytes()


def resume_fingerprint(splits: Splits, preprocess, config: TrainConfig, run_config: dict) -> dict:
    """What a backup must share with the run that resumes it: a hash of the training and validation
    examples and labels (and the vocabulary), the class names, the model and its resolved options,
    the preprocessing, and the training options that shape the weights (`RESUME_TRAIN_FIELDS`)."""
    h = hashlib.sha256()
    for part in (splits.x_train, splits.y_train, splits.x_val, splits.y_val):
        h.update(_example_bytes(part))
    if hasattr(preprocess, "get_vocabulary"):
        h.update("\n".join(preprocess.get_vocabulary()).encode())

    task = {k: v for k, v in (run_config.get("task") or {}).items() if k not in _COVERED_TASK_KEYS}
    preprocessing = dict(run_config.get("preprocessing") or {})
    if isinstance(preprocessing.get("embedding_coverage"), dict):   # its file paths may be spelled otherwise
        preprocessing["embedding_coverage"] = {k: v for k, v in preprocessing["embedding_coverage"].items()
                                               if k != "files"}

    return json.loads(json.dumps({
        "data": h.hexdigest()[:16],
        "class_names": list(splits.class_names),
        "model": {"name": (run_config.get("model") or {}).get("name"),
                  "resolved_options": run_config.get("model_resolved_options")},
        "task": task,
        "preprocessing": preprocessing,
        "training": {**{f: getattr(config, f) for f in RESUME_TRAIN_FIELDS},
                     **{f: getattr(config, f) for f in RESUME_LOSS_FIELDS if getattr(config, f)}},
    }, default=str, sort_keys=True))


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def fingerprint_differences(before: dict, now: dict) -> list[str]:
    """'what: then -> now' for every setting that differs between two resume fingerprints."""
    a, b = _flat(before), _flat(now)
    out = []
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            if key == "data":
                out.append("data: other examples, labels or vocabulary")
            else:
                out.append(f"{key}: {json.dumps(a.get(key))} -> {json.dumps(b.get(key))}")
    return out


def has_backup(backup_dir: Path) -> bool:
    """Whether BackupAndRestore left weights to resume from (not just our fingerprint)."""
    return backup_dir.is_dir() and any(p.name != FINGERPRINT_FILE for p in backup_dir.iterdir())


def claim_backup(backup_dir: Path, fingerprint: dict, *, fresh: bool, name: str | None) -> bool:
    """Whether this run resumes the backup in `backup_dir`; raise CnnappError when it belongs to a run
    with other settings. A fresh run (or `fresh`) records its fingerprint there first."""
    if fresh and backup_dir.exists():
        log.info("--fresh: removing the backup of the interrupted run in %s", backup_dir)
        shutil.rmtree(backup_dir)
    if has_backup(backup_dir):
        path = backup_dir / FINGERPRINT_FILE
        try:
            before = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            before = None   # a backup from before fingerprints: tried, and a mismatch is one line (callbacks)
        if before is not None and before != fingerprint:
            diffs = fingerprint_differences(before, fingerprint)
            shown = "; ".join(diffs[:3]) + (f"; and {len(diffs) - 3} more" if len(diffs) > 3 else "")
            raise CnnappError(
                f"--name: {backup_dir} holds an interrupted run with other settings ({shown}); rerun it as it was "
                f"to resume, add --fresh to discard it and start over, or choose another --name. "
                f"Received: name={name}")
        return True
    backup_dir.mkdir(parents=True, exist_ok=True)
    (backup_dir / FINGERPRINT_FILE).write_text(json.dumps(fingerprint, indent=2) + "\n", encoding="utf-8")
    return False


def check_workers_agree(splits: Splits, preprocess, strategy: tf.distribute.Strategy) -> str:
    """Raise CnnappError unless every worker has the same data fingerprint (one all-gather).

    Each worker loads and splits the data itself with the same seed, and the text vectorizer is
    adapted on that training split, so the same command gives the same vocabulary everywhere;
    this proves it at the start of every multi-worker run instead of trusting it.
    """
    fingerprint = data_fingerprint(splits, preprocess)
    # 16-bit chunks are exact in float32, the dtype every collective implementation carries.
    chunks = np.array([[int(fingerprint[i:i + 4], 16) for i in range(0, 32, 4)]], dtype=np.float32)
    local = strategy.experimental_distribute_values_from_function(lambda ctx: tf.constant(chunks))
    gathered = strategy.gather(local, axis=0).numpy()
    if not (gathered == gathered[0]).all():
        raise CnnappError("multi-worker: the workers loaded different data (class names, splits or "
                          "vocabulary); give every worker the same command and data. Received: "
                          f"{len(gathered)} fingerprints, {len({tuple(r) for r in gathered})} distinct")
    log.info("all %d workers agree on class names, splits and vocabulary (fingerprint %s)",
             len(gathered), fingerprint[:16])
    return fingerprint


def average_across_workers(variables, strategy: tf.distribute.Strategy) -> None:
    """Give every worker the mean of its float non-trainable variables (BatchNorm moving statistics).

    Gradients are all-reduced, so trainable weights agree on all workers; BatchNorm's moving mean and
    variance are updated from each worker's own shard and drift apart. Their mean is the moving
    mean of the global batch (the moving variance leaves out the spread between shard means: a
    small difference), and it makes the workers, and the chief's export, identical.
    """
    for v in variables:
        if not v.dtype.startswith("float"):
            continue  # seed generator states: the same on every worker already
        local = strategy.experimental_distribute_values_from_function(lambda ctx, v=v: tf.identity(v.value))
        v.assign(strategy.reduce("MEAN", local, axis=None))


def train_classifier(
    *,
    build_model: Callable[[], keras.Model],
    splits: Splits,
    preprocess: Callable,
    config: TrainConfig,
    run_dir: Path,
    run_config: dict,
    augment: Callable | None = None,
    strategy: tf.distribute.Strategy | None = None,
) -> TrainResult:
    """Train `build_model()` on `splits` and evaluate it on the held-out split.

    `preprocess` maps a batch of raw examples (uint8 pixels, or strings) to model inputs; it is
    the same Keras layer the export bakes in. `run_config` is saved as config.json, with what
    this function resolved (precision, XLA, strategy, batch sizes, split counts) added. `strategy`
    is the one the CLI made at program start (None: made here from `config`).
    """
    if config.ensemble < 1:
        raise CnnappError(f"--ensemble: the number of models must be at least 1. Received: ensemble={config.ensemble}")
    if strategy is None:
        strategy = runtime.make_strategy(config.strategy, config.cluster)
    if config.ensemble > 1:
        return _train_ensemble(build_model=build_model, splits=splits, preprocess=preprocess, config=config,
                               run_dir=Path(run_dir), run_config=run_config, augment=augment, strategy=strategy)
    worker = runtime.worker_of_strategy(strategy, config.cluster)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        keras_patch.apply()
    run_dir = Path(run_dir)
    if worker.count == 1:
        return _train(strategy, worker, run_dir, run_dir / "backup", build_model=build_model, splits=splits,
                      preprocess=preprocess, config=config, run_config=run_config, augment=augment)
    # Every worker keeps its own backup (a shared one crashes on an HDF5 lock; Keras 3's
    # BackupAndRestore has no chief logic), so a killed job resumes on all of them. Everything
    # else is the chief's: the other workers write to a temporary folder, removed at the end.
    backup_dir = run_dir / "backup" / f"worker-{worker.index}"
    if worker.is_chief:
        return _train(strategy, worker, run_dir, backup_dir, build_model=build_model, splits=splits,
                      preprocess=preprocess, config=config, run_config=run_config, augment=augment)
    scratch = Path(tempfile.mkdtemp(prefix=f"cnnapp-worker{worker.index}-"))
    try:
        result = _train(strategy, worker, scratch, backup_dir, build_model=build_model, splits=splits,
                        preprocess=preprocess, config=config, run_config=run_config, augment=augment)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result.run_dir = run_dir
    return result


def _train(strategy, worker: runtime.Worker, run_dir: Path, backup_dir: Path, *, build_model, splits,
           preprocess, config: TrainConfig, run_config: dict, augment) -> TrainResult:
    run_dir.mkdir(parents=True, exist_ok=True)
    resuming = claim_backup(backup_dir, resume_fingerprint(splits, preprocess, config, run_config),
                            fresh=config.fresh, name=config.name)
    if resuming:
        log.info("resuming the interrupted run from its backup in %s", backup_dir)
    runtime.seed_everything(config.seed, deterministic=config.deterministic)
    with runtime.precision_policy(runtime.resolve_precision(config.precision,
                                                                     cpu_bfloat16=bool(config.cpu_bfloat16))) as precision:
        return _fit(strategy, worker, run_dir, backup_dir, resuming=resuming, precision=precision,
                    build_model=build_model, splits=splits, preprocess=preprocess, config=config,
                    run_config=run_config, augment=augment)


def _fit(strategy, worker: runtime.Worker, run_dir: Path, backup_dir: Path, *, resuming: bool, precision: str,
         build_model, splits, preprocess, config: TrainConfig, run_config: dict, augment) -> TrainResult:
    jit = runtime.resolve_jit(config.jit)
    replicas = strategy.num_replicas_in_sync
    fingerprint = check_workers_agree(splits, preprocess, strategy) if worker.count > 1 else None
    global_batch = config.batch_size * replicas

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    train_ds = make_dataset(splits.x_train, splits.y_train, batch_size=global_batch, preprocess=preprocess,
                            augment=augment, shuffle_seed=config.seed, options=options)
    val_ds = make_dataset(splits.x_val, splits.y_val, batch_size=global_batch, preprocess=preprocess,
                          options=options)

    with strategy.scope():
        model = build_model()
        steps_per_epoch = -(-len(splits.y_train) // global_batch)
        steps = config.epochs * steps_per_epoch if config.lr_schedule == "onecycle" else None
        # Several steps per graph call cut Python's share of a small CNN's step on a CPU (the keras-io
        # net trained ~1.5x faster with 32 here); one under multi-worker, where the patch is checked.
        per_call = min(config.steps_per_execution, steps_per_epoch) if worker.count == 1 else 1
        model.compile(optimizer=make_optimizer(config.optimizer, config.learning_rate, config.ema, onecycle_steps=steps),
                      loss=make_loss(config.label_smoothing or 0.0), metrics=["accuracy"], jit_compile=jit,
                      steps_per_execution=per_call)

    weights = class_weights(splits.y_train, len(splits.class_names), config.class_weight)
    resolved = {
        "class_weights": None if weights is None else {splits.class_names[c]: round(w, 4) for c, w in weights.items()},
        "precision": precision, "jit_compile": jit, "strategy": type(strategy).__name__,
        "replicas": replicas, "batch_size_per_replica": config.batch_size, "global_batch_size": global_batch,
        "steps_per_execution": per_call,
        "epochs": config.epochs, "splits": splits.counts(), "data": splits.description,
        "class_names": splits.class_names, "params": int(model.count_params()), "resumed": resuming,
        "workers": worker.count, "data_fingerprint": fingerprint,
    }
    write_json(run_dir / "config.json", {**run_config, "resolved": resolved})
    log.info("training %s (%s params) on %s examples, validating on %s; run directory %s",
             model.name, f"{model.count_params():,}", len(splits.y_train), len(splits.y_val), run_dir)

    timer = EpochTimer()
    callbacks = build_callbacks(config, run_dir, resuming=resuming, backup_dir=backup_dir) + [timer]
    start = time.perf_counter()
    model.fit(train_ds, validation_data=val_ds, epochs=config.epochs, callbacks=callbacks,
              class_weight=weights,
              shuffle=False, verbose=progress_verbosity(config))  # train_ds shuffles itself
    train_seconds = time.perf_counter() - start
    if worker.count > 1:
        average_across_workers(model.non_trainable_variables, strategy)
    if config.dump_weights_dir:
        dump = Path(config.dump_weights_dir) / f"worker-{worker.index}.weights.h5"
        dump.parent.mkdir(parents=True, exist_ok=True)
        model.save_weights(str(dump))

    # Scored, returned, kept and exported in float32, whatever the training precision: best.keras
    # (what inspect loads) is then the very network the run reports and exports.
    if precision != "float32":
        model = runtime.float32_copy(model)
        if (run_dir / "best.keras").exists():
            model.save(str(run_dir / "best.keras"))
    # Every worker holds the same weights, so each scores the whole held-out split itself (a
    # distributed predict() would gather the DATA-sharded batches out of order).
    eval_name, report = held_out_report(model, splits, preprocess=preprocess, batch_size=global_batch,
                                        tta=tta_views(config.tta))
    history = read_history_csv(run_dir / "history.csv")
    steady = timer.seconds[1:] or timer.seconds
    metrics = run_metrics(
        splits, eval_name, report, best_val_accuracy=max(history.get("val_accuracy", [0.0])),
        epochs_run=len(history.get("loss", [])), train_seconds=train_seconds,
        epoch_seconds=[round(s, 3) for s in timer.seconds],
        time_to_accuracy=time_to_accuracy(history, config.accuracy_levels),
        examples_per_second=round(len(splits.y_train) / (sum(steady) / len(steady)), 1) if steady else None)
    write_json(run_dir / "metrics.json", metrics)
    plot_history(history, run_dir / "learning_curves.png", levels=config.accuracy_levels)
    plot_confusion(report, run_dir / "confusion_matrix.png")
    log.debug("%s accuracy %.4f (macro F1 %.4f) on %d examples; %s/metrics.json",
             eval_name, report["accuracy"], report["macro_f1"], report["count"], run_dir)
    return TrainResult(model=model, history=history, metrics=metrics, run_dir=run_dir, is_chief=worker.is_chief)


def probabilities(model: keras.Model, x, y, *, preprocess, batch_size: int, tta=None) -> np.ndarray:
    """Class probabilities for in-memory examples, batch by batch through the training preprocessing;
    `tta(batch) -> [views]` averages the model over test-time augmentation views, as the export does."""
    ds = make_dataset(x, y, batch_size=batch_size, preprocess=preprocess)

    def predict(batch):
        views = tta(batch) if tta else [batch]
        return np.mean([keras.ops.convert_to_numpy(model(v, training=False)) for v in views], axis=0)
    return np.concatenate([predict(batch) for batch, _ in ds])


def held_out_report(model: keras.Model, splits: Splits, *, preprocess, batch_size: int, tta=None) -> tuple[str, dict]:
    """(split name, classification report) on the split a run reports: test, else validation."""
    eval_name, x_eval, y_eval = splits.held_out()
    probs = probabilities(model, x_eval, y_eval, preprocess=preprocess, batch_size=batch_size, tta=tta)
    return eval_name, classification_report(y_eval, probs.argmax(axis=1), splits.class_names)


def run_metrics(splits: Splits, eval_name: str, report: dict, *, best_val_accuracy: float, epochs_run: int,
                train_seconds: float, **extra) -> dict:
    """The one shape of metrics.json, for single models and ensembles (`extra` adds their own keys)."""
    return {
        "evaluated_on": eval_name,
        "evaluation_source": splits.description.get(eval_name, eval_name),
        eval_name: report,
        "best_val_accuracy": round(float(best_val_accuracy), 4),
        # True when the validation curve is the test part (a run that read nothing of it): its best value
        # and time_to_accuracy are then test figures over epochs, not a selection on held-out data.
        "validation_is_test": splits.x_val is splits.x_test,
        "epochs_run": int(epochs_run),
        "train_seconds": round(float(train_seconds), 2),
        **extra,
    }


def average_models(members: list[keras.Model], *, name: str) -> keras.Model:
    """One functional model whose output is the mean of the members' class probabilities.

    Each member is nested as `member1`, `member2`, ... (they share the input), so the result saves,
    loads and exports as any single model does.
    """
    first = members[0]
    inputs = keras.Input(shape=first.input_shape[1:], dtype=first.inputs[0].dtype, name=first.inputs[0].name)
    outputs = [keras.Model(m.inputs, m.outputs[0], name=f"member{i + 1}")(inputs) for i, m in enumerate(members)]
    return keras.Model(inputs, keras.layers.Average(name="average")(outputs), name=name)


def _train_ensemble(*, build_model, splits: Splits, preprocess, config: TrainConfig, run_dir: Path,
                    run_config: dict, augment, strategy) -> TrainResult:
    """Train `config.ensemble` members through the single-model path, then evaluate their average."""
    n = config.ensemble
    member_results = []
    for i in range(n):
        member_cfg = dataclasses.replace(config, ensemble=1, seed=config.seed + i)
        log.info("ensemble: member %d of %d (seed %d)", i + 1, n, member_cfg.seed)
        member_results.append(train_classifier(
            build_model=build_model, splits=splits, preprocess=preprocess, config=member_cfg,
            run_dir=run_dir / f"member{i + 1}", augment=augment, strategy=strategy,
            run_config={**run_config, "ensemble_member": {"index": i + 1, "of": n, "seed": member_cfg.seed}}))
    model = average_models([r.model for r in member_results], name=f"{member_results[0].model.name}_ensemble{n}")

    eval_name, report = held_out_report(model, splits, preprocess=preprocess, batch_size=config.batch_size,
                                        tta=tta_views(config.tta))
    val_probs = probabilities(model, splits.x_val, splits.y_val, preprocess=preprocess, batch_size=config.batch_size)
    member_acc = [r.metrics[eval_name]["accuracy"] for r in member_results]
    metrics = run_metrics(
        splits, eval_name, report, best_val_accuracy=float(np.mean(val_probs.argmax(axis=1) == splits.y_val)),
        epochs_run=sum(r.metrics["epochs_run"] for r in member_results),   # all members' epochs together
        train_seconds=sum(r.metrics["train_seconds"] for r in member_results),
        ensemble={
            "members": n,
            "member_accuracy": {"mean": round(float(np.mean(member_acc)), 4), "min": min(member_acc),
                                "max": max(member_acc)},
            "runs": [{"run_dir": str(r.run_dir), "seed": config.seed + i, "accuracy": member_acc[i],
                      "epochs_run": r.metrics["epochs_run"]} for i, r in enumerate(member_results)],
        })
    is_chief = member_results[0].is_chief
    if is_chief:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "config.json", {**run_config, "resolved": {
            "ensemble": n, "members": [str(r.run_dir) for r in member_results],
            "splits": splits.counts(), "data": splits.description, "class_names": splits.class_names,
            "params": int(model.count_params())}})
        write_json(run_dir / "metrics.json", metrics)
        plot_confusion(report, run_dir / "confusion_matrix.png")
        model.save(str(run_dir / "best.keras"))
    log.info("ensemble of %d: %s accuracy %.4f (members: mean %.4f, min %.4f, max %.4f); %s/metrics.json",
             n, eval_name, report["accuracy"], metrics["ensemble"]["member_accuracy"]["mean"], min(member_acc),
             max(member_acc), run_dir)
    return TrainResult(model=model, history={}, metrics=metrics, run_dir=run_dir, is_chief=is_chief)
