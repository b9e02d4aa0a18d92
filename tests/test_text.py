"""train-text end to end on data the tests write: every source, embeddings, CV, export parity, predict."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli, shared_data

# A tiny model: 2 branches of 4 maps over 8-d embeddings, one epoch. Accuracy is not the point.
TINY = ["--region-sizes", "2,3", "--feature-maps", "4", "--embedding-dim", "8", "--epochs", "1",
        "--batch-size", "16"]
POS = ["a warm , funny and moving film", "great acting and a clever story", "a joy from start to finish",
       "beautifully shot and deeply felt", "smart , sharp and touching", "i loved every minute"]
NEG = ["a dull and lifeless mess", "boring , slow and far too long", "the plot never comes together",
       "clumsy writing and flat acting", "a waste of two hours", "i was bored stiff"]
ODD_SENTENCES = ["great", "", "un film très réussi , naïve et émouvant ☺", "ok"]


def write_lines(path: Path, lines, encoding="utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


def read(**options):
    from cnnapp.data.text import TextRequest, read_text_data
    if "data" in options:
        options["data"] = tuple(str(d) for d in options["data"])
    return read_text_data(TextRequest(**options))


# ---------------------------------------------------------------------------- sources

def test_demo_source_is_the_templated_corpus():
    data, source = read()
    assert source == "demo" and data.class_names == ["negative", "positive"]
    assert len(data.y) == 500 and np.bincount(data.y).tolist() == [250, 250]
    assert "templated" in data.description["source"]


def test_class_files_by_name_and_by_glob(tmp_path):
    write_lines(tmp_path / "rt-polarity.pos", POS * 2)
    # latin-1, with cp1252's 0x85 ("...") inside a line: it must not split the line in two.
    write_lines(tmp_path / "rt-polarity.neg", [s + " \x85 sigh" for s in NEG], encoding="latin-1")
    for data_arg in ([tmp_path / "rt-polarity.pos", tmp_path / "rt-polarity.neg"], [str(tmp_path / "rt-polarity.*")]):
        data, source = read(data=data_arg, encoding="latin-1")
        assert source == "class-files" and data.class_names == ["neg", "pos"]
        assert np.bincount(data.y).tolist() == [6, 12]
        assert data.x[data.y == 0][0].endswith("\x85 sigh")
    write_lines(tmp_path / "good.txt", POS)
    write_lines(tmp_path / "bad.txt", NEG)
    data, _ = read(data=[tmp_path / "good.txt", tmp_path / "bad.txt"])
    assert data.class_names == ["bad", "good"] and data.name == "good"


def test_labelled_lines_with_dev_and_test_files(tmp_path):
    lines = [f"1 {s}" for s in POS] + [f"0 {s}" for s in NEG]
    train = write_lines(tmp_path / "stsa.binary.train", lines * 3)
    dev = write_lines(tmp_path / "stsa.binary.dev", lines[:4])
    test = write_lines(tmp_path / "stsa.binary.test", lines[-4:])
    data, source = read(data=[train], dev=str(dev), test=str(test))
    assert source == "labelled-lines" and data.class_names == ["0", "1"]
    splits = data.to_splits(seed=1)
    assert splits.counts() == {"train": 36, "validation": 4, "test": 4}
    assert "--dev file" in splits.description["validation"]
    # without dev/test: 10% test held out, then 10% of the rest as dev
    splits = read(data=[train])[0].to_splits(seed=1)
    assert sum(splits.counts().values()) == 36 and splits.counts()["test"] > 0


@pytest.mark.parametrize("suffix,delimiter", [(".csv", ","), (".tsv", "\t")])
def test_csv_and_tsv_with_named_columns(tmp_path, suffix, delimiter):
    import csv
    path = tmp_path / f"reviews{suffix}"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter=delimiter)
        w.writerow(["id", "review", "sentiment"])
        for i, s in enumerate(POS + NEG):
            w.writerow([i, s + (", with a comma" if i % 2 else ""), "pos" if s in POS else "neg"])
    data, source = read(data=[path], text_column="review", label_column="sentiment")
    assert source == "csv" and data.class_names == ["neg", "pos"] and len(data.y) == 12
    assert data.x[1].endswith(", with a comma")
    from cnnapp.errors import CnnappError
    with pytest.raises(CnnappError, match=r"--text-column: no column 'text' .*Received: text_column=text"):
        read(data=[path], label_column="sentiment")


def test_folder_of_class_subfolders_with_train_and_test(tmp_path):
    for split, n in (("train", 5), ("test", 2)):
        for cls, sentences in (("pos", POS), ("neg", NEG)):
            for i in range(n):
                write_lines(tmp_path / "aclImdb" / split / cls / f"{i}_7.txt", [sentences[i], "second line"])
    write_lines(tmp_path / "aclImdb" / "train" / "unsup" / "0_0.txt", ["not a class"])
    data, source = read(data=[tmp_path / "aclImdb"])
    assert source == "folder" and data.class_names == ["neg", "pos"]
    assert len(data.y) == 10 and len(data.y_test) == 4
    assert data.x[0] == "a dull and lifeless mess second line"  # one example per file
    flat, _ = read(data=[tmp_path / "aclImdb" / "train"])  # no train/ subfolder: the folder itself
    assert flat.class_names == ["neg", "pos"] and flat.y_test is None


def test_tfds_name_offline_fails_in_one_line(tmp_path):
    from cnnapp.errors import CnnappError
    with pytest.raises(CnnappError) as e:
        read(dataset="imdb_reviews", data_dir=str(tmp_path))
    assert "imdb_reviews" in str(e.value) and "\n" not in str(e.value)


def test_latin1_file_without_encoding_is_a_one_line_cli_error(tmp_path):
    path = write_lines(tmp_path / "mr.all", ["1 fine", "0 meh", "1 un film réussi"], encoding="latin-1")
    result = run_cli(["train-text", "--data", path, "--run-dir", tmp_path / "runs"], expect_exit=1)
    assert f"{path} line 3 is not valid utf-8" in result.output
    assert "--encoding latin-1" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


# ---------------------------------------------------------------------------- embeddings

VECTORS = {"the": [0.1, -0.2, 0.3], "film": [0.5, 0.5, -0.5], "Good": [1.0, 0.0, -1.0], "zebra": [0.0, 0.2, 0.4]}


def write_glove(path: Path) -> Path:
    return write_lines(path, [w + " " + " ".join(map(str, v)) for w, v in VECTORS.items()])


def write_word2vec_text(path: Path) -> Path:
    return write_lines(path, [f"{len(VECTORS)} 3"] + [w + " " + " ".join(map(str, v)) for w, v in VECTORS.items()])


def write_word2vec_binary(path: Path) -> Path:
    body = b"".join(w.encode() + b" " + struct.pack("<3f", *v) + b"\n" for w, v in VECTORS.items())
    path.write_bytes(f"{len(VECTORS)} 3\n".encode() + body)
    return path


@pytest.mark.parametrize("writer,fmt", [(write_glove, "glove-text"), (write_word2vec_text, "word2vec-text"),
                                        (write_word2vec_binary, "word2vec-binary")])
def test_embeddings_each_format_builds_the_same_matrix(tmp_path, writer, fmt):
    from cnnapp.data.embeddings import build_embedding_matrix, detect_format
    path = writer(tmp_path / "vectors.bin")
    assert detect_format(path) == fmt
    vocabulary = ["", "[UNK]", "the", "film", "good", "unseen"]
    matrix, coverage = build_embedding_matrix(vocabulary, [path], token_counts={"the": 5, "film": 2, "good": 1,
                                                                                "unseen": 2, "[UNK]": 10})
    assert matrix.shape == (6, 3) and matrix.dtype == np.float32
    assert np.array_equal(matrix[0], np.zeros(3))                     # padding
    np.testing.assert_allclose(matrix[2], VECTORS["the"], rtol=1e-6)
    np.testing.assert_allclose(matrix[4], VECTORS["Good"], rtol=1e-6)  # lower-cased vocabulary word
    found = np.stack([VECTORS[w] for w in ("the", "film", "Good")])
    bound = np.sqrt(3 * found.var())                                  # Kim: variance of missing = pretrained
    assert np.all(np.abs(matrix[5]) <= bound) and np.any(matrix[5] != 0)
    assert coverage["types"] == 4 and coverage["types_found"] == 3 and coverage["type_coverage"] == 0.75
    assert coverage["tokens"] == 20 and coverage["tokens_found"] == 8 and coverage["token_coverage"] == 0.4
    assert coverage["formats"] == [fmt]


def test_shared_glove_files_cover_most_sst2_tokens():
    glove = [shared_data("embeddings", "glove.6B.50d.top2445.txt"),
             shared_data("embeddings", "glove.6B.50d.slice5403.txt")]
    sentences, _ = zip(*[(line.split(" ", 1)[1], 0) for line in
                         shared_data("text", "sst2", "stsa.binary.dev").read_text().splitlines()])
    from cnnapp.data.embeddings import build_embedding_matrix
    from cnnapp.tasks.sentences import training_token_counts
    from cnnapp.preprocessing.text import make_vectorizer
    vectorizer = make_vectorizer(sentences, max_tokens=None, sequence_length=60)
    matrix, coverage = build_embedding_matrix(vectorizer.get_vocabulary(), glove,
                                              token_counts=training_token_counts(vectorizer, sentences))
    assert matrix.shape == (vectorizer.vocabulary_size(), 50)
    assert 0.70 < coverage["token_coverage"] < 0.90, coverage  # the data README says 79% over SST-2
    assert coverage["formats"] == ["glove-text", "glove-text"]


def test_static_mode_without_embeddings_is_a_one_line_error(tmp_path):
    result = run_cli(["train-text", "--embedding-mode", "static", *TINY, "--run-dir", tmp_path], expect_exit=1)
    assert "--embeddings: the static mode needs pretrained vectors" in result.output


# ---------------------------------------------------------------------------- training, CV, export

@pytest.mark.slow   # make test-slow (CI runs it): make test stays near 8 minutes
def test_cv_with_repeats_reports_mean_min_max_and_exports_the_chosen_fold(tmp_path):
    glove = write_glove(tmp_path / "tiny.glove.txt")
    result = run_cli(["train-text", "--cv", "2", "--repeats", "2", "--export-fold", "2", "--name", "cvdemo",
                      "--embedding-mode", "static", "--embeddings", glove, *TINY,
                      "--run-dir", tmp_path / "runs", "--export-base", tmp_path / "models"])
    summary = json.loads((tmp_path / "runs" / "cvdemo" / "cv.json").read_text())
    assert summary["k"] == 2 and summary["repeats"] == 2 and summary["seeds"] == [1337, 1338]
    assert len(summary["folds"]) == 4 and summary["min_max_over"] == "repeats"
    assert summary["min"] <= summary["mean"] <= summary["max"]
    assert summary["mean"] == pytest.approx(np.mean(summary["repeat_means"]), abs=1e-4)
    assert f"accuracy mean {summary['mean']:.4f}" in result.output
    assert "exported model: fold 2 of the first seed" in result.output
    assert "retracing" not in result.output   # each fold is a new model (its own vocabulary): no TF warning
    fold = tmp_path / "runs" / "cvdemo" / "cv" / "seed1337" / "fold2"
    metrics = json.loads((fold / "metrics.json").read_text())
    assert metrics["evaluated_on"] == "test" and "confusion_matrix" in json.dumps(metrics)
    assert metrics["embedding_coverage"]["types_found"] == 2  # "the" and "film" occur in the demo corpus
    assert "tokens_found" in json.loads((fold / "config.json").read_text())["preprocessing"]["embedding_coverage"]
    meta = json.loads((tmp_path / "models" / "cvdemo" / "1" / "assets.extra" / "cnnapp.json").read_text())
    assert meta["trained_on"].startswith("fold 2")


def test_cv_refuses_fixed_test_split(tmp_path):
    train = write_lines(tmp_path / "a.train", [f"1 {s}" for s in POS] + [f"0 {s}" for s in NEG])
    result = run_cli(["train-text", "--data", train, "--test", train, "--cv", "3", "--run-dir", tmp_path],
                     expect_exit=1)
    assert "--cv: the data has fixed dev/test splits" in result.output


@pytest.mark.slow   # make test-slow (CI runs it): make test stays near 8 minutes
def test_export_reload_in_fresh_process_gives_same_probabilities(tmp_path):
    import tensorflow as tf
    from cnnapp.config import ModelChoice, TrainConfig
    from cnnapp.data.text import TextRequest
    from cnnapp.tasks.sentences import SentenceTask
    from cnnapp.training.run import run
    write_lines(tmp_path / "reviews.pos", POS * 3)
    write_lines(tmp_path / "reviews.neg", NEG * 3)
    outcome = run(SentenceTask(TextRequest(data=(str(tmp_path / "reviews.*"),))),
                  model=ModelChoice(options=dict(region_sizes=(2, 3), feature_maps=4, embedding_dim=8)),
                  train=TrainConfig(name="parity", epochs=1, batch_size=8, run_dir=str(tmp_path / "runs"),
                                    export_base=str(tmp_path / "models"), verbose=0))
    sentences = POS[:2] + NEG[:2] + ODD_SENTENCES
    in_memory = outcome.result.model(outcome.prepared.preprocessor(tf.constant(sentences)), training=False).numpy()
    assert in_memory.shape == (len(sentences), 2) and np.isfinite(in_memory).all()
    script = textwrap.dedent(f"""
        import json, sys, tensorflow as tf
        fn = tf.saved_model.load({str(outcome.export_dir)!r}).signatures["serving_default"]
        out = fn(sentences=tf.constant(json.loads(sys.stdin.read())))
        print(json.dumps({{k: v.numpy().tolist() for k, v in out.items() if v.dtype != tf.string}}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], input=json.dumps(sentences), capture_output=True,
                          text=True, timeout=120, env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    reloaded = json.loads(proc.stdout.strip().splitlines()[-1])
    (probs,) = [np.asarray(v) for v in reloaded.values() if np.asarray(v).shape == in_memory.shape]
    assert np.allclose(probs, in_memory, atol=1e-5), (probs, in_memory)

    # the predict command on the export: arguments, --file and stdin; odd sentences included
    result = run_cli(["predict", outcome.export_dir, *ODD_SENTENCES, "--json", "--top-k", "1"])
    predictions = json.loads(result.stdout)["predictions"]   # stdout alone: a note on a cut sentence is stderr's
    assert len(predictions) == len(ODD_SENTENCES)
    from_stdin = run_cli(["predict", outcome.export_dir, "--json"], input="great\nun film très réussi\n")
    assert len(json.loads(from_stdin.stdout)["predictions"]) == 2


def test_one_word_empty_and_non_ascii_sentences_predict_in_memory():
    import tensorflow as tf
    from cnnapp.models.text_cnn import build_text_cnn
    from cnnapp.preprocessing.text import make_vectorizer
    vectorizer = make_vectorizer(POS + NEG, max_tokens=100, sequence_length=5)
    model = build_text_cnn(sequence_length=5, vocab_size=vectorizer.vocabulary_size(), num_classes=2,
                           region_sizes=(3, 4, 5), feature_maps=4, embedding_dim=8)
    probs = model(vectorizer(tf.constant(ODD_SENTENCES))).numpy()
    assert probs.shape == (4, 2) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)


def test_summary_text_multichannel_shows_both_channels():
    out = run_cli(["summary", "text", "--sequence-length", "30", "--vocab-size", "500",
                   "--embedding-mode", "multichannel", "--embedding-dim", "16"]).output
    assert "embedding_static" in out and "embedding_non_static" in out and "channels_w4" in out
    # Kim's edge padding: 30 tokens + 4 zero vectors each side = 38; width 4 gives 35 windows
    assert "(N, 38, 16)" in out and "(N, 35, 100)" in out and "(N, 300)" in out
    plain = run_cli(["summary", "text", "--sequence-length", "30", "--vocab-size", "500",
                     "--no-edge-padding"]).output
    assert "edge_padding=False" in plain.split("Model:")[0]   # the resolved options line
    plain = plain.split("Model:")[1]
    assert "edge_padding" not in plain and "(N, 27, 100)" in plain


def test_edge_padding_lets_every_filter_see_a_one_word_sentence():
    from cnnapp.inspection import ngram_evidence
    from cnnapp.models.text_cnn import build_text_cnn
    import keras
    keras.utils.set_random_seed(0)
    model = build_text_cnn(sequence_length=6, vocab_size=20, num_classes=2, feature_maps=3, embedding_dim=4)
    assert model.get_layer("edge_padding").padding == (4, 4)
    ev = ngram_evidence(model, np.array([7, 0, 0, 0, 0, 0]), ["word"], top=50)
    # windows that start in the leading padding still contain the word, and are reported from it
    assert ev["ngrams"] and all(g["ngram"] == "word" for g in ev["ngrams"])
    assert all(-4 <= g["start"] <= 0 for g in ev["ngrams"])


@pytest.mark.parametrize("mode", ["rand", "multichannel"])
def test_padding_ids_embed_to_zero_so_the_padding_vector_cannot_matter(mode):
    import keras
    from cnnapp.models.text_cnn import build_text_cnn
    keras.utils.set_random_seed(0)
    matrix = np.random.default_rng(0).uniform(-1, 1, (20, 4)).astype("float32") if mode != "rand" else None
    model = build_text_cnn(sequence_length=8, vocab_size=20, num_classes=3, feature_maps=5, embedding_dim=4,
                           embedding_mode=mode, embedding_matrix=matrix)
    ids = np.array([[7, 3, 9, 0, 0, 0, 0, 0], [4, 0, 0, 0, 0, 0, 0, 0]])
    before = model.predict(ids, verbose=0)
    for layer in model.layers:  # a huge vector at id 0, as training could learn for the padding
        if isinstance(layer, keras.layers.Embedding):
            table = np.asarray(layer.embeddings).copy()
            table[0] = 50.0
            layer.embeddings.assign(table)
    after = model.predict(ids, verbose=0)
    np.testing.assert_allclose(after, before, atol=1e-6)
    if mode == "rand":
        zeroed = np.asarray(keras.Model(model.input, model.get_layer("zero_padding_tokens").output)(ids))
        assert np.all(zeroed[0, 3:] == 0) and np.all(np.any(zeroed[0, :3] != 0, axis=-1))


@pytest.mark.parametrize("name, expected", [
    ("kim", ["a", "stirring", ",", "funny", "re-imagining", "of", "cafés", ".", "it", "'s", "fun", "!"]),
    ("kim_sst", ["a", "stirring", ",", "funny", "re", "imagining", "of", "cafés", "it's", "fun", "!"]),
    ("lower", ["a", "stirring", ",", "funny", "re-imagining", "of", "cafés", ".", "it's", "fun", "!"]),
    ("none", ["A", "Stirring", ",", "funny", "re-imagining", "of", "Cafés", ".", "It's", "fun", "!"]),
])
def test_standardize_rules_tokenise_as_documented(name, expected):
    from cnnapp.preprocessing.text import make_vectorizer
    sentence = "A Stirring , funny re-imagining of Cafés . It's fun!"
    if name != "kim":  # the pre-tokenised rules split on whitespace only
        sentence = sentence.replace("fun!", "fun !")
    vectorizer = make_vectorizer([sentence], max_tokens=None, sequence_length=20, standardize=name)
    vocabulary = vectorizer.get_vocabulary()
    ids = vectorizer([sentence]).numpy()[0]
    assert [vocabulary[i] for i in ids if i] == expected


@pytest.mark.slow   # make test-slow (CI runs it): make test stays near 8 minutes
def test_balanced_class_weights_lift_the_rare_class(tmp_path):
    """--class-weight balanced: weights n / (k * n_c) reach the loss. On data with 10x more positive
    than negative lines, the weighted model gives the negative class more probability than the same
    run (same seed, same data) without weights; config.json records the weights."""
    import json
    import tensorflow as tf
    from cnnapp.config import ModelChoice, TrainConfig
    from cnnapp.data.text import TextRequest
    from cnnapp.tasks.sentences import SentenceTask
    from cnnapp.training.recipe import class_weights
    from cnnapp.training.run import run
    assert class_weights([1] * 60 + [0] * 6, 2, "balanced") == {0: 66 / 12, 1: 66 / 120}
    assert class_weights([0, 0, 2], 3, "balanced") == {0: 0.5, 1: 1.0, 2: 1.0}      # absent class keeps 1
    assert class_weights([0, 1], 2, None) is None
    write_lines(tmp_path / "reviews.pos", POS * 10)
    write_lines(tmp_path / "reviews.neg", NEG)
    negative_probability = {}
    for weighting in (None, "balanced"):
        outcome = run(SentenceTask(TextRequest(data=(str(tmp_path / "reviews.*"),))),
                      model=ModelChoice(options=dict(region_sizes=(2, 3), feature_maps=4, embedding_dim=8)),
                      train=TrainConfig(name=f"w-{weighting}", epochs=2, batch_size=8, seed=7, class_weight=weighting,
                                        run_dir=str(tmp_path / "runs"), export=False, verbose=0))
        probs = outcome.result.model(outcome.prepared.preprocessor(tf.constant(POS + NEG)), training=False).numpy()
        negative_probability[weighting] = float(probs[:, 0].mean())    # classes sorted: neg, pos
        resolved = json.loads((tmp_path / "runs" / f"w-{weighting}" / "config.json").read_text())["resolved"]
        if weighting:
            counts = resolved["splits"]
            assert set(resolved["class_weights"]) == {"neg", "pos"}
            assert resolved["class_weights"]["neg"] > 1 > resolved["class_weights"]["pos"], (resolved, counts)
        else:
            assert resolved["class_weights"] is None
    assert negative_probability["balanced"] > negative_probability[None] + 0.02, negative_probability
    result = run_cli(["train-text", "--class-weight", "sometimes"], expect_exit=2)
    assert "--class-weight" in result.output and "sometimes" in result.output
    run_cli(["train-text", *TINY, "--class-weight", "none", "--name", "off", "--no-export", "--run-dir", tmp_path / "cli"])
    assert json.loads((tmp_path / "cli" / "off" / "config.json").read_text())["resolved"]["class_weights"] is None


@pytest.mark.parametrize("standardize, max_tokens", [("kim", None), ("kim", 40), ("kim_sst", 25), ("none", 30)])
def test_one_pass_vocabulary_is_keras_adapts_and_finds_the_longest_sentence(standardize, max_tokens):
    """The streaming pass (parallel standardise-split-count, then adapt's ranking) gives exactly the layer
    Keras' own adapt gives: the same tokens in the same order, ties and the max_tokens cut included,
    and the longest sentence in tokens."""
    from cnnapp.data.text.demo import demo_corpus
    from cnnapp.preprocessing.text import adapted_vectorizer, make_vectorizer, token_counts
    sentences = demo_corpus()[0][:300] + ["[UNK] appears as a word", "", "Ünïcödé wörds stay"]
    ours = adapted_vectorizer(sentences, max_tokens=max_tokens, sequence_length=None, min_length=3,
                              standardize=standardize)
    keras_adapt = make_vectorizer(sentences, max_tokens=max_tokens, sequence_length=3, standardize=standardize)
    assert ours.get_vocabulary() == keras_adapt.get_vocabulary()
    assert ours.get_config()["output_sequence_length"] == max(3, int(token_counts(sentences, standardize).max()))
