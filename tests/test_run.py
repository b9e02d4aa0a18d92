"""The one run path: cross-validation for images too, only the user's model options recorded, and
no process state left behind by a failed run."""

from __future__ import annotations

import json
import logging

import pytest

from conftest import run_cli

TINY = ["--filters", "4,8", "--dense-units", "8", "--batch-size", "64"]


@pytest.mark.slow   # make test-slow (CI runs it): make test stays near 8 minutes
def test_image_cross_validation_on_the_embedded_digits(tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        result = run_cli(["train-image", "--cv", "2", "--epochs", "1", *TINY, "--name", "cvd",
                          "--run-dir", tmp_path / "runs", "--export-base", tmp_path / "models"])
    said = result.output + caplog.text
    # The folds share one compiled model (traced once): a fresh one per fold and the model trained on all
    # the data after them made 6 traced calls of Keras' train/test function, and TensorFlow warned.
    assert "retracing" not in said, said
    assert [line for line in said.splitlines() if "mean" in line] == [
        line for line in result.output.splitlines() if line.startswith("cross-validation (")], said   # said once
    summary = json.loads((tmp_path / "runs" / "cvd" / "cv.json").read_text())
    assert summary["k"] == 2 and len(summary["folds"]) == 2 and summary["min_max_over"] == "folds"
    assert summary["min"] <= summary["mean"] <= summary["max"]
    assert sum(json.loads((tmp_path / "runs" / "cvd" / "cv" / "seed1337" / f"fold{f}" / "metrics.json").read_text())
               ["test"]["count"] for f in (1, 2)) == 1797   # the folds cover the data once
    assert f"accuracy mean {summary['mean']:.4f} (min {summary['min']:.4f}, max {summary['max']:.4f}" in result.output
    assert "exported: " in result.output and (tmp_path / "models" / "cvd" / "1" / "saved_model.pb").is_file()


def test_run_config_records_the_model_and_only_the_options_the_user_set(tmp_path):
    run_cli(["train-image", "--epochs", "1", "--filters", "4,8", "--model-arg", "dropout=0.25", "--name", "c",
             "--no-export", "--run-dir", tmp_path])
    config = json.loads((tmp_path / "c" / "config.json").read_text())
    assert config["model"] == {"name": "image_cnn", "options": {"filters": [4, 8], "dropout": 0.25}}
    assert config["TrainConfig"]["epochs"] == 1 and config["TrainConfig"]["batch_size"] == 64   # resolved


def test_a_failed_run_does_not_leak_its_precision_policy(tmp_path):
    """The policy is set for a run and restored after it even when the run fails, so the next model
    built in the process (a test, a CV fold) gets float32 variables."""
    import keras
    from cnnapp.config import TrainConfig
    from cnnapp.data.image.digits import load_digits
    from cnnapp.training.loop import train_classifier

    def broken_model():
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"   # the run's policy is on
        raise RuntimeError("the model factory failed")

    splits = load_digits().to_splits(seed=1)
    with pytest.raises(RuntimeError, match="factory failed"):
        train_classifier(build_model=broken_model, splits=splits, preprocess=lambda x: x, run_config={},
                         config=TrainConfig(name="p", epochs=1, batch_size=32, precision="mixed_bfloat16",
                                            export=False), run_dir=tmp_path)
    assert keras.mixed_precision.global_policy().name == "float32"
    assert keras.layers.Dense(2).dtype_policy.name == "float32"


@pytest.mark.slow   # make test-slow (CI runs it): make test stays near 8 minutes
def test_flip_tta_is_what_the_run_reports_and_what_the_export_answers(tmp_path):
    """With --tta flip the held-out accuracy and the export both average the model over the image and
    its mirror: the export's scores equal that average of the kept checkpoint, not the plain model."""
    import keras
    import numpy as np
    import tensorflow as tf
    from cnnapp.data.image.digits import load_digit_arrays
    run_cli(["train-image", "--epochs", "1", *TINY, "--tta", "flip", "--name", "f",
             "--run-dir", tmp_path / "runs", "--export-base", tmp_path / "models"])
    meta = json.loads((tmp_path / "models" / "f" / "1" / "assets.extra" / "cnnapp.json").read_text())
    assert meta["tta"] == "flip"
    model = keras.saving.load_model(str(tmp_path / "runs" / "f" / "best.keras"), compile=False)
    pixels = load_digit_arrays()[0][:16].astype("float32")
    plain = model(pixels, training=False).numpy()
    averaged = (plain + model(pixels[:, :, ::-1], training=False).numpy()) / 2
    served = tf.saved_model.load(str(tmp_path / "models" / "f" / "1")).signatures["serving_pixels"](
        pixels=tf.constant(pixels))["scores"].numpy()
    np.testing.assert_allclose(served, averaged, atol=1e-5)
    assert not np.allclose(served, plain, atol=1e-4)
    result = run_cli(["train-text", "--tta", "flip", "--run-dir", tmp_path], expect_exit=2)
    assert "No such option '--tta'" in result.output


@pytest.mark.slow   # make test-slow (CI runs it): make test stays near 8 minutes
def test_a_fold_on_the_shared_compiled_model_trains_as_a_fresh_model_would(tmp_path):
    """CompiledModel (the folds of --cv share one compiled model): after a run on other data with another
    seed, a run on the shared model ends with the very weights a freshly built and compiled one does."""
    import dataclasses

    import numpy as np
    from cnnapp.config import TrainConfig
    from cnnapp.models import get_model
    from cnnapp.tasks.images import ImageTask
    from cnnapp.training.loop import CompiledModel
    from cnnapp.training.run import Fitter

    task = ImageTask()
    data, _ = task.load()
    fit = Fitter(task, get_model(None, kind="image"), {"filters": [4, 8], "dense_units": [8]}, None)
    train = TrainConfig(name="r", epochs=2, batch_size=64, export=False, run_dir=str(tmp_path))
    splits = data.to_splits(seed=1)
    fresh, _ = fit(splits, data, train, tmp_path / "fresh", {})
    shared = CompiledModel()
    other, _ = fit(data.to_splits(seed=2), data, dataclasses.replace(train, seed=7), tmp_path / "other", {},
                   reuse=shared)
    again, _ = fit(splits, data, train, tmp_path / "again", {}, reuse=shared)
    assert again.model is other.model                     # shared, not rebuilt
    assert again.metrics["test"] == fresh.metrics["test"]
    for reused, built in zip(again.model.get_weights(), fresh.model.get_weights()):
        np.testing.assert_array_equal(reused, built)
