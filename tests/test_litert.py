"""The LiteRT model beside every export, and `predict` on it without TensorFlow.

- three trained models (embedded digits, a photo folder with train/ and test/, the demo sentences):
  LiteRT and the SavedModel agree on their test parts (top-1 >= 99.5%, probabilities within 0.01);
- the numpy decoder and tokenizer are bit-equal to ImageDecoder and TextVectorization on awkward inputs;
- `predict` picks LiteRT when the export has it and never imports TensorFlow then (a fresh process);
  `--runtime` chooses; an export without a LiteRT model still works as before;
- predict reads at most what the model can use (issue 25): a long sentence is cut with a note, an
  over-long line or file is refused in one line, and errors echo a short prefix only.
"""

from __future__ import annotations

import inspect
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import export_tiny_image_model, export_tiny_text_model, png_bytes, run_cli

LITERT = Path("assets.extra") / "litert"


def _photo(rng, size, label: int) -> np.ndarray:
    """A noisy 'photo' whose class is a coloured blob in a random place (any size, RGB)."""
    h, w = size
    img = rng.integers(0, 90, (h, w, 3)).astype(np.uint8)
    img[:, :, label] += 60
    y, x = rng.integers(0, h // 2), rng.integers(0, w // 2)
    img[y: y + h // 2, x: x + w // 2, label] = rng.integers(180, 256)
    return img


def write_photo_folder(root: Path, *, per_class=(30, 12), classes=("red", "green", "blue")) -> Path:
    """train/ and test/ of class subfolders: JPEG and PNG photos of several sizes (all resized by the decoder)."""
    from PIL import Image
    rng = np.random.default_rng(7)
    for part, count in zip(("train", "test"), per_class):
        for label, name in enumerate(classes):
            (root / part / name).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                img = _photo(rng, (int(rng.integers(20, 60)), int(rng.integers(20, 60))), label)
                fmt = ("JPEG", "PNG")[i % 2]
                Image.fromarray(img).save(root / part / name / f"{name}{i}.{fmt.lower()}", fmt, quality=90)
    return root


def _train(task, *, model: str, options: dict, base: Path, name: str, epochs: int = 4):
    from cnnapp.config import ModelChoice, TrainConfig
    from cnnapp.training.run import run
    outcome = run(task, train=TrainConfig(name=name, epochs=epochs, batch_size=32, run_dir=str(base / "runs"),
                                          export_base=str(base / "saved_models"), verbose=0),
                  model=ModelChoice(name=model, options=options))
    return outcome


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """{name: (export dir, raw test inputs, labels, the outcome)} of three small trained models."""
    from cnnapp.data.image import ImageRequest
    from cnnapp.data.text import TextRequest
    from cnnapp.tasks.images import ImageTask
    from cnnapp.tasks.sentences import SentenceTask
    base = tmp_path_factory.mktemp("litert")
    out = {}

    task = ImageTask(ImageRequest(dataset="digits"))
    outcome = _train(task, model="image_cnn", options={"filters": (8, 16), "dense_units": (32,)}, base=base,
                     name="digits")
    splits = task.load()[0].to_splits(seed=1337)
    out["digits"] = (outcome.export_dir, [png_bytes(x) for x in splits.x_test], splits.y_test, outcome)

    photos = write_photo_folder(base / "photos")
    task = ImageTask(ImageRequest(data=str(photos), image_size=(16, 16)))
    # the folder's preset flips: the export (and its LiteRT model) averages the image and its mirror (TTA)
    outcome = _train(task, model="image_cnn", options={"filters": (8, 16), "dense_units": (16,)}, base=base,
                     name="photos", epochs=8)
    files = sorted((photos / "test").rglob("*.*"))
    class_names = ["blue", "green", "red"]
    out["photos"] = (outcome.export_dir, [f.read_bytes() for f in files],
                     np.array([class_names.index(f.parent.name) for f in files]), outcome)

    task = SentenceTask(TextRequest())
    outcome = _train(task, model="text_cnn", options={"feature_maps": 8, "embedding_dim": 16}, base=base,
                     name="demo", epochs=3)
    splits = task.load()[0].to_splits(seed=1337)
    out["demo"] = (outcome.export_dir, [str(s) for s in splits.x_test], splits.y_test, outcome)
    return out


def _scores(predictions) -> np.ndarray:
    assert all(p.error is None for p in predictions), [p.error for p in predictions if p.error]
    return np.array([p.scores for p in predictions])


@pytest.mark.parametrize("name", ["digits", "photos", "demo"])
@pytest.mark.slow   # make test-slow (CI runs it): make test stays near 8 minutes
def test_litert_agrees_with_the_savedmodel_on_the_test_part(trained, name):
    from cnnapp.inference.litert import LiteRTPredictor
    from cnnapp.inference.predictor import Predictor
    export_dir, values, labels, _ = trained[name]
    assert (export_dir / LITERT / "model.tflite").is_file()
    lite, saved = LiteRTPredictor(export_dir), Predictor(export_dir)
    assert lite.kind == saved.kind
    p_lite, p_saved = lite.predict(values), saved.predict(values)
    assert [p.classes for p in p_lite] == [p.classes for p in p_saved]
    a, b = _scores(p_lite), _scores(p_saved)
    agreement = float((a.argmax(1) == b.argmax(1)).mean())
    accuracy = float((np.asarray(p_saved[0].classes)[b.argmax(1)] == np.asarray(p_saved[0].classes)[labels]).mean())
    assert len(values) >= 30 and agreement >= 0.995 and np.abs(a - b).max() <= 0.01, (agreement, np.abs(a - b).max())
    assert accuracy > 1.5 / len(p_saved[0].classes), accuracy   # trained: the comparison is not of near-uniform scores


def test_int8_is_smaller_and_close(trained, tmp_path):
    """--litert int8: dynamic-range weights; the meta says so and the answers stay close to float."""
    from cnnapp.inference.litert import LiteRTPredictor
    from cnnapp.tasks import export_model
    from cnnapp.tasks.images import ImageTask
    export_dir, values, _, outcome = trained["digits"]
    int8_dir = export_model(ImageTask(), outcome.result.model, outcome.prepared, class_names=[str(i) for i in range(10)],
                            export_base=tmp_path, name="digits8", litert="int8")
    meta = json.loads((int8_dir / LITERT / "meta.json").read_text())
    assert meta["quantization"] == "int8"
    assert (int8_dir / LITERT / "model.tflite").stat().st_size < 0.6 * (export_dir / LITERT / "model.tflite").stat().st_size
    a = _scores(LiteRTPredictor(int8_dir).predict(values))
    b = _scores(LiteRTPredictor(export_dir).predict(values))
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.95


def test_the_meta_names_what_a_runtime_needs(trained):
    image = json.loads((trained["photos"][0] / LITERT / "meta.json").read_text())
    assert {k: image[k] for k in ("kind", "input", "image_size", "channels", "class_names", "input_dtype")} == {
        "kind": "image", "input": "pixels", "image_size": [16, 16], "channels": 3,
        "class_names": ["blue", "green", "red"], "input_dtype": "float32"}
    text = json.loads((trained["demo"][0] / LITERT / "meta.json").read_text())
    assert (text["input"], text["standardize"], text["split"], text["input_dtype"]) == \
        ("token_ids", "kim", "whitespace", "int64")
    vocabulary = (trained["demo"][0] / LITERT / "vocabulary.txt").read_text(encoding="utf-8").split("\n")
    assert vocabulary[:2] == ["", "[UNK]"] and len(vocabulary) - 1 == text["vocabulary_size"]


# --- the numpy preprocessing against the TensorFlow layers -----------------------------------------------

def _encoded(img: np.ndarray, fmt: str, mode: str | None = None, **kw) -> bytes:
    from PIL import Image
    image = Image.fromarray(img)
    buf = io.BytesIO()
    (image.convert(mode) if mode else image).save(buf, fmt, **kw)
    return buf.getvalue()


def test_decoded_pixels_equal_the_image_decoders():
    import tensorflow as tf
    from cnnapp.inference.pixels import decode
    from cnnapp.preprocessing.image import ImageDecoder
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    gray = rng.integers(0, 256, (30, 20), dtype=np.uint8)
    sixteen = io.BytesIO()
    from PIL import Image
    Image.fromarray((gray.astype(np.uint16) * 257 + 3).astype(np.uint16)).save(sixteen, "PNG")
    files = {"png rgb": _encoded(rgb, "PNG"), "png gray": _encoded(gray, "PNG"), "png 16-bit": sixteen.getvalue(),
             "png rgba": _encoded(np.dstack([rgb, rgb[:, :, 0]]), "PNG"), "png palette": _encoded(rgb, "PNG", "P"),
             "png gray+alpha": _encoded(gray, "PNG", "LA"), "jpeg": _encoded(rgb, "JPEG", quality=95),
             "jpeg gray": _encoded(gray, "JPEG"), "jpeg cmyk": _encoded(rgb, "JPEG", "CMYK"),
             "jpeg progressive": _encoded(rgb, "JPEG", progressive=True), "gif": _encoded(rgb, "GIF"),
             "bmp": _encoded(rgb, "BMP"), "webp": _encoded(rgb, "WEBP", lossless=True),
             "at size": _encoded(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), "PNG"),
             "smaller": _encoded(rng.integers(0, 256, (5, 7, 3), dtype=np.uint8), "PNG")}
    files["jpeg 9x larger"] = _encoded(rng.integers(0, 256, (150, 140, 3), dtype=np.uint8), "JPEG")
    resamples = [{}]
    if "resample" in inspect.signature(ImageDecoder.__init__).parameters:
        resamples = [{"resample": "bilinear"}, {"resample": "area"}]
    for (height, width) in ((16, 16), (64, 48)):
        for channels in (1, 3):
            for resample in resamples:
                layer = ImageDecoder(height=height, width=width, channels=channels, **resample)
                for name, data in files.items():
                    expected = layer(tf.constant([data])).numpy()[0]
                    got = decode(data, height=height, width=width, channels=channels, **resample)
                    assert got.shape == expected.shape and got.dtype == np.float32
                    assert np.abs(got - expected).max() <= 2e-3, (name, height, width, channels, resample,
                                                                  np.abs(got - expected).max())


AWKWARD = ["A good film!", "it's the director's best , isn't it ?", "Ça va très BIEN ; n'est-ce pas",
           "ΣΊΣΥΦΟΣ and ΣΑΣ Σ", "İstanbul ǅemal ß ẞ", "tab\there\vvert\x1cfs\u00a0nbsp\u2003em line\nbreak",
           "emoji 😀 ok", "under_score #hash @at 1,000.50 $5 -- re-make `quote` \"dq\"",
           "'s 'll'd you'réa he'sé x'sy", "", "   ", "日本語のテキスト 123 ٣٤ ①②", "a\rb\fc", "Ⅻ ¼ ²", "don't can't"]


@pytest.mark.parametrize("standardize", ["kim", "kim_sst", "lower", "lower_and_strip_punctuation", "none"])
@pytest.mark.parametrize("ngrams", [None, 2])
def test_token_ids_equal_the_text_vectorizers(standardize, ngrams):
    import tensorflow as tf
    from cnnapp.inference.tokens import Tokenizer
    from cnnapp.preprocessing.text import make_vectorizer
    vectorizer = make_vectorizer(AWKWARD + ["good film director best", "très bien", "σίσυφος", "re-make"],
                                 max_tokens=300, sequence_length=24, standardize=standardize, ngrams=ngrams)
    tokenizer = Tokenizer(vocabulary=vectorizer.get_vocabulary(), sequence_length=24, standardize=standardize,
                          ngrams=ngrams)
    np.testing.assert_array_equal(tokenizer(AWKWARD), vectorizer(tf.constant(AWKWARD)).numpy())


def test_every_standardization_the_app_offers_is_reproduced():
    from cnnapp.config import STANDARDIZE
    from cnnapp.inference.tokens import STANDARDIZERS
    assert set(STANDARDIZE) <= set(STANDARDIZERS)


# --- predict: the runtime, no TensorFlow, and what it reads -----------------------------------------------

NO_TF = """
import json, sys
from cnnapp.cli import cli
try:
    cli.main(args=sys.argv[1:], prog_name="cnnapp")
except SystemExit as e:
    code = e.code
print("MODULES", json.dumps({"code": code, "tensorflow": "tensorflow" in sys.modules, "keras": "keras" in sys.modules}))
"""


@pytest.mark.parametrize("kind", ["image", "text"])
def test_a_litert_predict_never_imports_tensorflow(model_base, tmp_path, kind):
    png = tmp_path / "x.png"
    png.write_bytes(png_bytes(np.full((8, 8, 1), 200)))
    args = ["predict", model_base / "tiny_image", png] if kind == "image" else \
        ["predict", model_base / "tiny_text", "a good film", "dull"]
    result = subprocess.run([sys.executable, "-c", NO_TF, *map(str, args)], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    state = json.loads([ln for ln in result.stdout.splitlines() if ln.startswith("MODULES")][-1].split(" ", 1)[1])
    assert state == {"code": 0, "tensorflow": False, "keras": False}, result.stdout + result.stderr[-2000:]
    assert "XNNPACK" not in result.stderr and "Traceback" not in result.stderr, result.stderr
    lines = [ln for ln in result.stdout.splitlines() if not ln.startswith("MODULES")]
    assert len(lines) == (1 if kind == "image" else 2) and all(": " in ln for ln in lines), result.stdout


def test_runtime_option_and_an_export_without_litert(model_base, tmp_path):
    png = tmp_path / "x.png"
    png.write_bytes(png_bytes(np.arange(64).reshape(8, 8, 1) * 4))
    lite = run_cli(["predict", model_base / "tiny_image", png, "--json"]).output
    saved = run_cli(["predict", model_base / "tiny_image", png, "--json", "--runtime", "savedmodel"]).output
    a, b = json.loads(lite)["predictions"][0]["top"], json.loads(saved)["predictions"][0]["top"]
    assert [t["class"] for t in a] == [t["class"] for t in b]
    assert max(abs(x["probability"] - y["probability"]) for x, y in zip(a, b)) <= 1e-3

    from cnnapp.models.image_cnn import build_image_cnn
    from cnnapp.preprocessing.image import ImageDecoder
    from cnnapp.tasks import export_model
    from cnnapp.tasks.images import ImageTask, image_prepared
    model = build_image_cnn(input_shape=(8, 8, 1), num_classes=3, filters=(4,), dense_units=(8,), batch_norm=False)
    old = export_model(ImageTask(), model, image_prepared(ImageDecoder(height=8, width=8, channels=1), num_classes=3),
                       class_names=["a", "b", "c"], export_base=tmp_path, name="old", litert="none")
    assert not (old / LITERT).exists()
    assert run_cli(["predict", old, png]).output.startswith(f"{png}: ")      # the SavedModel, as before
    result = run_cli(["predict", old, png, "--runtime", "litert"], expect_exit=1)
    assert result.output.startswith("Error: --runtime: this export has no LiteRT model") and \
        len(result.output.strip().splitlines()) == 1, result.output


def test_a_sentence_far_past_the_sequence_length_is_cut_with_a_note(model_base):
    long = " ".join(["great acting , great story"] * 2000)      # 10,000 words; the model reads 12 tokens
    first = "great acting , great story great acting , great story great acting"
    result = run_cli(["predict", model_base / "tiny_text", long, first, "--json"])
    notes = [ln for ln in result.stderr.splitlines() if ln.startswith("note:")]
    assert len(notes) == 1 and "sentence 1" in notes[0] and "10,000 words" in notes[0] and "12 tokens" in notes[0] \
        and len(notes[0]) < 300, result.stderr
    rows = json.loads(result.stdout)["predictions"]
    assert rows[0]["input"] == rows[1]["input"] == first and rows[0]["top"] == rows[1]["top"]
    saved = json.loads(run_cli(["predict", model_base / "tiny_text", long, "--json", "--runtime", "savedmodel"]).stdout)
    assert saved["predictions"][0]["top"][0]["class"] == rows[0]["top"][0]["class"]


def test_a_line_over_the_size_limit_is_refused_in_one_line(model_base, tmp_path):
    lines = tmp_path / "lines.txt"
    lines.write_text("a good film\n" + "x" * 1001 + "\nso so\n", encoding="utf-8")
    result = run_cli(["predict", model_base / "tiny_text", "--file", lines, "--max-input-bytes", "1000"], expect_exit=1)
    assert result.output.startswith("Error: --file: line 2 of ") and "longer than 1,000 bytes" in result.output \
        and len(result.output.strip().splitlines()) == 1 and "x" * 100 not in result.output, result.output
    # at the limit it is read (and cut to what the model uses)
    ok = run_cli(["predict", model_base / "tiny_text", "--file", lines, "--max-input-bytes", "1001"])
    assert len(ok.stdout.strip().splitlines()) == 3
    result = run_cli(["predict", model_base / "tiny_text", "y" * 5000, "--max-input-bytes", "1000"], expect_exit=1)
    assert result.output.startswith("Error: INPUTS: sentence 1 is longer than 1,000 bytes") and \
        "5,000 characters" in result.output and len(result.output) < 300, result.output


def test_an_image_file_over_the_size_limit_is_an_error_row_naming_it(model_base, tmp_path):
    small, large = tmp_path / "small.png", tmp_path / "large.png"
    small.write_bytes(png_bytes(np.zeros((8, 8, 1))))
    large.write_bytes(png_bytes(np.random.default_rng(0).integers(0, 256, (64, 64, 1))))
    limit = small.stat().st_size + 10
    result = run_cli(["predict", model_base / "tiny_image", small, large, "--max-input-bytes", limit], expect_exit=1)
    assert result.stdout.startswith(f"{small}: ")
    assert result.stderr.strip() == f"{large}: error: file over the {limit:,}-byte limit (--max-input-bytes); not read"


def test_an_undecodable_image_is_an_error_row_in_both_runtimes(model_base, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all" * 100)
    for runtime in ("litert", "savedmodel"):
        result = run_cli(["predict", model_base / "tiny_image", bad, "--runtime", runtime], expect_exit=1)
        assert result.stderr.startswith(f"{bad}: error: cannot decode input (") and \
            len(result.stderr.strip().splitlines()) == 1, (runtime, result.stderr)


@pytest.mark.slow   # make test-slow (CI runs it): make test stays near 8 minutes
def test_train_text_litert_int8_and_none(tmp_path):
    """`--litert int8` reaches the export through the one run path; `--litert none` writes no LiteRT folder
    and predict then answers with the SavedModel."""
    common = ["train-text", "--model", "text_cnn", "--feature-maps", "4", "--region-sizes", "2", "--embedding-dim",
              "8", "--epochs", "1", "--run-dir", tmp_path / "runs", "--export-base", tmp_path / "sm"]
    run_cli([*common, "--name", "q", "--litert", "int8"])
    meta = json.loads((tmp_path / "sm" / "q" / "1" / LITERT / "meta.json").read_text())
    assert meta["quantization"] == "int8" and meta["kind"] == "text"
    run_cli([*common, "--name", "n", "--litert", "none"])
    assert not (tmp_path / "sm" / "n" / "1" / "assets.extra" / "litert").exists()
    assert run_cli(["predict", tmp_path / "sm" / "n", "a good film"]).stdout.startswith("a good film: ")
