"""train-image end to end on data the tests make: folders, IDX, export parity, predict, bad input."""

from __future__ import annotations

import gzip
import json
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import png_bytes, run_cli

# image_cnn named: photo folders default to vgg, which has no --dense-units
TINY = ["--model", "image_cnn", "--filters", "4,8", "--dense-units", "8", "--epochs", "1", "--batch-size", "16"]


def write_image_folder(root: Path, *, classes=("circle", "square"), per_class=12, sizes=((20, 30), (40, 24)),
                       formats=("png", "jpeg", "bmp", "gif")) -> Path:
    """Class subfolders of small real images of different sizes and formats."""
    import tensorflow as tf
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            h, w = sizes[i % len(sizes)]
            img = rng.integers(0, 60, (h, w, 3)).astype(np.uint8)
            img[h // 4: 3 * h // 4, w // 4: 3 * w // 4, c] = 255  # a class-coloured block
            fmt = formats[i % len(formats)]
            if fmt == "png":
                data = tf.io.encode_png(img).numpy()
            elif fmt == "jpeg":
                data = tf.io.encode_jpeg(img).numpy()
            elif fmt == "bmp":
                data = bmp_bytes(img)
            else:
                data = gif_bytes(img)
            (root / name / f"{name}{i}.{fmt}").write_bytes(data)
    return root


def bmp_bytes(img: np.ndarray) -> bytes:
    """A 24-bit uncompressed BMP (TensorFlow decodes BMP but cannot encode it)."""
    h, w, _ = img.shape
    row = (w * 3 + 3) & ~3
    pixels = b"".join(img[y, :, ::-1].tobytes().ljust(row, b"\0") for y in range(h - 1, -1, -1))
    header = struct.pack("<2sIHHI", b"BM", 54 + len(pixels), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    return header + info + pixels


def gif_bytes(img: np.ndarray) -> bytes:
    """A GIF via matplotlib's Pillow (a dependency of matplotlib)."""
    import io
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="GIF")
    return buf.getvalue()


def write_idx(path: Path, array: np.ndarray, *, gz: bool, magic: int | None = None) -> Path:
    magic = magic if magic is not None else (0x0803 if array.ndim == 3 else 0x0801)
    data = struct.pack(">I", magic) + struct.pack(">" + "I" * array.ndim, *array.shape) + array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def make_idx_folder(root: Path, *, gz: bool = True, n_train=120, n_test=40) -> Path:
    rng = np.random.default_rng(1)
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 3
        images = rng.integers(0, 50, (n, 12, 12)).astype(np.uint8)
        for i, label in enumerate(labels):
            images[i, :, 4 * label: 4 * label + 4] = 250
        write_idx(root / f"{split}-images-idx3-ubyte", images, gz=gz)
        write_idx(root / f"{split}-labels-idx1-ubyte", labels, gz=gz)
    return root


# ---------------------------------------------------------------------------- model factory

def test_image_cnn_contract():
    from cnnapp.models.image_cnn import build_image_cnn
    model = build_image_cnn(input_shape=(28, 28, 1), num_classes=10)
    assert model.output_shape == (None, 10)
    names = [layer.name for layer in model.layers]
    assert {"rescale", "conv1", "pool1", "conv2", "pool2", "flatten", "dense1", "predictions"} <= set(names)
    out = model(np.full((2, 28, 28, 1), 255.0, np.float32)).numpy()
    assert np.allclose(out.sum(axis=1), 1.0, atol=1e-5) and not np.isnan(out).any()


def test_image_cnn_rejects_an_input_too_small_for_its_blocks():
    from cnnapp.errors import CnnappError
    from cnnapp.models.image_cnn import build_image_cnn
    with pytest.raises(CnnappError, match=r"--filters: a 8x8 input shrinks to nothing at conv block 2"):
        build_image_cnn(input_shape=(8, 8, 1), num_classes=2, filters=(4, 4, 4), padding="valid")


def test_summary_image_prints_shapes_params_and_totals():
    out = run_cli(["summary", "image"]).output
    assert "conv1" in out and "(N, 28, 28, 32)" in out and "(N, 7, 7, 64)" in out and "(N, 3, 3, 128)" in out
    # conv 288+18,432+73,728, bn 896, dense 1,152*128+128 = 147,584, head 1,290
    assert "Total params: 242,218" in out


def test_summary_text_shows_each_branch():
    out = run_cli(["summary", "text", "--sequence-length", "40", "--vocab-size", "1000"]).output
    for width in (3, 4, 5):
        # 40 tokens + Kim's edge padding of 4 zero vectors each side
        assert f"conv_w{width}" in out and f"(N, {40 + 8 - width + 1}, 100)" in out
    assert "maxpool_w5" in out and "(N, 300)" in out


# ---------------------------------------------------------------------------- sources

@pytest.mark.slow   # make test-slow (CI runs it): make test stays near 8 minutes
def test_image_folder_trains_exports_and_numbers_versions(tmp_path):
    data = write_image_folder(tmp_path / "shapes")
    base, runs = tmp_path / "models", tmp_path / "runs"
    args = ["train-image", "--data", data, "--image-size", "16", *TINY, "--export-base", base, "--run-dir", runs]
    out = run_cli(args).output
    assert "exported:" in out
    run = runs / "shapes"
    for f in ("config.json", "metrics.json", "history.csv", "learning_curves.png", "confusion_matrix.png",
              "best.keras"):
        assert (run / f).is_file(), f
    metrics = json.loads((run / "metrics.json").read_text())
    report = metrics[metrics["evaluated_on"]]
    assert set(report["per_class"]) == {"circle", "square"}
    assert np.asarray(report["confusion_matrix"]).sum() == report["count"] > 0
    config = json.loads((run / "config.json").read_text())
    assert config["preprocessing"] == {"image_size": [16, 16], "channels": 3}
    run_cli(args)
    assert sorted(p.name for p in (base / "shapes").iterdir()) == ["1", "2"]
    meta = json.loads((base / "shapes" / "2" / "assets.extra" / "cnnapp.json").read_text())
    assert meta["class_names"] == ["circle", "square"] and meta["kind"] == "image"


@pytest.mark.slow   # make test-slow (CI runs it): make test stays near 8 minutes
def test_image_folder_uses_train_and_validation_subfolders(tmp_path):
    write_image_folder(tmp_path / "set" / "train", per_class=10)
    write_image_folder(tmp_path / "set" / "validation", per_class=4)
    common = ["train-image", "--data", tmp_path / "set", "--image-size", "12", *TINY, "--no-export",
              "--run-dir", tmp_path / "runs"]
    # The folder preset keeps the last epoch, so nothing is chosen on validation: all of train/ trains,
    # and validation/ is both the per-epoch curve and the reported test.
    run_cli([*common, "--name", "tv"])
    config = json.loads((tmp_path / "runs" / "tv" / "config.json").read_text())
    assert config["resolved"]["splits"] == {"train": 20, "validation": 8, "test": 8}
    assert config["resolved"]["data"]["test"] == "the validation/ folder"
    assert config["resolved"]["data"]["validation"].startswith("the validation/ folder, shown each epoch and never")
    assert json.loads((tmp_path / "runs" / "tv" / "metrics.json").read_text())["validation_is_test"] is True
    # A run that restores its best epoch chooses on validation: that comes from train/, never the test folder.
    run_cli([*common, "--restore-best", "--name", "best"])
    config = json.loads((tmp_path / "runs" / "best" / "config.json").read_text())
    assert config["resolved"]["splits"] == {"train": 18, "validation": 2, "test": 8}
    assert config["resolved"]["data"]["validation"].startswith("seeded stratified 10% of train")
    assert json.loads((tmp_path / "runs" / "best" / "metrics.json").read_text())["validation_is_test"] is False
    # Keeping the last epoch of a run whose schedule reads validation (plateau) still holds it out of train/.
    run_cli([*common, "--keep-last", "--lr-schedule", "plateau", "--name", "plateau"])
    config = json.loads((tmp_path / "runs" / "plateau" / "config.json").read_text())
    assert config["resolved"]["splits"] == {"train": 18, "validation": 2, "test": 8}


def test_photo_folders_default_to_vgg_and_keep_the_last_epoch(tmp_path):
    """Without --model, a folder of photos trains the data's preset model (vgg) and keeps its last epoch;
    an option only image_cnn takes is one line naming the way to it."""
    data = write_image_folder(tmp_path / "shapes")
    common = ["train-image", "--data", data, "--image-size", "8", "--epochs", "2", "--no-export",
              "--run-dir", tmp_path / "runs"]
    out = run_cli([*common, "--filters", "4,8", "--name", "v"]).output
    assert "Restoring model weights" not in out
    config = json.loads((tmp_path / "runs" / "v" / "config.json").read_text())
    assert config["model"] == {"name": "vgg", "options": {"filters": [4, 8]}}
    assert config["TrainConfig"]["restore_best"] is False and config["TrainConfig"]["epochs"] == 2
    result = run_cli([*common, "--dense-units", "8", "--name", "d"], expect_exit=1)
    assert result.output.startswith("Error: --dense-units: this data's default model is vgg") and \
        "pass --model image_cnn" in result.output


@pytest.mark.parametrize("gz", [True, False])
def test_idx_folder_gzipped_or_not(tmp_path, gz):
    data = make_idx_folder(tmp_path / "idx", gz=gz)
    run_cli(["train-image", "--data", data, *TINY, "--no-export", "--run-dir", tmp_path / "runs", "--name", "i"])
    config = json.loads((tmp_path / "runs" / "i" / "config.json").read_text())
    assert config["resolved"]["splits"]["test"] == 40
    assert config["preprocessing"]["image_size"] == [12, 12]


def test_embedded_digits_default_needs_no_network(tmp_path):
    from cnnapp.data.image.digits import load_digits
    splits = load_digits().to_splits(seed=3)
    counts = splits.counts()
    assert sum(counts.values()) == 1797 and splits.x_train.shape[1:] == (8, 8, 1)
    assert splits.x_train.dtype == np.uint8 and splits.x_train.max() == 255


# ---------------------------------------------------------------------------- export and predict

@pytest.mark.slow   # make test-slow (CI runs it): make test stays near 8 minutes
def test_export_reloaded_in_a_fresh_process_matches_the_in_memory_model(tmp_path):
    """Raw PNG bytes through the SavedModel in a new process == the Keras model on the same pixels."""
    import keras
    import tensorflow as tf
    from cnnapp.models.image_cnn import build_image_cnn
    from cnnapp.preprocessing.image import ImageDecoder
    from cnnapp.tasks import export_model
    from cnnapp.tasks.images import ImageTask, image_prepared
    keras.utils.set_random_seed(0)
    model = build_image_cnn(input_shape=(10, 10, 1), num_classes=3, filters=(4, 8), dense_units=(8,))
    decoder = ImageDecoder(height=10, width=10, channels=1)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (h, w, 1)).astype(np.uint8) for h, w in ((10, 10), (23, 17), (5, 9))]
    blobs = [png_bytes(i) for i in images]
    expected = model(decoder(tf.constant(blobs)), training=False).numpy()
    export_dir = export_model(ImageTask(), model, image_prepared(decoder, num_classes=3), class_names=["a", "b", "c"],
                              export_base=tmp_path, name="m")
    for i, blob in enumerate(blobs):
        (tmp_path / f"{i}.png").write_bytes(blob)
    script = textwrap.dedent(f"""
        import json, tensorflow as tf
        fn = tf.saved_model.load({str(export_dir)!r}).signatures["serving_default"]
        blobs = [open({str(tmp_path)!r} + f"/{{i}}.png", "rb").read() for i in range(3)]
        out = fn(image_bytes=tf.constant(blobs))
        print(json.dumps({{"scores": out["scores"].numpy().tolist(),
                          "classes": [[c.decode() for c in row] for row in out["classes"].numpy()]}}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(np.asarray(got["scores"]), expected, atol=1e-5)
    assert got["classes"] == [["a", "b", "c"]] * 3


def test_export_has_bytes_and_pixels_signatures(model_base):
    import tensorflow as tf
    loaded = tf.saved_model.load(str(model_base / "tiny_image" / "1"))
    assert {"serving_default", "serving_pixels"} <= set(loaded.signatures)
    pixels = loaded.signatures["serving_pixels"](pixels=tf.zeros([2, 30, 30, 1]))
    assert pixels["scores"].shape == (2, 3)
    spec = loaded.signatures["serving_default"].structured_input_signature[1]["image_bytes"]
    assert spec.dtype == tf.string and spec.shape.as_list() == [None]


def test_export_never_leaves_a_half_written_version(tmp_path, monkeypatch):
    """A failure while writing leaves neither a numbered folder nor the temporary one."""
    import keras
    from cnnapp.export import saved_model
    archive = keras.export.ExportArchive()

    def boom(path, verbose=False):
        Path(path, "partial").write_text("x")
        raise OSError("disk full")

    monkeypatch.setattr(archive, "write_out", boom)
    with pytest.raises(OSError):
        saved_model.write_version(archive, export_base=tmp_path, name="m", version=None, metadata={})
    assert list((tmp_path / "m").iterdir()) == []


def test_predict_images_text_and_json_with_a_bad_file(model_base, tmp_path):
    good = tmp_path / "good.png"
    good.write_bytes(png_bytes(np.zeros((8, 8, 1))))
    folder = tmp_path / "more"
    folder.mkdir()
    (folder / "x.png").write_bytes(png_bytes(np.full((20, 9, 1), 200)))
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    result = run_cli(["predict", model_base / "tiny_image", good, folder, bad, "--json", "--top-k", "2"],
                     expect_exit=1)
    doc = json.loads(result.stdout)
    by_input = {row["input"]: row for row in doc["predictions"]}
    assert doc["kind"] == "image" and doc["model"].endswith("tiny_image/1")
    assert len(by_input[str(good)]["top"]) == 2 and "probability" in by_input[str(good)]["top"][0]
    assert "top" in by_input[str(folder / "x.png")]
    assert "Unknown image file format" in by_input[str(bad)]["error"]
    plain = run_cli(["predict", model_base / "tiny_image", str(tmp_path / "*.png")])
    assert plain.output.startswith(f"{good}: ") and plain.output.count("\n") == 1


# ---------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("case", ["missing", "empty", "one_class", "corrupt", "non_image", "idx_magic",
                                  "size", "filters"])
def test_bad_input_gets_one_line_error(tmp_path, case):
    args = ["train-image", *TINY, "--run-dir", tmp_path / "runs", "--export-base", tmp_path / "models"]
    if case == "missing":
        args += ["--data", tmp_path / "nope"]
        expect = f"--data: no such folder. Received: {tmp_path / 'nope'}"
    elif case == "empty":
        (tmp_path / "empty").mkdir()
        args += ["--data", tmp_path / "empty"]
        expect = "--data: no class subfolders"
    elif case == "one_class":
        write_image_folder(tmp_path / "one", classes=("only",))
        args += ["--data", tmp_path / "one", "--image-size", "8"]
        expect = "at least 2 classes"
    elif case in ("corrupt", "non_image"):
        data = write_image_folder(tmp_path / "d")
        bad = data / "circle" / ("truncated.jpeg" if case == "corrupt" else "readme.txt")
        bad.write_bytes((data / "circle" / "circle1.jpeg").read_bytes()[:200] if case == "corrupt" else b"hello")
        args += ["--data", data, "--image-size", "8"]
        expect = f"Received: {bad}"
    elif case == "idx_magic":
        data = make_idx_folder(tmp_path / "idx")
        write_idx(data / "train-images-idx3-ubyte", np.zeros((3, 4, 4)), gz=True, magic=0x0801)
        args += ["--data", data]
        expect = "--data: wrong IDX magic number 0x00000801 (expected 0x00000803)"
    elif case == "size":
        args += ["--image-size", "0x4"]
        expect = "Invalid value for '--image-size'"
    else:
        args += ["--filters", "4,four"]
        expect = "Invalid value for '--filters'"
    result = run_cli(args, expect_exit=1 if case not in ("size", "filters") else 2)
    lines = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(lines) == 1 and expect in lines[0], result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "models").exists()


@pytest.mark.slow   # make test-slow (CI runs it): make test stays near 8 minutes
def test_skip_bad_images_skips_and_counts(tmp_path):
    data = write_image_folder(tmp_path / "d")
    (data / "square" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    run_cli(["train-image", "--data", data, "--image-size", "8", *TINY, "--skip-bad-images", "--no-export",
             "--run-dir", tmp_path / "runs", "--name", "s"])
    config = json.loads((tmp_path / "runs" / "s" / "config.json").read_text())
    assert config["resolved"]["data"]["skipped_files"] == 1
    splits = config["resolved"]["splits"]   # the folder preset keeps its last epoch: validation is the test part
    assert splits["train"] + splits["test"] == 24 and splits["validation"] == splits["test"]


def test_unknown_or_offline_tfds_dataset_is_one_line(tmp_path):
    result = run_cli(["train-image", "--dataset", "no_such_dataset_xyz", "--data-dir", tmp_path], expect_exit=1)
    assert result.output.startswith("Error: --dataset: unknown TFDS dataset") and "no_such_dataset_xyz" in result.output
    assert result.output.count("\n") == 1


def test_existing_versions_survive_a_failed_run(tmp_path, model_base):
    """A run that fails on bad input leaves earlier exports untouched."""
    import shutil
    base = tmp_path / "models"
    shutil.copytree(model_base / "tiny_image", base / "shapes")
    before = sorted(p.relative_to(base).as_posix() for p in base.rglob("*"))
    run_cli(["train-image", "--data", tmp_path / "missing", "--name", "shapes", "--export-base", base], expect_exit=1)
    assert sorted(p.relative_to(base).as_posix() for p in base.rglob("*")) == before


def test_tfds_dataset_offline_fails_fast_with_one_line(tmp_path):
    from cnnapp.data.tfds_source import _online
    if _online():
        pytest.skip("this machine reaches the TFDS download host; the offline message cannot be shown")
    result = run_cli(["train-image", "--dataset", "mnist", "--data-dir", tmp_path], expect_exit=1)
    assert result.output == (f"Error: --dataset: TFDS dataset 'mnist' is not in {tmp_path} and cannot be "
                             "downloaded (no network); prepare it elsewhere and pass --data-dir. Received: mnist\n")


@pytest.mark.slow   # make test-slow (CI runs it): make test stays near 8 minutes
def test_seed_makes_runs_repeatable(tmp_path):
    def history(seed, run):
        run_cli(["train-image", "--dataset", "digits", "--name", "s", *TINY, "--epochs", "2", "--seed", seed,
                 "--no-export", "--run-dir", tmp_path / run])
        text = (tmp_path / run / "s" / "history.csv").read_text()   # the wall clock column aside
        import csv
        import io
        return [{k: v for k, v in row.items() if k != "wall_seconds"} for row in csv.DictReader(io.StringIO(text))]

    first, again, other = history(7, "a"), history(7, "b"), history(8, "c")
    assert first == again
    assert first != other


@pytest.mark.parametrize("size, filters", [((8, 8), (32, 64)), ((16, 16), (32, 64)), ((28, 28), (32, 64, 128)),
                                           ((32, 32), (32, 64, 128)), ((64, 64), (32, 64, 128)),
                                           ((128, 96), (32, 64, 128, 128))])
def test_default_filters_downsample_to_at_most_8x8(size, filters):
    from cnnapp.models.image_cnn import default_filters
    assert default_filters(size) == filters


@pytest.mark.parametrize("num_train, batch", [(54000, 128), (2560, 128), (1295, 64), (360, 16), (40, 16)])
def test_default_batch_size_gives_small_data_enough_steps(num_train, batch):
    from cnnapp.config import default_batch_size
    assert default_batch_size(num_train) == batch


@pytest.mark.slow   # make test-slow (CI runs it): make test stays near 8 minutes
def test_a_sweep_on_a_photo_folder_chooses_on_train_never_on_the_validation_folder(tmp_path):
    """Trials are chosen on their validation score, so a sweep holds that out of train/ even where a single
    run that keeps its last epoch would show the validation/ folder as its curve."""
    write_image_folder(tmp_path / "set" / "train", per_class=10)
    write_image_folder(tmp_path / "set" / "validation", per_class=4)
    spec = tmp_path / "space.json"
    spec.write_text(json.dumps({"params": {"learning_rate": [0.01]}}))
    run_cli(["sweep", "image", "--data", tmp_path / "set", "--image-size", "12", *TINY, "--spec", spec,
             "--run-dir", tmp_path / "runs", "--name", "sw"])
    configs = list((tmp_path / "runs").rglob("config.json"))
    assert configs
    for path in configs:
        config = json.loads(path.read_text())
        assert config["resolved"]["splits"] == {"train": 18, "validation": 2, "test": 8}, path
        assert config["resolved"]["data"]["validation"].startswith("seeded stratified 10% of train"), path
    # Without --model, a sweep tunes the model train-image would train on photos (the folder preset: vgg).
    run_cli(["sweep", "image", "--data", tmp_path / "set", "--image-size", "12", "--filters", "4,8", "--epochs", "1",
             "--batch-size", "16", "--spec", spec, "--run-dir", tmp_path / "runs2", "--name", "sw"])
    models = {json.loads(p.read_text())["model"]["name"] for p in (tmp_path / "runs2").rglob("config.json")}
    assert models == {"vgg"}


def test_the_decoder_keeps_same_size_pixels_and_resizes_others_with_antialiasing():
    """Served and training pixels come from one decoder: an image at the target size is its pixels as they
    are (the resize is skipped), any other size is the antialiased bilinear resize, both clipped to 0..255."""
    import tensorflow as tf
    from cnnapp.preprocessing.image import ImageDecoder
    rng = np.random.default_rng(0)
    same = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    other = rng.integers(0, 256, (20, 7, 3), dtype=np.uint8)
    decoder = ImageDecoder(height=12, width=10, channels=3)
    out = decoder(tf.constant([tf.io.encode_png(same).numpy(), tf.io.encode_png(other).numpy()])).numpy()
    assert out.shape == (2, 12, 10, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0], same.astype(np.float32))
    expected = tf.clip_by_value(tf.image.resize(other.astype(np.float32), (12, 10), antialias=True), 0, 255).numpy()
    np.testing.assert_allclose(out[1], expected, rtol=0, atol=1e-4)
    gray = ImageDecoder(height=12, width=10, channels=1)(tf.constant([tf.io.encode_png(same).numpy()])).numpy()
    assert gray.shape == (1, 12, 10, 1)   # RGB reduced to one channel, still no resize


def test_keeping_the_last_epoch_trains_on_everything_but_the_same_held_out_test_part():
    """Without a fixed test part, `validate_on_test` holds out the very test part a normal split holds out,
    trains on all the rest (its validation share included) and validates on that test part."""
    from cnnapp.data.image.digits import load_digits
    data = load_digits()
    normal, last = data.to_splits(seed=3), data.to_splits(seed=3, validate_on_test=True)
    np.testing.assert_array_equal(last.x_test, normal.x_test)
    np.testing.assert_array_equal(last.x_val, last.x_test)
    assert len(last.y_train) == len(normal.y_train) + len(normal.y_val)
    assert last.description["validation"].endswith("never chosen on (the run keeps its last epoch)")


# ---------------------------------------------------------------------------- formats and channels

def pillow_bytes(img: np.ndarray, fmt: str, mode: str | None = None) -> bytes:
    import io
    from PIL import Image
    buf = io.BytesIO()
    image = Image.fromarray(img)
    (image.convert(mode) if mode else image).save(buf, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    return buf.getvalue()


@pytest.mark.parametrize("fmt,mode", [("GIF", None), ("BMP", None), ("BMP", "L"), ("WEBP", None), ("WEBP", "RGBA"),
                                      ("JPEG", "CMYK")])
def test_a_grayscale_model_decodes_gif_bmp_webp_and_cmyk_jpeg(fmt, mode):
    """decode_image(channels=1) refuses these formats; the decoder reads them in colour and takes
    rgb_to_grayscale's luma (alpha dropped), which is Pillow's own 'L' conversion to within rounding."""
    import tensorflow as tf
    from PIL import Image
    import io
    from cnnapp.preprocessing.image import ImageDecoder
    img = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    data = pillow_bytes(img, fmt, mode)
    out = ImageDecoder(height=6, width=5, channels=1)(tf.constant([data, data])).numpy()
    assert out.shape == (2, 6, 5, 1)
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB").convert("L"), np.float32)
    tolerance = 40 if mode == "CMYK" else 1     # Pillow's and TensorFlow's CMYK -> RGB differ a little
    np.testing.assert_allclose(out[0, :, :, 0], expected, rtol=0, atol=tolerance)
    if mode != "CMYK":
        assert np.abs(out[0, :, :, 0] - expected).mean() < 0.6


def test_png_and_jpeg_decode_bit_for_bit_as_decode_image():
    """Models and caches trained before keep identical pixels: PNG and JPEG (gray, RGB, RGBA sources) still
    go through tf.io.decode_image at the model's channel count."""
    import tensorflow as tf
    from cnnapp.preprocessing.image import ImageDecoder
    img = np.random.default_rng(1).integers(0, 256, (7, 9, 4), dtype=np.uint8)
    files = [tf.io.encode_png(img).numpy(), tf.io.encode_png(img[:, :, :3]).numpy(),
             tf.io.encode_png(img[:, :, :1]).numpy(), tf.io.encode_png(img[:, :, :2]).numpy(),
             tf.io.encode_jpeg(img[:, :, :3]).numpy(), tf.io.encode_jpeg(img[:, :, :1]).numpy()]
    for channels in (1, 3):
        decoded = ImageDecoder(height=7, width=9, channels=channels)(tf.constant(files)).numpy()
        for data, pixels in zip(files, decoded):
            expected = tf.io.decode_image(data, channels=channels, expand_animations=False).numpy()
            np.testing.assert_array_equal(pixels, expected.astype(np.float32))


@pytest.mark.slow   # make test-slow (CI runs it): make test stays near 8 minutes
def test_a_grayscale_model_trains_on_gif_bmp_and_webp_files(tmp_path):
    data = tmp_path / "d"
    rng = np.random.default_rng(0)
    for c, name in enumerate(("dark", "light")):
        (data / name).mkdir(parents=True)
        for i, fmt in enumerate(("GIF", "BMP", "WEBP") * 2):
            img = rng.integers(0, 60, (10, 12, 3)).astype(np.uint8) + 150 * c
            (data / name / f"{name}{i}.{fmt.lower()}").write_bytes(pillow_bytes(img, fmt))
    result = run_cli(["train-image", *TINY, "--data", data, "--image-size", "8", "--channels", "1",
                      "--run-dir", tmp_path / "runs", "--export-base", tmp_path / "models"])
    version = next((tmp_path / "models").glob("*/1"))
    predicted = run_cli(["predict", version, *sorted((data / "light").iterdir())[:3]])
    assert predicted.output.count("\n") == 3 and "error" not in predicted.output, result.output + predicted.output


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_cmyk_jpeg_is_decoded_by_predict_and_served(model_base, tmp_path):
    """TensorFlow's JPEG decoder converts CMYK to RGB itself; only its grayscale output failed
    ('jpeg::Uncompress failed'), so a 1-channel model (tiny_image) now answers for such a file."""
    import base64
    from starlette.testclient import TestClient
    from cnnapp.serving import ServerConfig, create_app, discover_models
    cmyk = tmp_path / "cmyk.jpg"
    cmyk.write_bytes(pillow_bytes(np.full((8, 8, 3), 90, np.uint8), "JPEG", "CMYK"))
    result = run_cli(["predict", model_base / "tiny_image", cmyk])
    assert result.output.startswith(f"{cmyk}: ") and result.output.count("\n") == 1, result.output
    client = TestClient(create_app(ServerConfig(models=discover_models(model_base))).app, base_url="http://localhost")
    response = client.post("/v1/models/tiny_image:predict",
                           json={"instances": [{"b64": base64.b64encode(cmyk.read_bytes()).decode()}]})
    assert response.status_code == 200 and len(response.json()["predictions"]) == 1, response.json()


def test_libjpeg_warnings_never_reach_stderr(model_base, tmp_path):
    """libjpeg prints 'Corrupt JPEG data: ...' to fd 2 from inside TensorFlow's decoder; the CLI drops
    those lines (cnnapp.quiet.drop_libjpeg_lines) and keeps its own message naming the file."""
    import tensorflow as tf
    good = tf.io.encode_jpeg(np.random.default_rng(0).integers(0, 256, (8, 8, 1), dtype=np.uint8)).numpy()
    end = good.rfind(b"\xff\xd9")
    (tmp_path / "padded.jpg").write_bytes(good[:end] + b"\0\0\0" + good[end:])   # decodes, with a warning
    (tmp_path / "truncated.jpg").write_bytes(good[:200])                          # does not decode
    # LiteRT's decoder (no TensorFlow) says the same of the cut file: a JPEG it cannot decode, not an unknown format
    for runtime, reason in (("savedmodel", "Invalid JPEG data, size 200"),
                            ("litert", "cannot decode the JPEG (truncated or corrupt, 200 bytes)")):
        result = subprocess.run([sys.executable, "-m", "cnnapp", "predict", str(model_base / "tiny_image"),
                                 str(tmp_path / "padded.jpg"), str(tmp_path / "truncated.jpg"), "--runtime", runtime],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 1 and result.stdout.startswith(f"{tmp_path / 'padded.jpg'}: "), result.stderr
        assert result.stderr.splitlines() == [f"{tmp_path / 'truncated.jpg'}: error: cannot decode input "
                                              f"({reason})"], result.stderr
    raw = subprocess.run([sys.executable, "-c", "import tensorflow as tf, sys; "
                          "tf.io.decode_jpeg(open(sys.argv[1], 'rb').read())", str(tmp_path / "padded.jpg")],
                         capture_output=True, text=True, timeout=120)
    assert "Corrupt JPEG data" in raw.stderr     # the line the filter exists for
