"""Resuming an interrupted run: the fingerprint a backup must share with the run that resumes it,
and the one-line refusal of a backup written by a run with other settings."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from cnnapp.config import TrainConfig
from cnnapp.data import Splits
from cnnapp.errors import CnnappError

log = logging.getLogger(__name__)


def data_fingerprint(splits: Splits, preprocess) -> str:
    """The data's one hash (`Splits.fingerprint`: training and validation examples and labels, files by
    path, size and time), with the vocabulary when the preprocessing has one (text: adapted on the
    seeded training split)."""
    vocabulary = preprocess.get_vocabulary() if hasattr(preprocess, "get_vocabulary") else None
    return splits.fingerprint(vocabulary)


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


def resume_fingerprint(splits: Splits, preprocess, config: TrainConfig, run_config: dict) -> dict:
    """What a backup must share with the run that resumes it: a hash of the training and validation
    examples and labels (and the vocabulary), the class names, the model and its resolved options,
    the preprocessing, and the training options that shape the weights (`RESUME_TRAIN_FIELDS`)."""

    task = {k: v for k, v in (run_config.get("task") or {}).items() if k not in _COVERED_TASK_KEYS}
    preprocessing = dict(run_config.get("preprocessing") or {})
    if isinstance(preprocessing.get("embedding_coverage"), dict):   # its file paths may be spelled otherwise
        preprocessing["embedding_coverage"] = {k: v for k, v in preprocessing["embedding_coverage"].items()
                                               if k != "files"}

    return json.loads(json.dumps({
        "data": data_fingerprint(splits, preprocess),
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


# A run that exports keeps its backup after training, with this file beside it, until the export is
# written (`cnnapp.training.run`): a rerun after a failed or killed export finds the training finished
# and exports without training again. The settings that decide when training ends are in the file, so a
# rerun asking for more epochs resumes the backup instead.
FINISHED_FILE = "finished.json"
FINISH_FIELDS = ("epochs", "patience", "restore_best", "monitor", "lr_patience", "ema", "tta", "precision")
RUN_FILES = ("best.keras", "metrics.json", "history.csv")   # what the finished run left, read back


def mark_finished(backup_dir: Path, config: TrainConfig) -> None:
    from cnnapp.atomic import write_atomically
    write_atomically(backup_dir / FINISHED_FILE,
                     json.dumps({f: getattr(config, f) for f in FINISH_FIELDS}, default=str, sort_keys=True) + "\n")


def finished_training(backup_dir: Path, run_dir: Path, config: TrainConfig):
    """(model, history, metrics) of the finished training whose export is missing, read from `run_dir`;
    None when the backup is of an unfinished run, of other settings, or the run's files are gone."""
    try:
        marker = json.loads((backup_dir / FINISHED_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    now = json.loads(json.dumps({f: getattr(config, f) for f in FINISH_FIELDS}, default=str, sort_keys=True))
    if marker != now or not all((run_dir / f).is_file() for f in RUN_FILES):
        (backup_dir / FINISHED_FILE).unlink(missing_ok=True)   # training goes on from the backup
        return None
    import keras

    import cnnapp.training.recipe  # noqa: F401  (its OneCycle schedule is named in best.keras)
    from cnnapp.models import import_models
    from cnnapp.training.evaluation import read_history_csv
    import_models()   # cnnapp's own layers, which the checkpoint names
    model = keras.saving.load_model(str(run_dir / "best.keras"), compile=False)
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    log.info("the training in %s finished before (its export was not written); using it without training again",
             run_dir)
    return model, read_history_csv(run_dir / "history.csv"), metrics


def remove_finished_backups(run_dir: Path) -> None:
    """After the export is written: the backups its training kept (one, or one per ensemble member)."""
    for marker in sorted(Path(run_dir).glob(f"**/backup/{FINISHED_FILE}")):
        shutil.rmtree(marker.parent, ignore_errors=True)
