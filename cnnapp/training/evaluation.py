"""Held-out evaluation: class probabilities through the training input pipeline, accuracy, per-class
precision/recall/F1, confusion matrix, metrics.json, and PNG plots."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]) -> dict:
    """Accuracy, per-class and macro precision/recall/F1/support, and the confusion matrix
    (rows: true class, columns: predicted class)."""
    k = len(class_names)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    tp = np.diag(cm).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(cm.sum(0) > 0, tp / cm.sum(0), 0.0)
        recall = np.where(cm.sum(1) > 0, tp / cm.sum(1), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    per_class = {
        name: {"precision": round(float(precision[i]), 4), "recall": round(float(recall[i]), 4),
               "f1": round(float(f1[i]), 4), "support": int(cm[i].sum())}
        for i, name in enumerate(class_names)
    }
    return {
        "accuracy": round(float(tp.sum() / max(cm.sum(), 1)), 4),
        "macro_f1": round(float(f1.mean()), 4),
        "count": int(cm.sum()),
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
        "class_names": list(class_names),
    }


def write_json(path: Path, payload) -> None:
    """Whole or absent, never half-written (a temporary file renamed into place)."""
    from cnnapp.atomic import write_atomically
    write_atomically(path, json.dumps(payload, indent=2) + "\n")


def _save_figure(fig, path: Path) -> None:
    import io

    from cnnapp.atomic import write_atomically
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=100, format=Path(path).suffix.lstrip(".") or "png")
    write_atomically(path, buffer.getvalue())


def plot_history(history: dict, path: Path, *, levels=()) -> None:
    """Loss and accuracy curves, train against validation; with `wall_seconds` in the history, a
    third panel: validation accuracy against wall time, with the time-to-accuracy levels."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    timed = bool(history.get("wall_seconds")) and bool(history.get("val_accuracy"))
    fig, axes = plt.subplots(1, 3 if timed else 2, figsize=(15 if timed else 10, 4))
    if timed:
        ax = axes[2]
        ax.plot(history["wall_seconds"], history["val_accuracy"], "o-", label="val_accuracy")
        for level in levels:
            ax.axhline(level, color="gray", lw=0.6, ls=":")
        ax.set_xlabel("wall seconds")
        ax.set_title("time to accuracy")
        ax.legend()
    for ax, key in zip(axes, ("loss", "accuracy")):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = history.get(prefix + key)
            if values:
                ax.plot(range(1, len(values) + 1), values, style, label=prefix + key)
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend()
    fig.tight_layout()
    _save_figure(fig, path)
    plt.close(fig)


def plot_confusion(report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cm = np.asarray(report["confusion_matrix"])
    names = report["class_names"]
    size = max(4, 0.6 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(names) <= 20:
        for (i, j), v in np.ndenumerate(cm):
            ax.text(j, i, str(v), ha="center", va="center",
                    color="white" if v > cm.max() / 2 else "black", fontsize=8)
    ax.set_title(f"accuracy {report['accuracy']:.4f}")
    fig.tight_layout()
    _save_figure(fig, path)
    plt.close(fig)


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


def probabilities(model, x, y, *, preprocess, batch_size: int, tta=None, reader=None, cache=None,
                  label: str = "held-out") -> tuple[np.ndarray, np.ndarray]:
    """(class probabilities, labels) of one part, batch by batch through the training input pipeline;
    `tta(batch) -> [views]` averages the model over test-time augmentation views, as the export does. The
    labels come through the pipeline with the examples, so a file skipped under --skip-bad-images drops
    out of both."""
    import keras

    from cnnapp.progress import Progress
    from cnnapp.training.input import CachePlan, make_input
    ds = make_input(x, y, batch_size=batch_size, preprocess=preprocess, reader=reader,
                    cache=cache or CachePlan("none"), label=label)

    def predict(batch):
        views = tta(batch) if tta else [batch]
        return np.mean([keras.ops.convert_to_numpy(model(v, training=False)) for v in views], axis=0)
    progress = Progress(f"evaluating on {label}", total=len(y), unit="examples")
    probs, labels = [], []
    for batch, batch_labels in ds:
        probs.append(predict(batch))
        labels.append(batch_labels.numpy())
        progress.update(sum(len(b) for b in labels))
    progress.done()
    if not probs:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.int64)
    return np.concatenate(probs), np.concatenate(labels)


def held_out_report(model, splits, *, preprocess, batch_size: int, tta=None, cache=None,
                    cache_label: str = "validation") -> tuple[str, dict]:
    """(split name, classification report) on the split a run reports: test, else validation. A disk cache
    of the validation part (`cache`, `cache_label`) is read again when that part is the one reported."""
    from cnnapp.training.input import CachePlan
    eval_name, x_eval, y_eval = splits.held_out()
    reuse = cache is not None and cache.mode == "disk" and x_eval is splits.x_val
    probs, labels = probabilities(model, x_eval, y_eval, preprocess=preprocess, batch_size=batch_size, tta=tta,
                                  reader=splits.reader, cache=cache if reuse else CachePlan("none"),
                                  label=cache_label if reuse else eval_name)
    report = classification_report(labels, probs.argmax(axis=1) if len(probs) else labels, splits.class_names)
    if len(labels) < len(y_eval):
        report["skipped_files"] = int(len(y_eval) - len(labels))
        log.warning("%d %s file(s) failed to decode and were skipped (--skip-bad-images)",
                    len(y_eval) - len(labels), eval_name)
    return eval_name, report


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
