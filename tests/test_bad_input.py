"""Bad input, as a new user types it, is one `Error:` line and a non-zero exit, never a traceback.

One parametrised table over every command. The train cases must fail before any training starts
(that is the point of checking first), so each runs in a second or two; they run in a scratch
working directory, so nothing lands in the repository.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import png_bytes

BAD = 1      # a CnnappError / ClickException
USAGE = 2    # click rejected the option itself

# (id, argv, exit code, a piece of the Error line). {models}, {image_run}, {text_run} are filled in.
TRAIN_IMAGE = ["train-image", "--dataset", "digits", "--epochs", "1"]
TRAIN_TEXT = ["train-text", "--epochs", "1"]
CASES = [
    # train-image: names, folders, sizes, seeds, options; all refused before training
    ("name-escape", TRAIN_IMAGE + ["--name", "../../escape"], BAD, "--name: a model name is one folder name"),
    ("name-slash", TRAIN_IMAGE + ["--name", "a/b"], BAD, "--name"),
    ("name-empty", TRAIN_IMAGE + ["--name", ""], BAD, "--name"),
    ("image-size-huge", TRAIN_IMAGE + ["--image-size", "100000"], BAD, "GiB"),
    ("image-size-zero", TRAIN_IMAGE + ["--image-size", "0"], USAGE, "--image-size"),
    ("image-size-text", TRAIN_IMAGE + ["--image-size", "axb"], USAGE, "--image-size"),
    ("seed-huge", TRAIN_IMAGE + ["--seed", str(10**30)], USAGE, "--seed"),
    ("seed-negative", TRAIN_IMAGE + ["--seed", "-1"], USAGE, "--seed"),
    ("seed-ensemble-overflow", TRAIN_IMAGE + ["--seed", str(2**32 - 1), "--ensemble", "2"], BAD, "--seed"),
    ("run-dir-proc", TRAIN_IMAGE + ["--run-dir", "/proc/x"], BAD, "--run-dir: cannot write in /proc"),
    ("run-dir-below-file", TRAIN_IMAGE + ["--run-dir", "afile/sub"], BAD, "--run-dir: afile is a file"),
    ("export-base-proc", TRAIN_IMAGE + ["--export-base", "/proc/x"], BAD, "--export-base: cannot write"),
    ("export-base-below-file", TRAIN_IMAGE + ["--export-base", "afile/sub"], BAD, "--export-base: afile is a file"),
    ("data-missing", ["train-image", "--data", "no-such-folder"], BAD, "--data"),
    ("idx-without-train-images", ["train-image", "--data", "idx"], BAD,
     "--data: train-images-idx3-ubyte (or .gz) missing from this folder of IDX files (train-labels-idx1-ubyte)"),
    ("model-unknown", TRAIN_IMAGE + ["--model", "nope"], BAD, "--model"),
    ("model-wrong-kind", TRAIN_IMAGE + ["--model", "text_cnn"], BAD, "--model"),
    ("model-arg-unknown", TRAIN_IMAGE + ["--model-arg", "nope=1"], BAD, "nope"),
    ("filters-zero", TRAIN_IMAGE + ["--filters", "0"], USAGE, "--filters"),
    ("epochs-zero", ["train-image", "--epochs", "0"], USAGE, "--epochs"),
    ("augment-unknown", TRAIN_IMAGE + ["--augment", "nope"], BAD, "nope"),
    ("conv-dropout-one", TRAIN_IMAGE + ["--conv-dropout", "1.5"], USAGE, "--conv-dropout"),
    ("repeats-without-cv", TRAIN_IMAGE + ["--repeats", "2"], BAD, "--repeats"),
    ("export-fold-out-of-range", TRAIN_IMAGE + ["--cv", "2", "--export-fold", "3"], BAD, "--export-fold"),
    ("class-names-count", TRAIN_IMAGE + ["--class-names", "a,b"], BAD, "--class-names: the data has 10 classes"),
    ("class-names-duplicate", TRAIN_IMAGE + ["--class-names", "a,a"], BAD, "--class-names: expected distinct"),
    ("class-names-file-missing", TRAIN_IMAGE + ["--class-names", "@no-such-file"], BAD, "--class-names: cannot read"),
    # train-text
    ("max-norm-negative", TRAIN_TEXT + ["--max-norm", "-1"], USAGE, "--max-norm"),
    ("embeddings-random-bytes", TRAIN_TEXT + ["--embedding-mode", "static", "--embeddings", "random.bin"], BAD,
     "random.bin"),
    ("embeddings-missing-file", TRAIN_TEXT + ["--embedding-mode", "static", "--embeddings", "no-such.txt"], BAD,
     "--embeddings"),
    ("embeddings-not-given", TRAIN_TEXT + ["--embedding-mode", "static"], BAD, "--embeddings"),
    ("text-data-missing", TRAIN_TEXT + ["--data", "no-such.txt"], BAD, "--data"),
    ("text-glob-no-match", TRAIN_TEXT + ["--data", "nomatch*.txt"], BAD, "--data: the pattern matches no file"),
    ("text-encoding-unknown", TRAIN_TEXT + ["--data", "labelled.txt", "--encoding", "nope"], BAD, "--encoding"),
    ("text-not-utf8", TRAIN_TEXT + ["--data", "latin1.txt"], BAD, "--encoding latin-1"),
    ("text-dev-without-data", TRAIN_TEXT + ["--dev", "labelled.txt"], BAD, "--dev/--test need --data"),
    ("text-data-and-dataset", TRAIN_TEXT + ["--data", "labelled.txt", "--dataset", "imdb_reviews"], BAD, "give one"),
    ("text-combined-file-as-class", TRAIN_TEXT + ["--data", "rt.pos", "--data", "rt.neg", "--data", "rt.all"], BAD,
     "combined file"),
    ("text-class-names-on-named-classes", TRAIN_TEXT + ["--class-names", "a,b"], BAD, "--class-names: is for integer"),
    ("text-name-escape", TRAIN_TEXT + ["--name", "../x"], BAD, "--name"),
    ("feature-maps-zero", TRAIN_TEXT + ["--feature-maps", "0"], USAGE, "--feature-maps"),
    # non-finite numbers pass a range's comparisons (nan < 0 is False) and make models that answer NaN
    ("learning-rate-nan", TRAIN_IMAGE + ["--learning-rate", "nan"], USAGE, "'--learning-rate': expected a finite"),
    ("learning-rate-inf", TRAIN_IMAGE + ["--learning-rate", "inf"], USAGE, "'--learning-rate': expected a finite"),
    ("label-smoothing-nan", TRAIN_IMAGE + ["--label-smoothing", "nan"], USAGE, "--label-smoothing"),
    ("ema-nan", TRAIN_IMAGE + ["--ema", "nan"], USAGE, "--ema"),
    ("dropout-nan", TRAIN_IMAGE + ["--dropout", "nan"], USAGE, "--dropout"),
    ("max-norm-nan", TRAIN_TEXT + ["--max-norm", "nan"], USAGE, "'--max-norm': expected a finite number"),
    ("max-norm-inf", TRAIN_TEXT + ["--max-norm", "inf"], USAGE, "'--max-norm': expected a finite number"),
    # --model-arg values are typed from the factory's signature
    ("model-arg-filters-text", TRAIN_IMAGE + ["--model-arg", "filters=abc"], BAD,
     "--model-arg filters: image_cnn's filters takes positive integers"),
    ("model-arg-dropout-nan", TRAIN_IMAGE + ["--model-arg", "dropout=NaN"], BAD,
     "--model-arg dropout: image_cnn's dropout takes a finite number"),
    ("model-arg-dropout-one", TRAIN_IMAGE + ["--model-arg", "dropout=1"], BAD, "in [0, 1). Received: dropout=1"),
    ("model-arg-feature-maps-float", TRAIN_TEXT + ["--model-arg", "feature_maps=1.5"], BAD,
     "takes a positive integer. Received: feature_maps=1.5"),
    ("model-arg-batch-norm-number", TRAIN_IMAGE + ["--model-arg", "batch_norm=3"], BAD, "true or false"),
    # layer sizes whose parameters cannot fit in memory, refused before anything is built
    ("filters-huge", TRAIN_IMAGE + ["--filters", "100000000"], BAD, "--filters: the model has at least"),
    ("dense-units-huge", TRAIN_IMAGE + ["--dense-units", "1000000000"], BAD, "--dense-units: the model has at least"),
    ("feature-maps-huge", TRAIN_TEXT + ["--feature-maps", "1000000000"], BAD, "--feature-maps: the model has at least"),
    ("model-arg-feature-maps-huge", TRAIN_TEXT + ["--model-arg", "feature_maps=1000000000"], BAD,
     "--model-arg feature_maps: the model has at least"),
    # predict
    ("predict-no-model", ["predict", "no-such-model", "x.png"], BAD, "MODEL: no such model folder"),
    ("predict-not-a-model", ["predict", ".", "x.png"], BAD, "MODEL: no SavedModel here"),
    ("predict-text-model-given-a-file", ["predict", "{models}/tiny_text", "digit.png"], BAD, "--as-text"),
    ("predict-file-not-utf8", ["predict", "{models}/tiny_text", "--file", "latin1.txt"], BAD,
     "--file: line 1 is not valid utf-8"),
    ("predict-file-missing", ["predict", "{models}/tiny_text", "--file", "no-such.txt"], BAD, "--file: cannot read"),
    ("predict-image-model-with-file", ["predict", "{models}/tiny_image", "--file", "words.txt"], BAD,
     "--file: is for sentence models"),
    ("predict-image-model-no-inputs", ["predict", "{models}/tiny_image"], BAD, "INPUTS"),
    ("predict-top-k-zero", ["predict", "{models}/tiny_image", "digit.png", "--top-k", "0"], USAGE, "--top-k"),
    # summary
    ("summary-model-unknown", ["summary", "image", "--model", "nope"], BAD, "--model"),
    ("summary-image-size-zero", ["summary", "image", "--image-size", "0"], USAGE, "--image-size"),
    ("summary-model-arg-unknown", ["summary", "text", "--model-arg", "nope=1"], BAD, "nope"),
    ("summary-max-norm-negative", ["summary", "text", "--max-norm", "-1"], USAGE, "--max-norm"),
    ("summary-filters-huge", ["summary", "image", "--filters", "100000000"], BAD, "--filters: the model has at least"),
    ("summary-embedding-dim-huge", ["summary", "text", "--embedding-dim", "1000000000"], BAD, "--embedding-dim"),
    ("summary-model-arg-max-norm-nan", ["summary", "text", "--model-arg", "max_norm=NaN"], BAD, "max_norm=nan"),
    ("summary-dropout-inf", ["summary", "text", "--dropout", "inf"], USAGE, "--dropout"),
    # inspect
    ("inspect-not-a-run", ["inspect", ".", "digit.png"], BAD, "RUN_DIR: no best.keras"),
    ("inspect-zero-byte-png", ["inspect", "{image_run}", "empty.png"], BAD, "not a readable image (Input is empty"),
    ("inspect-truncated-jpeg", ["inspect", "{image_run}", "truncated.jpg"], BAD, "not a readable image"),
    ("inspect-missing-image", ["inspect", "{image_run}", "no-such.png"], BAD, "cannot read file"),
    ("inspect-out-proc", ["inspect", "{image_run}", "digit.png", "--out", "/proc/x"], BAD, "--out"),
    ("inspect-out-below-file", ["inspect", "{image_run}", "digit.png", "--out", "afile/sub"], BAD, "--out"),
    ("inspect-text-run-given-a-file", ["inspect", "{text_run}", "words.txt"], BAD, "--as-text"),
    ("inspect-file-not-utf8", ["inspect", "{text_run}", "--file", "latin1.txt"], BAD, "--file: line 1"),
    # serve (its options as they are today; the server itself is tested elsewhere)
    ("serve-port-out-of-range", ["serve", "--port", "70000"], USAGE, "--port"),
    ("serve-poll-nan", ["serve", "--file_system_poll_wait_seconds", "nan"], USAGE, "--file_system_poll_wait_seconds"),
    ("serve-no-models", ["serve", "--model-base-path", "no-such-folder"], BAD, ""),
    ("serve-config-file-missing", ["serve", "--model-config-file", "no-such.config"], BAD, ""),
    # launch
    ("launch-not-a-train-command", ["launch", "--", "predict", "x"], USAGE, "COMMAND"),
    ("launch-one-worker", ["launch", "--workers", "1", "--", "train-image"], USAGE, "--workers"),
    ("launch-without-cluster", ["launch", "--", "train-image"], BAD, "TF_CONFIG"),
    # sweep (spec contents: tests/test_sweep.py)
    ("sweep-spec-missing", ["sweep", "text", "--spec", "no-such.json"], BAD, "--spec: no such file"),
    ("sweep-spec-not-json", ["sweep", "text", "--spec", "words.txt"], BAD, "words.txt line 1 column 1 is not valid"),
    ("sweep-stage-unknown", ["sweep", "text", "--stages", "region,nope"], BAD, "--stages: unknown stage 'nope'"),
    ("sweep-region-range-backwards", ["sweep", "text", "--region-range", "5-2"], BAD, "--region-range"),
    ("sweep-plan-and-spec", ["sweep", "text", "--plan", "zhang-wallace", "--spec", "x.json"], USAGE, "--plan or"),
    ("sweep-image-without-spec", ["sweep", "image"], BAD, "--spec: the zhang-wallace plan is for the text_cnn"),
    ("sweep-workers-zero", ["sweep", "text", "--workers", "0"], USAGE, "--workers"),
    ("sweep-ensemble", ["sweep", "text", "--ensemble", "2"], BAD, "--ensemble"),
    ("sweep-learning-rate-nan", ["sweep", "text", "--learning-rate", "nan"], USAGE, "--learning-rate"),
    ("sweep-model-arg-typed", ["sweep", "text", "--model-arg", "region_sizes=abc"], BAD, "--model-arg region_sizes"),
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """An image run and a sentence run as `inspect` reads them (untrained: best.keras + preprocessor.keras)."""
    import keras
    from cnnapp.models.image_cnn import build_image_cnn
    from cnnapp.models.text_cnn import build_text_cnn
    from cnnapp.preprocessing.image import ImageDecoder
    from cnnapp.preprocessing.text import make_vectorizer
    from cnnapp.tasks import save_preprocessor
    from cnnapp.tasks.images import image_prepared
    from cnnapp.tasks.sentences import text_prepared
    base = tmp_path_factory.mktemp("runs")
    keras.utils.set_random_seed(0)
    image_run, text_run = base / "image", base / "text"
    image_run.mkdir()
    text_run.mkdir()
    build_image_cnn(input_shape=(8, 8, 1), num_classes=3, filters=(4, 8), dense_units=(8,),
                    batch_norm=False).save(str(image_run / "best.keras"))
    save_preprocessor(image_prepared(ImageDecoder(height=8, width=8, channels=1, name="image_decoder"),
                                     num_classes=3), image_run)
    vectorizer = make_vectorizer(["a good film", "a bad film", "dull and boring"], max_tokens=50, sequence_length=8)
    build_text_cnn(sequence_length=8, vocab_size=vectorizer.vocabulary_size(), num_classes=2, region_sizes=(2, 3),
                   feature_maps=4, embedding_dim=8).save(str(text_run / "best.keras"))
    save_preprocessor(text_prepared(vectorizer, num_classes=2), text_run)
    for run, names in ((image_run, ["a", "b", "c"]), (text_run, ["negative", "positive"])):
        (run / "config.json").write_text(json.dumps({"resolved": {"class_names": names}}))
    return {"image_run": image_run, "text_run": text_run}


def write_inputs(folder):
    """The files the cases name, in the working directory."""
    import tensorflow as tf
    png = png_bytes(np.arange(64, dtype=np.uint8).reshape(8, 8, 1))
    (folder / "digit.png").write_bytes(png)
    (folder / "empty.png").write_bytes(b"")
    jpeg = tf.io.encode_jpeg(np.full((8, 8, 1), 200, dtype=np.uint8)).numpy()
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (folder / "afile").write_text("a file, not a folder\n")
    (folder / "idx").mkdir()
    (folder / "idx" / "train-labels-idx1-ubyte").write_bytes(b"")
    (folder / "words.txt").write_text("a good film\n")
    (folder / "latin1.txt").write_bytes("1 caf\xe9 cr\xe8me\n".encode("latin-1"))
    (folder / "labelled.txt").write_text("".join(f"{i % 2} sentence number {i}\n" for i in range(40)))
    (folder / "random.bin").write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    pos, neg = [f"good film {i}" for i in range(20)], [f"bad film {i}" for i in range(20)]
    (folder / "rt.pos").write_text("\n".join(pos) + "\n")
    (folder / "rt.neg").write_text("\n".join(neg) + "\n")
    (folder / "rt.all").write_text("".join(f"1 {s}\n" for s in pos) + "".join(f"0 {s}\n" for s in neg))


@pytest.mark.parametrize("case, argv, exit_code, needle", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_error_line(case, argv, exit_code, needle, tmp_path, monkeypatch, model_base, runs):
    from click.testing import CliRunner
    from cnnapp.cli import cli
    monkeypatch.chdir(tmp_path)
    write_inputs(tmp_path)
    args = [a.format(models=model_base, **runs) for a in argv]
    result = CliRunner().invoke(cli, args, env={"TF_CONFIG": None})
    out = result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        f"{type(result.exception).__name__}: {result.exception}\n{out[-2000:]}"
    assert "Traceback" not in out, out[-2000:]
    errors = [line for line in out.splitlines() if line.startswith("Error:")]
    assert result.exit_code == exit_code and len(errors) == 1, f"exit {result.exit_code}:\n{out[-2000:]}"
    assert needle in errors[0], errors[0]
    assert not (tmp_path.parent / "escape").exists() and not (tmp_path / "saved_models").exists()


def test_the_table_covers_every_command():
    commands = {argv[0] for _, argv, _, _ in CASES}
    assert commands >= {"train-image", "train-text", "predict", "summary", "inspect", "serve", "launch", "sweep"}
    assert len(CASES) >= 40
