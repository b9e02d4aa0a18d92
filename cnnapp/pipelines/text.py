"""train-text: sentences -> TextVectorization -> sentence CNN -> shared training loop -> export.

Two protocols, as the papers report them:
- fixed splits (a test file or split, or a seeded 10% hold-out): one `train_classifier` run;
- `--cv K --repeats N` (stratified K-fold, N seeds; Kim's MR/Subj/CR/MPQA protocol, Zhang &
  Wallace's mean (min, max)): one `train_classifier` run per fold in runs/<name>/cv/, then the
  exported model is trained on all the data (or taken from the fold `--export-fold` picks).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np

from cnnapp.config import TextModelConfig, TrainConfig, to_dict
from cnnapp.data import make_splits
from cnnapp.data.text import TextData, TextRequest, read_text_data, to_splits
from cnnapp.errors import CnnappError
from cnnapp.export import export_text_classifier
from cnnapp.models.text_cnn import build_text_cnn
from cnnapp.preprocessing.text import default_sequence_length, make_vectorizer
from cnnapp.training import train_classifier
from cnnapp.training.evaluation import write_json

log = logging.getLogger(__name__)


def text_model_kwargs(model_cfg: TextModelConfig) -> dict:
    return dict(region_sizes=model_cfg.region_sizes, feature_maps=model_cfg.feature_maps,
                embedding_dim=model_cfg.embedding_dim, embedding_mode=model_cfg.embedding_mode,
                dropout=model_cfg.dropout, max_norm=model_cfg.max_norm, edge_padding=model_cfg.edge_padding)


def embeddings_paths(model_cfg: TextModelConfig) -> tuple[str, ...]:
    paths = model_cfg.embeddings_path
    if not paths:
        return ()
    return (paths,) if isinstance(paths, str) else tuple(paths)


def prepare_text(splits, model_cfg: TextModelConfig, *, standardize: str = "kim", seed: int = 1337):
    """Adapt the vectorizer on the training split only; build the pretrained embedding matrix.

    Returns (vectorizer, resolved config, embedding_matrix or None, coverage dict or None).
    """
    sequence_length = model_cfg.sequence_length or default_sequence_length(
        splits.x_train, min_length=max(model_cfg.region_sizes), standardize=standardize)
    vectorizer = make_vectorizer(splits.x_train, max_tokens=model_cfg.max_tokens,
                                 sequence_length=sequence_length, standardize=standardize)
    model_cfg = dataclasses.replace(model_cfg, sequence_length=sequence_length)
    paths = embeddings_paths(model_cfg)
    if model_cfg.embedding_mode == "rand":
        if paths:
            log.warning("--embeddings is ignored with --embedding-mode rand")
        return vectorizer, model_cfg, None, None
    if not paths:
        raise CnnappError(f"--embeddings: the {model_cfg.embedding_mode} mode needs pretrained vectors. "
                          f"Received: embedding_mode={model_cfg.embedding_mode} with no --embeddings file")
    from cnnapp.data.embeddings import build_embedding_matrix
    vocabulary = vectorizer.get_vocabulary()
    matrix, coverage = build_embedding_matrix(vocabulary, paths, seed=seed,
                                              token_counts=training_token_counts(vectorizer, splits.x_train))
    model_cfg = dataclasses.replace(model_cfg, embedding_dim=int(matrix.shape[1]))
    return vectorizer, model_cfg, matrix, coverage


def training_token_counts(vectorizer, sentences) -> dict[str, int]:
    """{vocabulary word: occurrences} in the training sentences, [UNK] counted as itself."""
    import tensorflow as tf
    ids = vectorizer(tf.constant(np.asarray(sentences, dtype=object).astype(str))).numpy().ravel()
    counts = np.bincount(ids[ids > 0], minlength=vectorizer.vocabulary_size())
    vocabulary = vectorizer.get_vocabulary()
    return {vocabulary[i]: int(c) for i, c in enumerate(counts) if c and i > 0}


def fit_split(splits, *, model_cfg: TextModelConfig, train_cfg: TrainConfig, run_dir: Path, standardize: str,
              run_config: dict):
    """One training run through the shared loop; returns (TrainResult, vectorizer, coverage)."""
    vectorizer, model_cfg, matrix, coverage = prepare_text(splits, model_cfg, standardize=standardize,
                                                           seed=train_cfg.seed)
    vocab_size = vectorizer.vocabulary_size()
    log.info("vocabulary %d tokens, sequence length %d", vocab_size, model_cfg.sequence_length)
    result = train_classifier(
        build_model=lambda: build_text_cnn(sequence_length=model_cfg.sequence_length, vocab_size=vocab_size,
                                           num_classes=splits.num_classes, embedding_matrix=matrix,
                                           **text_model_kwargs(model_cfg)),
        splits=splits, preprocess=vectorizer, config=train_cfg, run_dir=run_dir,
        run_config={**to_dict(train_cfg, model_cfg), **run_config, "embedding_coverage": coverage})
    if coverage is not None:
        result.metrics["embedding_coverage"] = coverage
        write_json(Path(result.run_dir) / "metrics.json", result.metrics)
    if result.is_chief:  # `cnnapp inspect` maps token ids back to words with it (in each member's run too)
        members = [Path(m["run_dir"]) for m in result.metrics.get("ensemble", {}).get("runs", [])]
        for folder in [Path(result.run_dir), *members]:
            (folder / "vocabulary.txt").write_text("\n".join(vectorizer.get_vocabulary()), encoding="utf-8")
    return result, vectorizer, coverage


def stratified_folds(y: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """K disjoint index arrays covering `y`, each class dealt round-robin after a seeded shuffle."""
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(y), dtype=np.int64)
    offset = 0
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        rng.shuffle(idx)
        # Continue the deal where the previous class stopped, so fold sizes differ by at most one.
        fold_of[idx] = (np.arange(len(idx)) + offset) % k
        offset = (offset + len(idx)) % k
    return [np.flatnonzero(fold_of == f) for f in range(k)]


def cross_validate(data: TextData, *, k: int, repeats: int, model_cfg: TextModelConfig, train_cfg: TrainConfig,
                   run_dir: Path, standardize: str, run_config: dict, keep_fold: tuple[int, int] | None = None):
    """K-fold CV repeated with seeds seed, seed+1, ...; writes and returns the cv.json summary.

    Each fold trains through `train_classifier` in run_dir/cv/seed<s>/fold<f>/ (export off), with
    10% of its training part held out for early stopping. `keep_fold=(repeat, fold)` also returns
    that fold's (TrainResult, vectorizer).
    """
    if k < 2:
        raise CnnappError(f"--cv: needs at least 2 folds. Received: cv={k}")
    smallest = int(np.bincount(data.y).min())
    if smallest < k:
        raise CnnappError(f"--cv: the smallest class has {smallest} sentences, fewer than the folds. Received: cv={k}")
    fold_cfg = dataclasses.replace(train_cfg, export=False)
    accuracies, folds_out, kept = [], [], None
    start = time.perf_counter()
    for r in range(repeats):
        seed = train_cfg.seed + r
        repeat_acc = []
        for f, test_idx in enumerate(stratified_folds(data.y, k, seed)):
            train_idx = np.setdiff1d(np.arange(len(data.y)), test_idx)
            splits = make_splits(data.x[train_idx], data.y[train_idx], data.class_names,
                                 x_test=data.x[test_idx], y_test=data.y[test_idx], seed=seed,
                                 description={**data.description, "test": f"fold {f + 1}/{k} (seed {seed})"})
            log.info("cv seed %d fold %d/%d: train %d, dev %d, test %d", seed, f + 1, k,
                     len(splits.y_train), len(splits.y_val), len(splits.y_test))
            result, vectorizer, _ = fit_split(
                splits, model_cfg=model_cfg, train_cfg=dataclasses.replace(fold_cfg, seed=seed),
                run_dir=run_dir / "cv" / f"seed{seed}" / f"fold{f + 1}", standardize=standardize,
                run_config={**run_config, "cv": {"k": k, "fold": f + 1, "seed": seed}})
            acc = float(result.metrics["test"]["accuracy"])
            repeat_acc.append(acc)
            folds_out.append({"seed": seed, "fold": f + 1, "accuracy": round(acc, 4),
                              "epochs_run": result.metrics["epochs_run"], "run_dir": str(result.run_dir)})
            if keep_fold == (r, f + 1):
                kept = (result, vectorizer)
        accuracies.append(repeat_acc)
        log.info("cv seed %d: mean accuracy %.4f over %d folds", seed, float(np.mean(repeat_acc)), k)
    repeat_means = [float(np.mean(a)) for a in accuracies]
    all_acc = np.asarray(accuracies).ravel()
    summary = {
        "protocol": f"stratified {k}-fold cross-validation x {repeats} seed(s)",
        "k": k, "repeats": repeats, "seeds": [train_cfg.seed + r for r in range(repeats)],
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
    log.info("cv: accuracy mean %.4f (min %.4f, max %.4f over %s); %s/cv.json", summary["mean"], summary["min"],
             summary["max"], summary["min_max_over"], run_dir)
    return summary, kept


@dataclasses.dataclass
class TextRunOutcome:
    """What train-text did: the exported model's run, its export, and the CV summary if any."""

    result: object                     # TrainResult of the model that was (or would be) exported
    export_dir: Path | None
    cv: dict | None = None
    exported_from: str = ""            # which model was exported, in words
    vectorizer: object = None          # the adapted TextVectorization of `result.model`


def train_text(*, request: TextRequest, model_cfg: TextModelConfig, train_cfg: TrainConfig,
               standardize: str = "kim", cv: int | None = None, repeats: int = 1,
               export_fold: int | None = None) -> TextRunOutcome:
    """Train, evaluate and (on the chief) export a sentence classifier."""
    data, source = read_text_data(request)
    name = train_cfg.name or data.name
    train_cfg = dataclasses.replace(train_cfg, name=name)
    run_dir = Path(train_cfg.run_dir) / name
    run_config = {"command": "train-text", "source": source, **dataclasses.asdict(request),
                  "standardize": standardize, "cv": cv, "repeats": repeats, "export_fold": export_fold}
    if cv is None:
        if repeats != 1 or export_fold is not None:
            raise CnnappError(f"--repeats/--export-fold need --cv. Received: repeats={repeats}, export_fold={export_fold}")
        splits = to_splits(data, seed=train_cfg.seed)
        result, vectorizer, _ = fit_split(splits, model_cfg=model_cfg, train_cfg=train_cfg, run_dir=run_dir,
                                          standardize=standardize, run_config=run_config)
        what = "the model trained above"
    else:
        if data.x_test is not None or data.x_dev is not None:
            raise CnnappError("--cv: the data has fixed dev/test splits; cross-validation is for data without "
                              f"them (drop --dev/--test, or drop --cv). Received: cv={cv}")
        if export_fold is not None and not 1 <= export_fold <= cv:
            raise CnnappError(f"--export-fold: must be in 1..{cv}. Received: export_fold={export_fold}")
        summary, kept = cross_validate(
            data, k=cv, repeats=repeats, model_cfg=model_cfg, train_cfg=train_cfg, run_dir=run_dir,
            standardize=standardize, run_config=run_config,
            keep_fold=(0, export_fold) if export_fold else None)
        if export_fold:
            result, vectorizer = kept
            what = f"fold {export_fold} of the first seed ({train_cfg.seed})"
        elif train_cfg.export:
            log.info("cv done; training the model to export on all %d sentences (10%% dev)", len(data.y))
            splits = make_splits(data.x, data.y, data.class_names, seed=train_cfg.seed, test_fraction=0.0,
                                 description={**data.description, "validation":
                                              "seeded stratified 10% of all the data (after cross-validation)"})
            result, vectorizer, _ = fit_split(splits, model_cfg=model_cfg, train_cfg=train_cfg,
                                              run_dir=run_dir / "all", standardize=standardize,
                                              run_config={**run_config, "cv_export": "all data"})
            what = "a model trained on all the data after the folds (its accuracy is on its 10% dev split)"
        else:
            return TextRunOutcome(result=None, export_dir=None, cv=summary,
                                  exported_from="nothing (--no-export)")
    export_dir = None
    if train_cfg.export and result.is_chief:
        export_dir = export_text_classifier(
            result.model, vectorizer=vectorizer, class_names=data.class_names,
            export_base=train_cfg.export_base, name=name,
            metadata={"run_dir": str(result.run_dir), "trained_on": what, "ensemble": train_cfg.ensemble})
    return TextRunOutcome(result=result, export_dir=export_dir, cv=summary if cv else None,
                          exported_from=what if export_dir else "nothing (--no-export)", vectorizer=vectorizer)
