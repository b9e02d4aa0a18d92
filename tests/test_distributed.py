"""Multi-worker training through the CLI: 2 CPU workers on loopback (`cnnapp launch --workers 2`).

These start real TensorFlow clusters (two worker processes each, tiny models, 1-3 epochs). Measured
on the shared 2-core machine at load average 11-19: image 129 s, text 242 s, kill/resume 447 s; the
worker processes used about 35 s of CPU each run, so an idle machine is several times faster.
"""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
IMAGE = ["train-image", "--dataset", "digits", "--filters", "4,8", "--dense-units", "8", "--batch-size", "128"]
# A photo folder: files, which each worker reads its own share of (the digits are arrays, sharded by Keras).
FOLDER = ["train-image", "--image-size", "8", "--model", "image_cnn", "--filters", "4,8", "--dense-units", "8",
          "--batch-size", "4", "--tta", "none"]
TEXT = ["train-text", "--feature-maps", "4", "--embedding-dim", "8", "--batch-size", "64"]


def launch(tmp_path: Path, command: list[str], *, name: str, epochs: int, extra=()) -> list[str]:
    return [sys.executable, "-m", "cnnapp", "launch", "--workers", "2", *extra, "--", *command,
            "--name", name, "--epochs", str(epochs), "--run-dir", str(tmp_path / "runs"),
            "--export-base", str(tmp_path / "models")]


def worker_lines(output: str, index: int) -> list[str]:
    return [line[len(f"[worker {index}] "):] for line in output.splitlines() if line.startswith(f"[worker {index}] ")]


def h5_arrays(path: Path) -> dict[str, np.ndarray]:
    import h5py
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda k, v: out.__setitem__(k, v[()]) if isinstance(v, h5py.Dataset) else None)
    return out


def test_patch_refuses_a_keras_version_it_was_not_checked_on():
    import keras
    from cnnapp.errors import CnnappError
    from cnnapp.training import keras_patch
    keras_patch.check_version(keras.__version__)  # the installed one is checked (3.15.1)
    with pytest.raises(CnnappError) as e:
        keras_patch.apply(keras_version="3.99.0")
    message = str(e.value)
    assert "Received: keras==3.99.0" in message and "3.15.1" in message
    assert "keras-team/keras#20585" in message and "tensorflow/tensorflow#72388" in message
    assert "\n" not in message


@pytest.mark.parametrize("kind", ["image", "text"])
@pytest.mark.slow   # make test-slow (CI runs it): make test stays near 8 minutes
def test_two_workers_train_identical_models_and_only_the_chief_exports(tmp_path, kind):
    if kind == "image":
        from test_image import write_image_folder
        photos = write_image_folder(tmp_path / "photos", per_class=16)
        command = FOLDER + ["--data", str(photos)]
    else:
        command = TEXT
    dump = tmp_path / "dump"
    run = subprocess.run(launch(tmp_path, command, name=kind, epochs=1, extra=["--dump-weights", str(dump)]),
                         capture_output=True, text=True, env=ENV, timeout=600)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    chief, other = worker_lines(out, 0), worker_lines(out, 1)

    # Same data, same vocabulary, checked by the workers themselves (one all-gather of a fingerprint).
    agree = [[line for line in lines if "workers agree on class names" in line] for lines in (chief, other)]
    assert len(agree[0]) == 1 and agree[0] == agree[1], out[-4000:]

    if kind == "image":   # each worker read its own files: disjoint shares of the training part, equal in size
        shares = [(dump / f"worker-{i}.files.txt").read_text().split() for i in (0, 1)]
        from cnnapp.data.image.folder import load_image_folder
        from cnnapp.preprocessing.image import ImageDecoder
        data = load_image_folder(photos, decoder_factory=lambda h, w, c: ImageDecoder(height=h, width=w, channels=c))
        train = set(data.to_splits(seed=1337, validate_on_test=True).x_train)
        assert len(shares[0]) == len(shares[1]) > 0 and not set(shares[0]) & set(shares[1])
        assert set(shares[0]) | set(shares[1]) <= train and len(shares[0]) * 2 >= len(train) - 1
        assert all("reads its share" in "\n".join(lines) for lines in (chief, other))

    # Identical weights on both workers, BatchNorm moving statistics included.
    w0, w1 = h5_arrays(dump / "worker-0.weights.h5"), h5_arrays(dump / "worker-1.weights.h5")
    assert w0.keys() == w1.keys() and len(w0) > 4
    for key in w0:
        np.testing.assert_array_equal(w0[key], w1[key], err_msg=key)

    # Only the chief exported and wrote the run directory; worker 1's scratch folder is gone.
    assert sorted(p.name for p in (tmp_path / "models" / kind).iterdir()) == ["1"]
    assert any(line.startswith("exported") for line in chief)
    assert not any(line.startswith("exported") for line in other)
    scratch = [m.group(1) for m in map(re.compile(r".*run directory (/\S*cnnapp-worker1-\S+)").match, other) if m]
    assert scratch and not Path(scratch[0]).exists()
    run_dir = tmp_path / "runs" / kind
    assert (run_dir / "metrics.json").is_file() and (run_dir / "best.keras").is_file()
    assert not (run_dir / "backup" / "worker-1").exists() or not any((run_dir / "backup" / "worker-1").iterdir())

    # The export predicts what the chief's in-memory model (its final weights) predicts.
    import keras
    import tensorflow as tf

    import cnnapp.training.recipe  # noqa: F401  (registers OneCycle, which best.keras's optimizer names)
    from cnnapp.models import import_models
    import_models()  # registers cnnapp's own layers (ZeroPaddingTokens), which a text checkpoint names
    model = keras.models.load_model(run_dir / "best.keras")  # the architecture
    model.load_weights(dump / "worker-0.weights.h5")         # the chief's final weights
    export = tf.saved_model.load(str(tmp_path / "models" / kind / "1"))
    rng = np.random.default_rng(0)
    if kind == "image":
        from cnnapp.preprocessing.image import ImageDecoder
        h, w, c = model.input_shape[1:]
        pixels = rng.integers(0, 256, (5, h, w, c)).astype("float32")
        expected = model(ImageDecoder(height=h, width=w, channels=c).resize_pixels(pixels), training=False)
        got = export.signatures["serving_pixels"](pixels=tf.constant(pixels))["scores"]
    else:
        vocab_size = next(layer for layer in model.layers if isinstance(layer, keras.layers.Embedding)).input_dim
        token_ids = rng.integers(0, vocab_size, (5, model.input_shape[1])).astype("int64")
        expected = model(token_ids, training=False)
        got = export.signatures["serving_token_ids"](token_ids=tf.constant(token_ids))["scores"]
    np.testing.assert_allclose(got.numpy(), keras.ops.convert_to_numpy(expected), rtol=1e-5, atol=1e-6)


@pytest.mark.slow   # make test-slow (CI runs it): make test stays near 8 minutes
def test_a_killed_worker_stops_the_job_and_the_rerun_resumes_from_the_backups(tmp_path):
    args = launch(tmp_path, IMAGE, name="r", epochs=40) + ["--patience", "40"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
    seen, pids, started = [], {}, {0: 0, 1: 0}
    try:
        for line in proc.stdout:  # blocks until the job prints; no sleeping
            seen.append(line)
            if m := re.match(r"\[launch\] worker (\d): pid (\d+)", line):
                pids[int(m.group(1))] = int(m.group(2))
            if m := re.match(r"\[worker (\d)\] Epoch (\d+)/40", line):
                started[int(m.group(1))] = int(m.group(2))
            # Both workers in epoch 2: both have written the backup of epoch 1.
            if min(started.values()) >= 2:
                os.kill(pids[1], signal.SIGKILL)
                break
        rest = proc.communicate(timeout=120)[0]
    finally:
        proc.kill()
        proc.wait()
    out = "".join(seen) + (rest or "")
    assert min(started.values()) >= 2, out[-4000:]
    assert proc.returncode != 0, out[-4000:]
    assert "[launch] worker 1 failed" in out, out[-4000:]
    backups = tmp_path / "runs" / "r" / "backup"
    assert sorted(p.name for p in backups.iterdir()) == ["worker-0", "worker-1"]  # one backup per worker
    assert not (tmp_path / "models").exists()  # nothing exported by the killed job

    rerun = subprocess.run(args[:args.index("--epochs") + 1] + ["3"] + args[args.index("--epochs") + 2:],
                           capture_output=True, text=True, env=ENV, timeout=600)
    out = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, out[-4000:]
    first_epochs = []
    for i in (0, 1):
        lines = worker_lines(out, i)
        assert any(line.startswith("resuming the interrupted run") for line in lines), out[-4000:]
        first_epochs.append(next(int(m.group(1)) for m in map(re.compile(r"Epoch (\d+)/3").match, lines) if m))
    assert first_epochs[0] == first_epochs[1] >= 2, out[-4000:]  # epoch 1 (at least) came from the backups
    with open(tmp_path / "runs" / "r" / "history.csv") as f:
        epochs = [int(row["epoch"]) for row in csv.DictReader(f)]
    assert epochs == [0, 1, 2], epochs  # appended: continuous across the kill, 3 epochs in all
    assert (tmp_path / "models" / "r" / "1" / "saved_model.pb").is_file()


def test_the_same_seed_gives_every_worker_the_same_vocabulary_and_the_fingerprint_sees_a_difference():
    """What each worker does on its own (load, split with --seed, adapt on the training split),
    done twice here: the fingerprint the workers all-gather at start is equal for the same seed
    and differs when the split (hence the vocabulary) differs."""
    from cnnapp.tasks.sentences import SentenceTask
    from cnnapp.training.resume import data_fingerprint

    def worker(seed):
        task = SentenceTask()
        data, _ = task.load()
        splits = data.to_splits(seed=seed)
        vectorizer = task.prepare(data, splits, model_options={"region_sizes": (3, 4, 5)}, seed=seed).preprocessor
        return splits, vectorizer

    (s0, v0), (s1, v1), (s2, v2) = worker(1337), worker(1337), worker(7)
    assert v0.get_vocabulary() == v1.get_vocabulary()
    assert data_fingerprint(s0, v0) == data_fingerprint(s1, v1)
    assert data_fingerprint(s0, v0) != data_fingerprint(s2, v2)


def test_a_cluster_strategy_asked_for_after_tensorflow_ran_is_a_one_line_error():
    """Plain `cnnapp train-text` with a cluster TF_CONFIG runs TensorFlow (vocabulary) before the
    strategy: the error says to go through `cnnapp launch`. In a subprocess: a process can make
    (or fail to make) MultiWorkerMirroredStrategy only once."""
    code = ("import os\n"
            "import tensorflow as tf\n"
            "from cnnapp.errors import CnnappError\n"
            "from cnnapp.training import runtime\n"
            "tf.constant(1.0) * 2\n"
            "try:\n"
            "    runtime.make_strategy('auto', runtime.read_tf_config(os.environ))\n"
            "except CnnappError as e:\n"
            "    print('ERROR', e)\n")
    tf_config = '{"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 0}}'
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**ENV, "TF_CONFIG": tf_config, "CUDA_VISIBLE_DEVICES": "-1"})
    lines = [line for line in run.stdout.splitlines() if line.startswith("ERROR")]
    assert len(lines) == 1, run.stdout + run.stderr[-3000:]
    assert "--strategy multi-worker" in lines[0] and "cnnapp launch" in lines[0]
    assert "Received: Collective ops must be configured at program startup" in lines[0]


def test_tf_config_is_read_and_checked():
    from cnnapp.errors import CnnappError
    from cnnapp.training import runtime
    cluster = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 1}}
    import json
    assert runtime.read_tf_config({}) is None
    assert runtime.worker_of(runtime.read_tf_config({"TF_CONFIG": json.dumps(cluster)})) == runtime.Worker(1, 2)
    one = {"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 0}}
    assert runtime.read_tf_config({"TF_CONFIG": json.dumps(one)}) is None  # one worker: no cluster
    assert runtime.resolve_strategy_name("auto", runtime.read_tf_config({"TF_CONFIG": json.dumps(cluster)})) \
        == "multi-worker"
    with pytest.raises(CnnappError, match="task index out of range"):
        runtime.read_tf_config({"TF_CONFIG": json.dumps({**cluster, "task": {"type": "worker", "index": 5}})})
    with pytest.raises(CnnappError, match="Received: not json"):
        runtime.read_tf_config({"TF_CONFIG": "not json"})
