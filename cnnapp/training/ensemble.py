"""Ensembles: N members trained through the one loop (seeds seed, seed+1, ...; the same splits and
preprocessing), averaged into one model that evaluates, saves and exports as a single one does."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import keras
import numpy as np

from cnnapp.atomic import save_model_atomically
from cnnapp.config import TrainConfig
from cnnapp.data import Splits
from cnnapp.training import loop
from cnnapp.training.evaluation import held_out_report, plot_confusion, probabilities, run_metrics, write_json
from cnnapp.training.recipe import tta_views

log = logging.getLogger(__name__)


def average_models(members: list[keras.Model], *, name: str) -> keras.Model:
    """One functional model whose output is the mean of the members' class probabilities.

    Each member is nested as `member1`, `member2`, ... (they share the input), so the result saves,
    loads and exports as any single model does.
    """
    first = members[0]
    inputs = keras.Input(shape=first.input_shape[1:], dtype=first.inputs[0].dtype, name=first.inputs[0].name)
    outputs = [keras.Model(m.inputs, m.outputs[0], name=f"member{i + 1}")(inputs) for i, m in enumerate(members)]
    return keras.Model(inputs, keras.layers.Average(name="average")(outputs), name=name)


def train_ensemble(*, build_model, splits: Splits, preprocess, config: TrainConfig, run_dir: Path,
                   run_config: dict, augment, strategy) -> TrainResult:
    """Train `config.ensemble` members through the single-model path, then evaluate their average."""
    n = config.ensemble
    member_results = []
    for i in range(n):
        member_cfg = dataclasses.replace(config, ensemble=1, seed=config.seed + i)
        log.info("ensemble: member %d of %d (seed %d)", i + 1, n, member_cfg.seed)
        member_results.append(loop.train_classifier(
            build_model=build_model, splits=splits, preprocess=preprocess, config=member_cfg,
            run_dir=run_dir / f"member{i + 1}", augment=augment, strategy=strategy,
            run_config={**run_config, "ensemble_member": {"index": i + 1, "of": n, "seed": member_cfg.seed}}))
    model = average_models([r.model for r in member_results], name=f"{member_results[0].model.name}_ensemble{n}")

    eval_name, report = held_out_report(model, splits, preprocess=preprocess, batch_size=config.batch_size,
                                        tta=tta_views(config.tta))
    val_probs, val_labels = probabilities(model, splits.x_val, splits.y_val, preprocess=preprocess,
                                          batch_size=config.batch_size, reader=splits.reader, label="validation")
    member_acc = [r.metrics[eval_name]["accuracy"] for r in member_results]
    metrics = run_metrics(
        splits, eval_name, report, best_val_accuracy=float(np.mean(val_probs.argmax(axis=1) == val_labels)),
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
        save_model_atomically(model, run_dir / "best.keras")
    log.info("ensemble of %d: %s accuracy %.4f (members: mean %.4f, min %.4f, max %.4f); %s/metrics.json",
             n, eval_name, report["accuracy"], metrics["ensemble"]["member_accuracy"]["mean"], min(member_acc),
             max(member_acc), run_dir)
    return loop.TrainResult(model=model, history={}, metrics=metrics, run_dir=run_dir, is_chief=is_chief)
