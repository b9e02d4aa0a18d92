"""The streaming data path (issue 23): a photo folder is a list of files, split before anything is
decoded, decoded in tf.data through the export's ImageDecoder, and cached in memory, on disk or not at
all; every choice gives the same examples. Real files, real TensorFlow, no timings."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from test_image import TINY, write_image_folder


def folder_data(root: Path, **kw):
    from cnnapp.data.image.folder import load_image_folder
    from cnnapp.preprocessing.image import ImageDecoder
    return load_image_folder(write_image_folder(root, **kw), image_size=(8, 8), channels=3,
                             decoder_factory=lambda h, w, c: ImageDecoder(height=h, width=w, channels=c))


def examples(ds) -> list[tuple[bytes, int]]:
    """The (pixels, label) pairs a dataset yields in one pass, sorted (the order is the shuffle's)."""
    return sorted((np.asarray(x).tobytes(), int(y)) for xb, yb in ds for x, y in zip(xb.numpy(), yb.numpy()))


def test_splits_are_made_on_the_file_list_and_every_cache_yields_the_same_examples(tmp_path):
    from cnnapp.preprocessing.image import ImageDecoder
    from cnnapp.training.input import CachePlan, make_input
    data = folder_data(tmp_path / "photos")
    assert data.x.dtype == object and all(Path(p).is_file() for p in data.x)   # paths, nothing decoded
    splits = data.to_splits(seed=3)
    again = data.to_splits(seed=3)
    assert list(splits.x_train) == list(again.x_train) and list(splits.x_test) == list(again.x_test)
    parts = [set(splits.x_train), set(splits.x_val), set(splits.x_test)]
    assert sum(map(len, parts)) == len(data.x) == len(set.union(*parts))      # disjoint, covering the folder

    decoder = ImageDecoder(height=8, width=8, channels=3)
    seen = {}
    for mode in ("memory", "disk", "none"):
        plan = CachePlan(mode, tmp_path / "cache" if mode == "disk" else None)
        ds = make_input(splits.x_train, splits.y_train, reader=splits.reader, batch_size=4, shuffle_seed=1,
                        preprocess=decoder.resize_pixels, cache=plan, label="train")
        seen[mode] = [examples(ds), examples(ds)]                               # two epochs
        assert seen[mode][0] == seen[mode][1]
    assert seen["memory"] == seen["disk"] == seen["none"]
    # ... and they are the export's own decoding of those files, rounded to the uint8 the cache keeps.
    import tensorflow as tf
    direct = sorted((np.round(decoder.decode_one(tf.io.read_file(p)).numpy()).astype(np.float32).tobytes(), int(y))
                    for p, y in zip(splits.x_train, splits.y_train))
    assert seen["memory"][0] == direct


def test_the_disk_cache_is_reused_and_rebuilt_when_a_file_changes(tmp_path, caplog):
    from cnnapp.preprocessing.image import ImageDecoder
    from cnnapp.training.input import CachePlan, make_input
    data = folder_data(tmp_path / "photos")
    decoder, plan = ImageDecoder(height=8, width=8, channels=3), CachePlan("disk", tmp_path / "cache")

    def one_epoch():
        ds = make_input(data.x, data.y, reader=data.reader, batch_size=8, preprocess=decoder.resize_pixels,
                        cache=plan, label="all")
        return examples(ds)
    first = one_epoch()
    files = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert any(f.endswith(".index") for f in files), files                     # complete after one pass
    with caplog.at_level(logging.INFO, logger="cnnapp.training.input"):
        assert one_epoch() == first
    assert "cache: reusing" in caplog.text
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == files

    changed = Path(data.x[0])     # another picture under the same name: the cache must not serve the old one
    import tensorflow as tf
    changed.write_bytes(tf.io.encode_png(np.full((8, 8, 3), 200, np.uint8)).numpy())
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="cnnapp.training.input"):
        rebuilt = one_epoch()
    assert "cache: reusing" not in caplog.text
    assert rebuilt != first and (np.full((8, 8, 3), 200, np.float32).tobytes(), int(data.y[0])) in rebuilt
    now = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert now != files and len(now) == len(files)                             # the stale cache was removed


def test_an_interrupted_cache_is_discarded_not_read(tmp_path):
    from cnnapp.preprocessing.image import ImageDecoder
    from cnnapp.training.input import CachePlan, make_input
    data = folder_data(tmp_path / "photos")
    decoder, plan = ImageDecoder(height=8, width=8, channels=3), CachePlan("disk", tmp_path / "cache")
    ds = make_input(data.x, data.y, reader=data.reader, batch_size=4, preprocess=decoder.resize_pixels,
                    cache=plan, label="all")
    next(iter(ds))            # a first epoch stopped after one batch (a killed run) leaves a partial cache
    ds2 = make_input(data.x, data.y, reader=data.reader, batch_size=4, preprocess=decoder.resize_pixels,
                     cache=plan, label="all")
    assert len(examples(ds2)) == len(data.y)


def test_a_small_memory_budget_takes_the_disk_path_and_trains(tmp_path):
    data = write_image_folder(tmp_path / "photos")
    run_cli(["train-image", "--data", data, "--image-size", "8", *TINY, "--no-export", "--memory-budget", "1K",
             "--run-dir", tmp_path / "runs", "--name", "small"])
    cache = tmp_path / "runs" / "small" / "cache"
    assert sorted(p.suffix for p in cache.iterdir() if p.suffix == ".index")  # written on disk, complete
    metrics = json.loads((tmp_path / "runs" / "small" / "metrics.json").read_text())
    assert metrics["test"]["count"] > 0 and metrics["skipped_files"] == 0
    assert metrics["first_step_seconds"] > 0


def test_a_file_that_passes_the_header_check_and_fails_to_decode_is_named(tmp_path):
    """A PNG whose signature and end are right but whose header chunk is damaged: the cheap check lets
    it through, TensorFlow's decoder refuses it in the first epoch, and the run names it in one line."""
    data = write_image_folder(tmp_path / "photos")
    bad = data / "circle" / "damaged.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x01" * 40 + b"\x00\x00\x00\x00IEND\xaeB`\x82")
    from cnnapp.data.image.folder import check_file
    assert check_file(bad) is None
    result = run_cli(["train-image", "--data", data, "--image-size", "8", *TINY, "--no-export",
                      "--run-dir", tmp_path / "runs", "--name", "bad"], expect_exit=1)
    lines = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(lines) == 1 and lines[0].endswith(f"Received: {bad}") and "--skip-bad-images" in lines[0], result.output
    assert "Traceback" not in result.output

    run_cli(["train-image", "--data", data, "--image-size", "8", *TINY, "--no-export", "--skip-bad-images",
             "--run-dir", tmp_path / "runs", "--name", "skip", "--fresh"])
    metrics = json.loads((tmp_path / "runs" / "skip" / "metrics.json").read_text())
    assert metrics["skipped_files"] == 1


@pytest.mark.parametrize("content, reason", [
    (b"", "empty"), (b"hello", "not a JPEG, PNG, GIF, BMP or WebP"),
    (b"\xff\xd8\xff\xe0" + b"\x00" * 100, "truncated or damaged JPEG")])
def test_the_cheap_check_names_what_is_wrong(tmp_path, content, reason):
    from cnnapp.data.image.folder import check_file
    path = tmp_path / "x.jpg"
    path.write_bytes(content)
    assert reason in check_file(path)


def test_a_tfds_image_set_is_read_through_tf_data(tmp_path):
    """A TFDS data set prepared here (TFDS's own writer, two splits): the source holds keys and labels, never
    pixels; the reader streams the stored images from `as_dataset`; and it trains through the CLI."""
    import tensorflow as tf
    import tensorflow_datasets as tfds
    rng = np.random.default_rng(0)
    stored = {}
    for split, n in (("train", 40), ("test", 10)):
        labels = np.arange(n) % 2
        images = rng.integers(0, 60, (n, 8, 8, 1)).astype(np.uint8)
        images[labels == 1, 2:6, 2:6] = 255
        stored[split] = (images, labels)
    tfds.dataset_builders.store_as_tfds_dataset(
        name="cnnapp_blocks", version="1.0.0", data_dir=tmp_path / "tfds",
        features=tfds.features.FeaturesDict({"image": tfds.features.Image(shape=(8, 8, 1)),
                                             "label": tfds.features.ClassLabel(names=["plain", "block"])}),
        split_datasets={s: tf.data.Dataset.from_tensor_slices({"image": x, "label": y}) for s, (x, y) in stored.items()})

    from test_sources import image_request
    from cnnapp.data.image import read_image_data
    data, source = read_image_data(image_request(dataset="cnnapp_blocks", data_dir=str(tmp_path / "tfds")))
    assert source == "tfds" and data.reader.stream is not None and data.class_names == ["plain", "block"]
    assert data.x.dtype == object and str(data.x[0]).startswith("train:") and len(data.x_test) == 10
    streamed = list(data.reader.stream(data.x).as_numpy_iterator())
    assert sorted(x.tobytes() for x in streamed) == sorted(x.tobytes() for x in stored["train"][0])
    by_pixels = {x.tobytes(): int(y) for x, y in zip(*stored["train"])}
    assert [by_pixels[x.tobytes()] for x in streamed] == list(data.y)         # labels stay with their images

    run_cli(["train-image", "--dataset", "cnnapp_blocks", "--data-dir", tmp_path / "tfds", *TINY, "--no-export",
             "--run-dir", tmp_path / "runs", "--name", "blocks"])
    metrics = json.loads((tmp_path / "runs" / "blocks" / "metrics.json").read_text())
    assert metrics["evaluated_on"] == "test" and metrics["test"]["count"] == 10
