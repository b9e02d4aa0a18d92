"""The shared callbacks' own behaviour, on a real (tiny) Keras model."""

from __future__ import annotations

import keras
import numpy as np


def test_early_stopping_breaks_accuracy_ties_on_lower_validation_loss():
    from cnnapp.training.callbacks import EarlyStopping
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    stop = EarlyStopping(monitor="val_accuracy", mode="max", patience=10, restore_best_weights=True)
    stop.set_model(model)
    stop.on_train_begin()
    epochs = [(0.9, 0.50), (1.0, 0.40), (1.0, 0.20), (1.0, 0.30), (0.95, 0.10)]
    weights = []
    for epoch, (acc, loss) in enumerate(epochs):
        model.layers[0].kernel.assign(np.full((2, 1), float(epoch), "float32"))
        weights.append(model.get_weights())
        stop.on_epoch_end(epoch, {"val_accuracy": acc, "val_loss": loss})
    assert stop.best_epoch == 2  # the tie at 1.0 went to the lowest loss, not the first epoch
    stop.on_train_end()
    assert np.array_equal(model.get_weights()[0], weights[2][0])


def test_loss_monitor_is_unchanged():
    from cnnapp.training.callbacks import EarlyStopping
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    stop = EarlyStopping(monitor="val_loss", mode="min", patience=10)
    stop.set_model(model)
    stop.on_train_begin()
    for epoch, loss in enumerate([0.5, 0.3, 0.3, 0.4]):
        stop.on_epoch_end(epoch, {"val_loss": loss, "val_accuracy": 0.5})
    assert stop.best_epoch == 1


def test_cosine_schedule_in_a_real_run(tmp_path):
    """The rate each epoch used, as history.csv logs it, follows the cosine curve from --learning-rate."""
    import csv
    import math
    from conftest import run_cli
    args = ["train-image", "--dataset", "digits", "--name", "c", "--filters", "4,8", "--dense-units", "8",
            "--batch-size", "32", "--epochs", "4", "--learning-rate", "0.002", "--lr-schedule", "cosine",
            "--no-export", "--run-dir", tmp_path]
    run_cli(args)
    with open(tmp_path / "c" / "history.csv") as f:
        rates = [float(row["learning_rate"]) for row in csv.DictReader(f)]
    expected = [0.002 * (0.01 + 0.99 * (1 + math.cos(math.pi * e / 4)) / 2) for e in range(4)]
    assert np.allclose(rates, expected, rtol=1e-5), rates
    result = run_cli(["train-image", "--lr-schedule", "sometimes"], expect_exit=2)
    assert "--lr-schedule" in result.output and "sometimes" in result.output


def test_ema_weights_are_what_is_validated_and_kept(tmp_path):
    """With --ema near 1 the average stays near the first step's weights: validation and the kept
    model must show that (near chance) while the raw weights being trained fit the data better."""
    import csv
    import json
    from conftest import run_cli
    run_cli(["train-image", "--dataset", "digits", "--name", "e", "--filters", "4,8", "--dense-units", "8",
             "--batch-size", "32", "--epochs", "4", "--learning-rate", "0.01", "--ema", "0.999999",
             "--augment", "none", "--no-export", "--run-dir", tmp_path])
    with open(tmp_path / "e" / "history.csv") as f:
        rows = list(csv.DictReader(f))
    train_acc, val_acc = float(rows[-1]["accuracy"]), max(float(r["val_accuracy"]) for r in rows)
    test_acc = json.loads((tmp_path / "e" / "metrics.json").read_text())["test"]["accuracy"]
    assert val_acc < 0.2 and test_acc < 0.2, (val_acc, test_acc)  # 10 classes: the averaged weights
    assert train_acc > val_acc + 0.1, (train_acc, val_acc)          # the raw weights learned
    result = run_cli(["train-image", "--ema", "1.5"], expect_exit=2)
    assert "--ema" in result.output and "1.5" in result.output


def test_ema_swap_sits_between_the_backup_and_what_reads_the_best_weights(tmp_path):
    """BackupAndRestore must save the raw weights (a resumed run goes on training them), while early
    stopping and the checkpoint, which run after the swap, see the averaged ones."""
    from cnnapp.config import TrainConfig
    from cnnapp.training.callbacks import build_callbacks
    kinds = [type(c).__name__ for c in build_callbacks(TrainConfig(name="x", ema=0.99).for_task("image", 100), tmp_path,
                                                               resuming=False)]
    assert kinds.index("BackupAndRestore") < kinds.index("SwapEMAWeights") < kinds.index("EarlyStopping")
    assert kinds.index("SwapEMAWeights") < kinds.index("ModelCheckpoint")
    plain = [type(c).__name__ for c in build_callbacks(TrainConfig(name="x").for_task("image", 100), tmp_path, resuming=False)]
    assert "SwapEMAWeights" not in plain


def test_time_to_accuracy_is_read_from_the_wall_clock_in_the_history(tmp_path):
    """history.csv carries the wall clock, and metrics.json the first time each level was reached."""
    import csv
    import json
    from conftest import run_cli
    run_cli(["train-image", "--dataset", "digits", "--name", "t", "--filters", "4,8", "--dense-units", "8",
             "--epochs", "3", "--time-to", "0.05,0.999", "--no-export", "--run-dir", tmp_path])
    with open(tmp_path / "t" / "history.csv") as f:
        rows = list(csv.DictReader(f))
    seconds = [float(r["wall_seconds"]) for r in rows]
    assert len(seconds) == 3 and seconds == sorted(seconds) and seconds[0] > 0
    reached = json.loads((tmp_path / "t" / "metrics.json").read_text())["time_to_accuracy"]
    assert reached["0.05"] == round(seconds[0], 1)   # any model passes 5% after its first epoch
    assert reached["0.999"] is None or reached["0.999"] in [round(s, 1) for s in seconds]


def test_a_preset_keeps_the_last_epoch_only_for_a_run_that_follows_one_cycle_to_its_end():
    """Photo folders keep their last epoch (their few dozen validation images cannot pick an epoch); an
    explicit --restore-best/--keep-last wins, and a run that may stop mid-schedule restores its best."""
    from cnnapp.config import TrainConfig
    keep = {"epochs": 40, "restore_best": False}
    assert TrainConfig().for_task("image", 360, keep).restore_best is False
    assert TrainConfig().for_task("image", 360).restore_best is True            # other image data
    assert TrainConfig().for_task("text", 360).restore_best is True
    assert TrainConfig(patience=5).for_task("image", 360, keep).restore_best is True
    assert TrainConfig(lr_schedule="plateau").for_task("image", 360, keep).restore_best is True
    assert TrainConfig(restore_best=True).for_task("image", 360, keep).restore_best is True
    assert TrainConfig(restore_best=False).for_task("text", 360).restore_best is False


def test_keep_last_neither_restores_nor_checkpoints_only_the_best(tmp_path):
    """With restore_best False, early stopping keeps the weights it ends with and best.keras is written
    every epoch, so it holds the model that is evaluated and exported."""
    from cnnapp.config import TrainConfig
    from cnnapp.training.callbacks import build_callbacks
    by_kind = {type(c).__name__: c for c in build_callbacks(
        TrainConfig(name="x", restore_best=False).for_task("image", 100), tmp_path, resuming=False)}
    assert by_kind["EarlyStopping"].restore_best_weights is False
    assert by_kind["ModelCheckpoint"].save_best_only is False
    by_kind = {type(c).__name__: c for c in build_callbacks(TrainConfig(name="x").for_task("image", 100), tmp_path,
                                                            resuming=False)}
    assert by_kind["EarlyStopping"].restore_best_weights is True and by_kind["ModelCheckpoint"].save_best_only


def test_only_a_run_that_reads_nothing_of_validation_may_validate_on_the_test_part():
    """Keep-last lets the test part be the validation curve only under one-cycle followed to its end: a
    plateau schedule or early stopping before the end would act on it."""
    from cnnapp.config import TrainConfig
    keep = {"epochs": 40, "restore_best": False}
    assert TrainConfig().for_task("image", 360, keep).reads_validation is False
    assert TrainConfig().for_task("image", 360).reads_validation is True
    assert TrainConfig(restore_best=False).for_task("text", 360).reads_validation is True          # plateau
    assert TrainConfig(restore_best=False, patience=3).for_task("image", 360).reads_validation is True
    assert TrainConfig(restore_best=False, lr_schedule="cosine").for_task("image", 360).reads_validation is True
    assert TrainConfig(restore_best=False, lr_schedule="onecycle").for_task("text", 360).reads_validation is False


def test_a_long_epoch_logs_its_progress_where_keras_prints_one_line_an_epoch(caplog):
    """EpochHeartbeat (added when Keras prints one line an epoch): steps done, of how many, and the ETA."""
    import logging

    import keras
    import numpy as np

    from cnnapp.training.callbacks import EpochHeartbeat
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y = np.random.default_rng(0).normal(size=(64, 4)), np.arange(64) % 2
    with caplog.at_level(logging.INFO, logger="cnnapp.progress"):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[EpochHeartbeat(every=0.0)])
    lines = [r.getMessage() for r in caplog.records if r.name == "cnnapp.progress"]
    assert lines and lines[0].startswith("epoch 1: 1/8 steps") and "ETA" in lines[0], lines
    assert lines[-1].startswith("epoch 1: 8/8 steps"), lines
