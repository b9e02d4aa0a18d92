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

import logging
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from cnnapp.atomic import save_model_atomically
from cnnapp.config import TrainConfig
from cnnapp.data import Splits
from cnnapp.errors import CnnappError
from cnnapp.training import keras_patch, runtime
from cnnapp.training.callbacks import EpochHeartbeat, EpochTimer, build_callbacks, progress_verbosity
from cnnapp.training.cluster import average_across_workers, check_workers_agree
from cnnapp.training.evaluation import (held_out_report, plot_confusion, plot_history, read_history_csv, run_metrics,
                                        write_json)
from cnnapp.training.input import (DecodeCounter, example_input_bytes, is_decode_error, make_input, name_undecodable,
                                   plan_cache)
from cnnapp.training.recipe import class_weights, make_loss, make_optimizer, time_to_accuracy, tta_views
from cnnapp.training.resume import claim_backup, finished_training, mark_finished, resume_fingerprint

log = logging.getLogger(__name__)
CALL_BYTES = 64 * 2**20     # the input batches one graph call (--steps-per-execution steps) may hold


class CompiledModel:
    """One compiled model for the runs of a cross-validation (its folds), each started from the state a
    fresh build would have: the weights and random-seed state of a model `build_model()` just made
    (the same seed, so the same numbers), the optimizer's variables as they were before its first step.

    A fresh model per fold made Keras build and trace new train and test functions for each, called
    only once or twice an epoch (steps_per_execution holds the epoch): after three folds TensorFlow
    warned that 5 of the last 5 calls retraced. Reused, they are traced once. A model of other shapes (a
    text fold with another sequence length or vocabulary size) or compiled otherwise is built fresh.
    """

    def __init__(self):
        self.release()

    def take(self, fresh: keras.Model, key: tuple) -> keras.Model | None:
        """The kept model holding `fresh`'s state and a reset optimizer, or None when it cannot be."""
        if self._model is None or key != self._key or _structure(fresh) != _structure(self._model):
            return None
        for target, value in zip(self._model.variables, fresh.variables):
            target.assign(value)
        for variable, start in zip(self._model.optimizer.variables, self._optimizer_start):
            variable.assign(start)
        return self._model

    def keep(self, model: keras.Model, key: tuple) -> None:
        """Keep a just-compiled `model`; its optimizer is built now, to record its starting state."""
        model.optimizer.build(model.trainable_variables)
        self._model, self._key = model, key
        self._optimizer_start = [keras.ops.convert_to_numpy(v) for v in model.optimizer.variables]

    def release(self) -> None:
        """Forget the model (a run that keeps its fold's model: the next fold must not overwrite it)."""
        self._model, self._key, self._optimizer_start = None, None, None


def _structure(model: keras.Model) -> tuple:
    """What the traced functions depend on: the input and output shapes (a text fold's sequence length)
    and the variables' shapes (its vocabulary size)."""
    shapes = lambda tensors: [(tuple(t.shape), str(t.dtype)) for t in tensors]  # noqa: E731
    try:
        return type(model), shapes(model.inputs), shapes(model.outputs), shapes(model.variables)
    except (AttributeError, TypeError, ValueError):    # not a functional model: never taken for another
        return (id(model),)


@dataclass
class TrainResult:
    model: keras.Model
    history: dict
    metrics: dict
    run_dir: Path
    is_chief: bool = True


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
    reuse: CompiledModel | None = None,
) -> TrainResult:
    """Train `build_model()` on `splits` and evaluate it on the held-out split.

    `preprocess` maps a batch of raw examples (uint8 pixels, or strings) to model inputs; it is
    the same Keras layer the export bakes in. `run_config` is saved as config.json, with what
    this function resolved (precision, XLA, strategy, batch sizes, split counts) added. `strategy`
    is the one the CLI made at program start (None: made here from `config`). `reuse`: the compiled
    model the runs of a cross-validation share (CompiledModel; single-process, single-model runs only).
    """
    if config.ensemble < 1:
        raise CnnappError(f"--ensemble: the number of models must be at least 1. Received: ensemble={config.ensemble}")
    if strategy is None:
        strategy = runtime.make_strategy(config.strategy, config.cluster)
    if config.ensemble > 1:
        from cnnapp.training.ensemble import train_ensemble
        return train_ensemble(build_model=build_model, splits=splits, preprocess=preprocess, config=config,
                              run_dir=Path(run_dir), run_config=run_config, augment=augment, strategy=strategy)
    worker = runtime.worker_of_strategy(strategy, config.cluster)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        keras_patch.apply()
    run_dir = Path(run_dir)
    if worker.count == 1:
        return _train(strategy, worker, run_dir, run_dir / "backup", build_model=build_model, splits=splits,
                      preprocess=preprocess, config=config, run_config=run_config, augment=augment, reuse=reuse)
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
           preprocess, config: TrainConfig, run_config: dict, augment, reuse: CompiledModel | None = None) -> TrainResult:
    run_dir.mkdir(parents=True, exist_ok=True)
    resuming = claim_backup(backup_dir, resume_fingerprint(splits, preprocess, config, run_config),
                            fresh=config.fresh, name=config.name)
    # A run that exports keeps its backup until the export is written (cnnapp.training.run), so a failed
    # export is redone without training. Not under multi-worker: the workers would have to agree on it.
    keep_backup = config.export and worker.count == 1
    finished = finished_training(backup_dir, run_dir, config) if resuming and worker.count == 1 else None
    if finished is not None:
        model, history, metrics = finished
        if not keep_backup:   # rerun with --no-export: nothing will remove it after an export
            shutil.rmtree(backup_dir, ignore_errors=True)
        return TrainResult(model=model, history=history, metrics=metrics, run_dir=run_dir, is_chief=worker.is_chief)
    if resuming:
        log.info("resuming the interrupted run from its backup in %s", backup_dir)
    runtime.seed_everything(config.seed, deterministic=config.deterministic)
    with runtime.precision_policy(runtime.resolve_precision(config.precision,
                                                                     cpu_bfloat16=bool(config.cpu_bfloat16))) as precision:
        result = _fit(strategy, worker, run_dir, backup_dir, resuming=resuming, precision=precision,
                      build_model=build_model, splits=splits, preprocess=preprocess, config=config,
                      run_config=run_config, augment=augment, keep_backup=keep_backup, reuse=reuse)
    if keep_backup:
        mark_finished(backup_dir, config)
    return result


def _fit(strategy, worker: runtime.Worker, run_dir: Path, backup_dir: Path, *, resuming: bool, precision: str,
         build_model, splits, preprocess, config: TrainConfig, run_config: dict, augment,
         keep_backup: bool = False, reuse: CompiledModel | None = None) -> TrainResult:
    jit = runtime.resolve_jit(config.jit)
    replicas = strategy.num_replicas_in_sync
    fingerprint = check_workers_agree(splits, preprocess, strategy) if worker.count > 1 else None
    global_batch = config.batch_size * replicas

    # Cached between epochs by size: arrays in memory as always; decoded files in memory when they fit the
    # budget, else on disk under the run (shared by its CV folds), or as --cache says.
    top_dir = Path(config.run_dir) / (config.name or run_dir.name)
    examples = len(splits.y_train) + len(splits.y_val) + (
        len(splits.y_test) if splits.y_test is not None and splits.x_test is not splits.x_val else 0)
    cache = plan_cache(config.cache, reader=splits.reader, examples=examples,
                       default_folder=top_dir / "cache" / (f"worker-{worker.index}" if worker.count > 1 else ""),
                       budget=config.memory_budget)
    cache_label = run_dir.name if run_dir.name != (config.name or "") else "run"
    counter = DecodeCounter() if splits.reader is not None and splits.reader.skip_bad else None
    train_ds, val_ds = _inputs(splits, strategy, worker, preprocess=preprocess, augment=augment, config=config,
                               global_batch=global_batch, cache=cache, cache_label=cache_label, counter=counter)

    with strategy.scope():
        model = build_model()
        steps_per_epoch = -(-len(splits.y_train) // global_batch)
        steps = config.epochs * steps_per_epoch if config.lr_schedule == "onecycle" else None
        # Several steps per graph call cut Python's share of a small CNN's step on a CPU (the keras-io
        # net trained ~1.5x faster with 32 here); one under multi-worker, where the patch is checked.
        # Keras holds a call's batches together, so a call takes at most CALL_BYTES of them (128 photos at
        # 128 px are 25 MB a batch: 2 a call, not 32).
        per_call = min(config.steps_per_execution, steps_per_epoch,
                       max(1, CALL_BYTES // max(1, global_batch * example_input_bytes(splits, preprocess))))
        per_call = per_call if worker.count == 1 else 1
        compiled_as = (config.optimizer, config.learning_rate, config.ema, steps, config.label_smoothing, jit, per_call,
                       precision)
        kept = reuse.take(model, compiled_as) if reuse is not None and worker.count == 1 else None
        if kept is not None:
            model = kept
        else:
            model.compile(optimizer=make_optimizer(config.optimizer, config.learning_rate, config.ema,
                                                   onecycle_steps=steps),
                          loss=make_loss(config.label_smoothing or 0.0), metrics=["accuracy"], jit_compile=jit,
                          steps_per_execution=per_call)
            if reuse is not None and worker.count == 1:
                reuse.keep(model, compiled_as)

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
    callbacks = build_callbacks(config, run_dir, resuming=resuming, backup_dir=backup_dir,
                                keep_backup=keep_backup) + [timer]
    if progress_verbosity(config) == 2:   # one line an epoch: a line every 10 s inside long ones too
        callbacks.append(EpochHeartbeat())
    start = time.perf_counter()
    if splits.reader is not None and splits.reader.skip_bad:
        # Files that fail to decode drop out, so the epoch's length is found by reading it to its end;
        # Keras warns when it finds it that way. The files skipped are counted below instead.
        warnings.filterwarnings("ignore", message="Your input ran out of data")
    try:
        model.fit(train_ds, validation_data=val_ds, epochs=config.epochs, callbacks=callbacks,
                  class_weight=weights,
                  shuffle=False, verbose=progress_verbosity(config))  # train_ds shuffles itself
    except tf.errors.OpError as e:
        if splits.reader is None or not is_decode_error(e):
            raise
        raise name_undecodable((splits.x_train, splits.x_val), splits.reader, e) from None
    skipped_in_training = 0
    if counter is not None and timer.seconds:   # the examples decoded per epoch, against the files listed
        skipped_in_training = max(0, len(splits.y_train) // worker.count - counter.value // len(timer.seconds))
        if skipped_in_training:
            log.warning("%d training file(s) failed to decode and were skipped (--skip-bad-images)",
                        skipped_in_training)
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
            save_model_atomically(model, run_dir / "best.keras")
    # Every worker holds the same weights, so each scores the whole held-out split itself (a
    # distributed predict() would gather the DATA-sharded batches out of order).
    try:
        # Scoring costs a model call a batch: arrays (sentences, small images) go 256 at a time at least.
        eval_batch = global_batch if splits.reader is not None else max(global_batch, 256)
        eval_name, report = held_out_report(model, splits, preprocess=preprocess, batch_size=eval_batch,
                                            tta=tta_views(config.tta), cache=cache,
                                            cache_label=f"{cache_label}-validation")
    except tf.errors.OpError as e:
        if splits.reader is None or not is_decode_error(e):
            raise
        raise name_undecodable((splits.held_out()[1],), splits.reader, e) from None
    history = read_history_csv(run_dir / "history.csv")
    steady = timer.seconds[1:] or timer.seconds
    metrics = run_metrics(
        splits, eval_name, report, best_val_accuracy=max(history.get("val_accuracy", [0.0])),
        epochs_run=len(history.get("loss", [])), train_seconds=train_seconds,
        epoch_seconds=[round(s, 3) for s in timer.seconds], first_step_seconds=timer.first_step_seconds,
        time_to_accuracy=time_to_accuracy(history, config.accuracy_levels),
        examples_per_second=round(len(splits.y_train) / (sum(steady) / len(steady)), 1) if steady else None)
    if splits.reader is not None:   # found by the file check before training, or failing to decode in it
        metrics["skipped_files"] = (int(splits.description.get("skipped_files", 0)) + skipped_in_training
                                    + int(report.get("skipped_files", 0)))
    write_json(run_dir / "metrics.json", metrics)
    plot_history(history, run_dir / "learning_curves.png", levels=config.accuracy_levels)
    plot_confusion(report, run_dir / "confusion_matrix.png")
    log.debug("%s accuracy %.4f (macro F1 %.4f) on %d examples; %s/metrics.json",
             eval_name, report["accuracy"], report["macro_f1"], report["count"], run_dir)
    return TrainResult(model=model, history=history, metrics=metrics, run_dir=run_dir, is_chief=worker.is_chief)


def _inputs(splits: Splits, strategy, worker: runtime.Worker, *, preprocess, augment, config: TrainConfig,
            global_batch: int, cache, cache_label: str, counter):
    """The training and validation datasets. Arrays are sharded by Keras (DATA); files are read by each
    worker of a multi-worker run from its own share (every `count`-th file from its index, the same number
    on every worker, so all take the same steps) and batched at its part of the global batch."""
    def part(x, y, label, **kw):
        return make_input(x, y, reader=splits.reader, preprocess=preprocess, cache=cache,
                          label=f"{cache_label}-{label}", **kw)
    if worker.count == 1 or splits.reader is None:
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return (part(splits.x_train, splits.y_train, "train", batch_size=global_batch, augment=augment,
                     shuffle_seed=config.seed, options=options, counter=counter),
                part(splits.x_val, splits.y_val, "validation", batch_size=global_batch, options=options))

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF

    per_worker = global_batch // worker.count
    train_x, train_y = _share(splits.x_train, splits.y_train, worker)
    val_x, val_y = _share(splits.x_val, splits.y_val, worker)
    log.info("worker %d of %d reads its share: %s of %s training files, %s of %s validation files",
             worker.index, worker.count, f"{len(train_y):,}", f"{len(splits.y_train):,}", f"{len(val_y):,}",
             f"{len(splits.y_val):,}")
    if config.dump_weights_dir:   # test hook: the files this worker read
        dump = Path(config.dump_weights_dir) / f"worker-{worker.index}.files.txt"
        dump.parent.mkdir(parents=True, exist_ok=True)
        dump.write_text("".join(f"{p}\n" for p in train_x), encoding="utf-8")
    train = part(train_x, train_y, "train", batch_size=per_worker, augment=augment, shuffle_seed=config.seed,
                 options=options, counter=counter)
    val = part(val_x, val_y, "validation", batch_size=per_worker, options=options)
    return (strategy.distribute_datasets_from_function(lambda ctx: train),
            strategy.distribute_datasets_from_function(lambda ctx: val))


def _share(x, y, worker: runtime.Worker):
    """Every `worker.count`-th example from `worker.index`, cut to the smallest share so every worker
    takes the same number of steps (at most count - 1 examples of an epoch are left out)."""
    each = len(y) // worker.count
    return np.asarray(x)[worker.index::worker.count][:each], np.asarray(y)[worker.index::worker.count][:each]
