"""--ensemble N: N members trained through the shared loop, exported as one model averaging them."""

from __future__ import annotations

import pytest

import json

import numpy as np

from conftest import run_cli


def _load_members(run_dir):
    import cnnapp.models  # noqa: F401  registers the custom layers
    import keras
    config = json.loads((run_dir / "config.json").read_text())
    return [keras.saving.load_model(f"{m}/best.keras", compile=False) for m in config["resolved"]["members"]]


@pytest.mark.slow   # make test-slow (CI runs it): make test stays near 8 minutes
def test_text_ensemble_exports_the_average_of_its_members(tmp_path):
    import tensorflow as tf
    runs, models = tmp_path / "runs", tmp_path / "models"
    result = run_cli(["train-text", "--name", "ens", "--ensemble", "3", "--epochs", "2", "--feature-maps", "4",
                      "--embedding-dim", "8", "--run-dir", runs, "--export-base", models])
    metrics = json.loads((runs / "ens" / "metrics.json").read_text())
    ens = metrics["ensemble"]
    assert ens["members"] == 3 and [r["seed"] for r in ens["runs"]] == [1337, 1338, 1339]
    member_acc = [json.loads((runs / "ens" / f"member{i}" / "metrics.json").read_text())["test"]["accuracy"]
                  for i in (1, 2, 3)]
    assert [r["accuracy"] for r in ens["runs"]] == member_acc
    assert ens["member_accuracy"]["mean"] == round(float(np.mean(member_acc)), 4)
    assert f"test accuracy: {metrics['test']['accuracy']:.4f}" in result.output

    # the export's probabilities are the mean of the three members' checkpoints on the same token ids
    sentences = ["a moving and beautiful film", "dull", "", "très bien"]
    serve = tf.saved_model.load(str(models / "ens" / "1")).signatures["serving_default"]  # raw sentences in
    scores = serve(sentences=tf.constant(sentences))["scores"].numpy()
    from cnnapp.tasks import load_preprocessor
    members = _load_members(runs / "ens")
    token_ids = load_preprocessor(runs / "ens")(tf.constant(sentences))   # the run's saved vectorizer
    expected = np.mean([m(token_ids, training=False).numpy() for m in members], axis=0)
    assert np.allclose(scores, expected, atol=1e-5), (scores, expected)
    # the members differ (their own seeds), so the average is not one of them
    assert not np.allclose(members[0](token_ids, training=False).numpy(), expected, atol=1e-4)
    meta = json.loads((models / "ens" / "1" / "assets.extra" / "cnnapp.json").read_text())
    assert meta["ensemble"] == 3

    # inspect shows one network: the ensemble's folder names its members; a member works
    refused = run_cli(["inspect", runs / "ens", "dull"], expect_exit=1)
    assert "an ensemble of 3 models" in refused.output and str(runs / "ens" / "member1") in refused.output
    [res] = json.loads(run_cli(["inspect", runs / "ens" / "member2", "dull", "--json"]).output)
    assert res["tokens"] == ["dull"]


@pytest.mark.slow   # make test-slow (CI runs it): make test stays near 8 minutes
def test_image_ensemble_shares_the_training_path(tmp_path):
    import tensorflow as tf
    runs, models = tmp_path / "runs", tmp_path / "models"
    run_cli(["train-image", "--dataset", "digits", "--name", "d", "--ensemble", "2", "--epochs", "1",
             "--filters", "4", "--dense-units", "8", "--run-dir", runs, "--export-base", models])
    metrics = json.loads((runs / "d" / "metrics.json").read_text())
    assert metrics["ensemble"]["members"] == 2 and metrics["evaluated_on"] == "test"
    # the members' backups, kept until the export was written, are gone; and so is the run lock
    assert not list((runs / "d").glob("**/backup")) and not (runs / "d" / ".lock").exists()
    pixels = np.random.default_rng(0).uniform(0, 255, (3, 8, 8, 1)).astype("float32")
    scores = tf.saved_model.load(str(models / "d" / "1")).signatures["serving_pixels"](
        pixels=tf.constant(pixels))["scores"].numpy()
    expected = np.mean([m(pixels, training=False).numpy() for m in _load_members(runs / "d")], axis=0)
    assert np.allclose(scores, expected, atol=1e-5)


def test_ensemble_of_zero_is_refused():
    result = run_cli(["train-text", "--ensemble", "0"], expect_exit=2)
    assert "--ensemble" in result.output and "0" in result.output
