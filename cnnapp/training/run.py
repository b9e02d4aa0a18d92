"""`run(task, train=..., model=...)`: the one run path for every model and kind of data.

    task.load() -> RawData -> splits (fixed, or K folds x N seeds) -> task.prepare() (fit the
    preprocessor on the training split) -> the registered model factory -> the one training loop
    (single model or --ensemble) -> one evaluation -> runs/<name>/ -> one export function

Two protocols, as the papers report them:
- fixed splits (a test file or split, or a seeded hold-out): one training run;
- `cv=K, repeats=N` (stratified K-fold, N seeds; Kim's MR protocol, Zhang & Wallace's mean (min,
  max)): one run per fold in runs/<name>/cv/, then the exported model is trained on all the data
  (or taken from the fold `export_fold` picks).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from cnnapp import layout
from cnnapp.config import ModelChoice, TrainConfig, to_dict
from cnnapp.data import RawData, Splits, make_splits, stratified_folds
from cnnapp.errors import CnnappError
from cnnapp.models import DEFAULT_MODEL, ModelSpec, get_model
from cnnapp.run_lock import run_folder_lock
from cnnapp.tasks import Prepared, export_model, save_preprocessor
from cnnapp.training.evaluation import write_json
from cnnapp.training.loop import CompiledModel, TrainResult, train_classifier
from cnnapp.training.resume import FINISHED_FILE, remove_finished_backups
from cnnapp.training.input import check_cache
from cnnapp.training.recipe import check_class_weight

log = logging.getLogger(__name__)
MAX_SEED = 2**32 - 1   # numpy's and TensorFlow's seeds are 32-bit


@dataclass
class RunOutcome:
    """What a run did: the model that was (or would be) exported, the export, the CV summary."""

    run_dir: Path
    result: TrainResult | None
    export_dir: Path | None
    cv: dict | None = None
    exported_from: str = ""               # which model was exported, in words
    prepared: Prepared | None = None      # the preprocessing of `result.model`
    plots: list[Path] = field(default_factory=list)


def run(task, *, train: TrainConfig, model: ModelChoice = ModelChoice(), strategy=None) -> RunOutcome:
    """Train, evaluate and (on the chief) export a classifier for `task` (an ImageTask or SentenceTask)."""
    spec = get_model(model.name, kind=task.kind)
    spec.check_options(model.options)
    check_protocol(train)
    if train.name is not None:   # before any data is read
        layout.check_model_name(train.name)
    if hasattr(task, "preflight"):
        task.preflight(batch_size=train.batch_size, model_options={**spec.options(), **model.options})
    with contextlib.ExitStack() as held:
        if train.name is not None:   # the run folder is this run's before its data is read
            held.enter_context(hold_run_folder(train, train.name, strategy))
        data, source = task.load()
        if model.name is None and data.info.get("model"):
            spec = preset_model(data.info["model"], task.kind, model.options)
        name = layout.check_model_name(train.name or data.name, arg="--name" if train.name else "--data")
        if train.name is None:
            held.enter_context(hold_run_folder(train, name, strategy))
        train = dataclasses.replace(train, name=name)
        run_dir = Path(train.run_dir) / name
        if train.export:
            check_writable(Path(train.export_base) / name, "--export-base", train.export_base)
        run_config = {"command": f"train-{task.kind}", "source": source, "task": task.describe(),
                      "model": {"name": spec.name, "options": model.options}}
        with out_of_space_is_one_line("--run-dir", train.run_dir, lambda: kept_after_failure(run_dir)):
            return _run(task, data, train=train, spec=spec, model=model, strategy=strategy, run_dir=run_dir,
                        run_config=run_config, name=name)


def hold_run_folder(train: TrainConfig, name: str, strategy):
    """The lock of runs/<name> for this run (`cnnapp.run_lock`), after checking that it can be
    written (before training, not after it). Each worker of a multi-worker run locks its own file."""
    from cnnapp.training import runtime
    run_dir = Path(train.run_dir) / name
    check_writable(run_dir, "--run-dir", train.run_dir)
    worker = runtime.worker_of_strategy(strategy, train.cluster) if strategy is not None else \
        runtime.worker_of(train.cluster)
    return run_folder_lock(run_dir, name=name, worker_index=worker.index)


def preset_model(name: str, kind: str, options: dict) -> ModelSpec:
    """The model a data source picks when --model is not given (photo folders: vgg), or a one-line error
    when an option the user set belongs to another model."""
    spec = get_model(name, kind=kind)
    unknown = sorted(set(options) - set(spec.options()))
    if unknown:
        key = unknown[0]
        raise CnnappError(
            f"--{key.replace('_', '-')}: this data's default model is {spec.name}, which takes no {key!r} (it takes "
            f"{', '.join(sorted(spec.options()))}); pass --model {DEFAULT_MODEL[kind]} to use that option. "
            f"Received: {key}={options[key]!r}")
    return spec


SPACE_ERRNOS = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}
SPACE_MESSAGES = ("No space left on device", "File too large", "Disk quota exceeded")


@contextlib.contextmanager
def out_of_space_is_one_line(arg: str, value, kept: Callable[[], str]):
    """A full disk (or a file size limit) is one line naming the full folder's option (`arg`: --run-dir
    while training, --export-base while exporting), what was kept (`kept()`) and how to go on, instead
    of a traceback."""
    import tensorflow as tf
    try:
        yield
    except (OSError, tf.errors.OpError) as e:
        text = getattr(e, "message", None) or str(e)
        if getattr(e, "errno", None) not in SPACE_ERRNOS and not any(m in text for m in SPACE_MESSAGES):
            raise
        reason = next((m for m in SPACE_MESSAGES if m in text), None) or os.strerror(e.errno)
        where = f" {e.filename}" if getattr(e, "filename", None) else ""
        raise CnnappError(f"{arg}: {reason} while writing{where}; {kept()}. "
                          f"Received: {arg.lstrip('-').replace('-', '_')}={value}") from None


def kept_after_failure(run_dir: Path) -> str:
    """What an interrupted run left that a rerun uses, and how to go on, in words."""
    backups = sorted(p for p in run_dir.glob("**/training_metadata.json") if "backup" in p.parts)
    if backups and all((p.parent / FINISHED_FILE).exists() for p in backups):
        return (f"the training finished and is kept with its backup in {run_dir}; free some space and run the "
                f"same command again to finish and export it without training again")
    if backups:
        meta = json.loads(backups[0].read_text(encoding="utf-8"))
        return (f"kept the backup of epoch {meta.get('epoch')} in {backups[0].parent}"
                f"{' and the best checkpoint ' + str(run_dir / 'best.keras') if (run_dir / 'best.keras').exists() else ''}"
                f"; free some space and run the same command again to resume from it")
    if (run_dir / "best.keras").exists():
        return (f"kept the trained model in {run_dir / 'best.keras'} (no export was written); free some space and "
                f"run the same command again to train and export it")
    return "nothing was kept; free some space and run the command again"


def kept_after_failed_export(run_dir: Path, export_base) -> str:
    """What a run whose export failed keeps, in words: all of its training."""
    return (f"the training finished and is kept in {run_dir} (best.keras, metrics.json and the backup); no "
            f"version was written; free some space in {export_base} and run the same command again to export "
            f"it without training again")


def _run(task, data: RawData, *, train: TrainConfig, spec, model: ModelChoice, strategy, run_dir: Path,
         run_config: dict, name: str) -> RunOutcome:
    fit = Fitter(task, spec, model.options, strategy)
    summary = None
    if train.cv is None:
        # A run that reads nothing of its validation score (its last epoch kept, one-cycle followed to
        # the end) trains on all the training part and shows the held-out part's curve (photo folders:
        # train/ and validation/); any other run holds its validation split out of the training part.
        reads = train.for_task(task.kind, len(data.y), data.info.get("train")).reads_validation
        splits = data.to_splits(seed=train.seed,
                                validate_on_test=not reads and not data.info.get("selects_on_validation"))
        result, prepared = fit(splits, data, train, run_dir, run_config)
        what = "the model trained above"
    else:
        summary, kept = cross_validate(data, fit, train=train, run_dir=run_dir, run_config=run_config)
        if train.export_fold:
            result, prepared = kept
            what = f"fold {train.export_fold} of the first seed ({train.seed})"
        elif train.export:
            log.info("cv done; training the model to export on all %d examples (10%% dev)", len(data.y))
            splits = make_splits(data.x, data.y, data.class_names, seed=train.seed, test_fraction=0.0, reader=data.reader,
                                 description={**data.description, "validation":
                                              "seeded stratified 10% of all the data (after cross-validation)"})
            result, prepared = fit(splits, data, train, run_dir / "all", {**run_config, "cv_export": "all data"})
            what = "a model trained on all the data after the folds (its accuracy is on its 10% dev split)"
        else:
            return RunOutcome(run_dir=run_dir, result=None, export_dir=None, cv=summary,
                              exported_from="nothing (--no-export)", plots=[run_dir / "cv.json"])
    export_dir = None
    if train.export and result.is_chief:
        from cnnapp.progress import heartbeat
        with heartbeat(f"exporting {name}"), out_of_space_is_one_line(
                "--export-base", train.export_base, lambda: kept_after_failed_export(Path(result.run_dir),
                                                                                     train.export_base)):
            export_dir = _export(task, result, prepared, data, train, spec, what, name)
        remove_finished_backups(Path(result.run_dir))   # only now: a failed export is redone without training
    plots = [p for p in (result.run_dir / "learning_curves.png", result.run_dir / "confusion_matrix.png") if p.exists()]
    return RunOutcome(run_dir=run_dir, result=result, export_dir=export_dir, cv=summary,
                      exported_from=what if export_dir else "nothing (--no-export)", prepared=prepared, plots=plots)


def _export(task, result, prepared, data, train: TrainConfig, spec, what: str, name: str) -> Path:
    return export_model(
        task, result.model, prepared, class_names=data.class_names, export_base=train.export_base, name=name,
        tta=task.tta(data, train.tta), litert=train.litert,
        metadata={"model": spec.name, "run_dir": str(result.run_dir), "trained_on": what,
                  "ensemble": train.ensemble, "metrics": headline(result.metrics)})


def check_writable(folder: Path, arg: str, value) -> None:
    """A one-line error unless `folder` can be made and written: a probe file is created and removed in
    it, or in its nearest existing parent (where the missing folders would be made). Nothing is left
    behind, and several workers may probe the same folder at once."""
    existing = Path(folder)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise CnnappError(f"{arg}: {existing} is a file, not a folder. Received: {value}")
    try:
        fd, probe = tempfile.mkstemp(prefix=".cnnapp-probe-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise CnnappError(f"{arg}: cannot write in {existing} ({e.strerror}). Received: {value}") from None


def check_protocol(train: TrainConfig) -> None:
    check_class_weight(train.class_weight)      # before any data is read
    check_cache(train.cache)
    last_seed = train.seed + max(train.ensemble, train.repeats) - 1   # members and repeats use seed, seed+1, ...
    if not 0 <= train.seed or last_seed > MAX_SEED:
        raise CnnappError(f"--seed: seeds are 0..{MAX_SEED}, and --ensemble/--repeats use seed, seed+1, ... up to "
                          f"{last_seed}. Received: seed={train.seed}")
    if train.cv is None:
        if train.repeats != 1 or train.export_fold is not None:
            raise CnnappError(f"--repeats/--export-fold need --cv. Received: repeats={train.repeats}, "
                              f"export_fold={train.export_fold}")
        return
    if train.cv < 2:
        raise CnnappError(f"--cv: needs at least 2 folds. Received: cv={train.cv}")
    if train.export_fold is not None and not 1 <= train.export_fold <= train.cv:
        raise CnnappError(f"--export-fold: must be in 1..{train.cv}. Received: export_fold={train.export_fold}")


def headline(metrics: dict) -> dict:
    ev = metrics["evaluated_on"]
    return {"evaluated_on": ev, "accuracy": metrics[ev]["accuracy"], "macro_f1": metrics[ev]["macro_f1"]}


class Fitter:
    """One training run on one set of splits: prepare, build, train, save the preprocessor."""

    def __init__(self, task, spec: ModelSpec, options: dict, strategy):
        self.task, self.spec, self.options, self.strategy = task, spec, options, strategy

    def __call__(self, splits: Splits, data: RawData, train: TrainConfig, run_dir: Path,
                 run_config: dict, reuse: CompiledModel | None = None) -> tuple[TrainResult, Prepared]:
        train = dataclasses.replace(train.for_task(self.task.kind, len(splits.y_train), data.info.get("train")),
                                    tta=self.task.tta(data, train.tta))
        resolved_options = {**self.spec.options(), **self.options}
        prepared = self.task.prepare(data, splits, model_options=resolved_options, seed=train.seed)
        result = train_classifier(
            build_model=lambda: self.spec.build(prepared.model_args, self.options),
            splits=splits, preprocess=prepared.preprocess, augment=self.task.augmenter(data, train.seed), config=train,
            run_dir=run_dir, strategy=self.strategy, reuse=reuse,
            run_config={**run_config, "model_resolved_options": resolved_options,   # for the resume fingerprint
                        "preprocessing": prepared.info, **to_dict(train)})
        if prepared.info.get("embedding_coverage") is not None:
            result.metrics["embedding_coverage"] = prepared.info["embedding_coverage"]
            if result.is_chief:
                write_json(Path(result.run_dir) / "metrics.json", result.metrics)
        if result.is_chief:   # `cnnapp inspect` loads it (in each ensemble member's run too)
            members = [Path(m["run_dir"]) for m in result.metrics.get("ensemble", {}).get("runs", [])]
            for folder in [Path(result.run_dir), *members]:
                save_preprocessor(prepared, folder)
        return result, prepared


def cross_validate(data: RawData, fit: Fitter, *, train: TrainConfig, run_dir: Path, run_config: dict):
    """K-fold CV repeated with seeds seed, seed+1, ...; writes and returns the cv.json summary, and
    the (TrainResult, Prepared) of the fold `train.export_fold` names (first seed), if any.

    Each fold trains in run_dir/cv/seed<s>/fold<f>/ (export off), with 10% of its training part
    held out for early stopping.
    """
    k, repeats = train.cv, train.repeats
    if data.has_fixed_splits:
        raise CnnappError("--cv: the data has fixed dev/test splits; cross-validation is for data without "
                          f"them (drop --dev/--test, or drop --cv). Received: cv={k}")
    smallest = int(np.bincount(data.y).min())
    if smallest < k:
        raise CnnappError(f"--cv: the smallest class has {smallest} examples, fewer than the folds. Received: cv={k}")
    fold_cfg = dataclasses.replace(train, export=False, cv=None, repeats=1, export_fold=None)
    compiled = CompiledModel()     # one compiled model for the folds: Keras traces its functions once
    start = time.perf_counter()
    # Folds whose shapes differ (a text fold's own vocabulary and length) still build a model each; TensorFlow
    # counts their first traces as retracing of one function (keyed by its code) and warns after five.
    tf_log = logging.getLogger("tensorflow")
    tf_log.addFilter(_new_fold_models)
    try:
        return _folds(data, fit, train=train, run_dir=run_dir, run_config=run_config, k=k, repeats=repeats,
                      fold_cfg=fold_cfg, compiled=compiled, start=start)
    finally:
        tf_log.removeFilter(_new_fold_models)


def _new_fold_models(record: logging.LogRecord) -> bool:
    return "triggered tf.function retracing" not in record.getMessage()


def _folds(data, fit, *, train, run_dir, run_config, k, repeats, fold_cfg, compiled, start):
    accuracies, folds_out, kept = [], [], None
    total, done = k * repeats, 0
    for r in range(repeats):
        seed = train.seed + r
        repeat_acc = []
        for f, test_idx in enumerate(stratified_folds(data.y, k, seed)):
            train_idx = np.setdiff1d(np.arange(len(data.y)), test_idx)
            splits = data.fold_splits(train_idx, test_idx, seed=seed, what=f"fold {f + 1}/{k} (seed {seed})")
            log.info("cv %d/%d: seed %d fold %d/%d: train %d, dev %d, test %d%s", done + 1, total, seed, f + 1, k,
                     len(splits.y_train), len(splits.y_val), len(splits.y_test), _eta(start, done, total))
            result, prepared = fit(splits, data, dataclasses.replace(fold_cfg, seed=seed),
                                   run_dir / "cv" / f"seed{seed}" / f"fold{f + 1}",
                                   {**run_config, "cv": {"k": k, "fold": f + 1, "seed": seed}}, reuse=compiled)
            done += 1
            acc = float(result.metrics["test"]["accuracy"])
            repeat_acc.append(acc)
            folds_out.append({"seed": seed, "fold": f + 1, "accuracy": round(acc, 4),
                              "epochs_run": result.metrics["epochs_run"], "run_dir": str(result.run_dir)})
            if train.export_fold and (r, f + 1) == (0, train.export_fold):
                kept = (result, prepared)
                compiled.release()     # its model is exported: the next fold gets a model of its own
        accuracies.append(repeat_acc)
        if repeats > 1:     # one repeat: its mean is the summary's, said once (by the caller)
            log.info("cv seed %d: mean accuracy %.4f over %d folds", seed, float(np.mean(repeat_acc)), k)
    repeat_means = [float(np.mean(a)) for a in accuracies]
    all_acc = np.asarray(accuracies).ravel()
    summary = {
        "protocol": f"stratified {k}-fold cross-validation x {repeats} seed(s)",
        "k": k, "repeats": repeats, "seeds": [train.seed + r for r in range(repeats)],
        # Zhang & Wallace report mean (min, max) of the K-fold mean over repeated runs; with one
        # repeat, min and max are over folds.
        "mean": round(float(np.mean(repeat_means)), 4),
        "min": round(min(repeat_means) if repeats > 1 else float(all_acc.min()), 4),
        "max": round(max(repeat_means) if repeats > 1 else float(all_acc.max()), 4),
        "min_max_over": "repeats" if repeats > 1 else "folds",
        "repeat_means": [round(m, 4) for m in repeat_means],
        "fold_min": round(float(all_acc.min()), 4), "fold_max": round(float(all_acc.max()), 4),
        "fold_std": round(float(all_acc.std()), 4),
        "wall_seconds": round(time.perf_counter() - start, 1),
        "folds": folds_out,
        "data": data.description, "class_names": data.class_names, "run_dir": str(run_dir),
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "cv.json", summary)
    log.debug("cv: accuracy mean %.4f (min %.4f, max %.4f over %s); %s/cv.json", summary["mean"], summary["min"],
             summary["max"], summary["min_max_over"], run_dir)
    return summary, kept


def _eta(start: float, done: int, total: int) -> str:
    if not done:
        return ""
    left = (time.perf_counter() - start) / done * (total - done)
    return f"; about {left / 60:.1f} min left"
