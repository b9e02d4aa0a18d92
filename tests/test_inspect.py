"""cnnapp inspect: filters and feature maps of a trained image run, n-gram evidence of a text run."""

from __future__ import annotations

import pytest

import json
import subprocess
import sys

import numpy as np

from conftest import png_bytes, run_cli


@pytest.mark.slow   # make test-slow (CI runs it): make test stays near 8 minutes
def test_inspect_image_run_writes_filters_and_feature_maps(tmp_path):
    runs = tmp_path / "runs"
    run_cli(["train-image", "--dataset", "digits", "--name", "d", "--epochs", "1", "--filters", "4,8",
             "--dense-units", "8", "--no-export", "--run-dir", runs])
    image = tmp_path / "seven.png"
    pixels = np.zeros((8, 8, 1), np.uint8)
    pixels[1, 1:7] = 255
    pixels[2:7, 5] = 255
    image.write_bytes(png_bytes(pixels))
    doc = json.loads(run_cli(["inspect", runs / "d", image, "--json", "--out", tmp_path / "out"]).output)
    res = doc[str(image)]
    assert set(res["layers"]) == {"relu1", "relu2"}
    assert res["layers"]["relu1"]["shape"] == [8, 8, 4] and res["layers"]["relu2"]["shape"] == [4, 4, 8]
    assert abs(sum(res["probabilities"]) - 1) < 1e-5 and res["predicted"] in [str(i) for i in range(10)]
    for path in [res["filters_plot"], *(layer["plot"] for layer in res["layers"].values())]:
        assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_inspect_rejects_a_folder_that_is_not_a_run(tmp_path):
    result = run_cli(["inspect", tmp_path, "x.png"], expect_exit=1)
    assert result.output.startswith("Error: RUN_DIR: no best.keras checkpoint") and str(tmp_path) in result.output


@pytest.mark.slow   # make test-slow (CI runs it): make test stays near 8 minutes
def test_inspect_text_run_shows_the_winning_ngrams(tmp_path):
    runs = tmp_path / "runs"
    run_cli(["train-text", "--name", "t", "--epochs", "2", "--feature-maps", "8", "--embedding-dim", "16",
             "--no-export", "--run-dir", runs])
    from cnnapp.tasks import load_preprocessor
    vocabulary = load_preprocessor(runs / "t").layers[-1].get_vocabulary()
    assert vocabulary[:2] == ["", "[UNK]"] and "film" in vocabulary
    sentence = "the film is a tedious mess"
    [res] = json.loads(run_cli(["inspect", runs / "t", sentence, "--json", "--top", "3"]).output)
    assert res["tokens"] == sentence.split() and res["predicted"] in ("negative", "positive")
    assert 1 <= len(res["ngrams"]) <= 3
    for g in res["ngrams"]:
        assert g["ngram"] in sentence and g["width"] in (3, 4, 5) and g["contribution"] > 0
    assert [g["contribution"] for g in res["ngrams"]] == sorted((g["contribution"] for g in res["ngrams"]),
                                                               reverse=True)


@pytest.mark.slow   # make test-slow (CI runs it): make test stays near 8 minutes
def test_inspect_text_run_in_a_fresh_process(tmp_path):
    """`cnnapp inspect` loads the checkpoint with cnnapp's own layers registered, even in a process
    that never built a model (in-process tests import them through training)."""
    runs = tmp_path / "runs"
    run_cli(["train-text", "--name", "t", "--epochs", "1", "--feature-maps", "4", "--embedding-dim", "8",
             "--no-export", "--run-dir", runs])
    proc = subprocess.run([sys.executable, "-m", "cnnapp", "inspect", str(runs / "t"), "a dull film", "--json"],
                          capture_output=True, text=True, timeout=120,
                          env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    [res] = json.loads(proc.stdout)
    assert res["tokens"] == ["a", "dull", "film"] and res["predicted"] in ("negative", "positive")
