"""Opt-in (`make test-slow`): the image-folder path on real photos, ../shared/data/image/cats_vs_dogs.

Trains the default folder model (vgg, 64x64 RGB, four blocks of two convs) for two epochs through the CLI,
then answers a real JPEG from the exported SavedModel in a fresh process. Skips without the data.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import run_cli, shared_data


@pytest.mark.slow
def test_image_folder_trains_on_cats_vs_dogs_and_the_export_predicts_a_jpeg(tmp_path):
    data = shared_data("image", "cats_vs_dogs")
    runs, models = tmp_path / "runs", tmp_path / "saved_models"
    out = run_cli(["train-image", "--data", data, "--name", "cats_vs_dogs", "--epochs", "2",
                   "--run-dir", runs, "--export-base", models]).output
    assert "test accuracy:" in out and "exported:" in out

    config = json.loads((runs / "cats_vs_dogs" / "config.json").read_text())
    assert config["preprocessing"] == {"image_size": [64, 64], "channels": 3}
    import keras
    model = keras.saving.load_model(str(runs / "cats_vs_dogs" / "best.keras"), compile=False)
    filters = [layer.filters for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert config["model"]["name"] == "vgg"   # the folder preset's model
    assert filters == [32, 32, 64, 64, 128, 128, 256, 256]  # a block per halving to 8x8, + the pooled one
    assert config["resolved"]["splits"] == {"train": 400, "validation": 200, "test": 200}  # last epoch kept
    assert config["resolved"]["class_names"] == ["cats", "dogs"]
    metrics = json.loads((runs / "cats_vs_dogs" / "metrics.json").read_text())
    assert metrics["evaluated_on"] == "test" and metrics["test"]["count"] == 200
    assert metrics["epochs_run"] == 2 and 0.0 <= metrics["test"]["accuracy"] <= 1.0

    jpeg = sorted((data / "validation" / "cats").glob("*.jpg"))[0]
    proc = subprocess.run([sys.executable, "-m", "cnnapp", "predict", str(models / "cats_vs_dogs"), str(jpeg),
                           "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    assert answer["kind"] == "image" and answer["model"].endswith("cats_vs_dogs/1")
    (prediction,) = answer["predictions"]
    assert prediction["input"] == str(jpeg)
    top = prediction["top"]
    assert {t["class"] for t in top} == {"cats", "dogs"}
    assert sum(t["probability"] for t in top) == pytest.approx(1.0, abs=1e-3)
