"""The n-gram family (cnnapp.models.nbsvm): NB ratios from the training part only, training through the run
path, the export on raw strings (same probabilities as in memory), and an explanation naming n-grams."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from conftest import run_cli

TRAIN = ["good film", "good good fun", "bad film", "bad plot", "a fine plot"]
TRAIN_Y = [1, 1, 0, 0, 1]
VAL = ["good plot", "good plot", "bad fun"]          # n-grams the training part does not hold, or holds otherwise
VAL_Y = [0, 0, 1]
TEST = ["bad fun film", "good plot twist"]
TEST_Y = [1, 0]


def nbsvm_options() -> dict:
    from cnnapp.models import registry
    return registry()["nbsvm"].options()


def test_nb_ratios_are_counted_on_the_training_part_only():
    from cnnapp.data import make_splits
    from cnnapp.tasks.sentences import SentenceTask
    splits = make_splits(np.array(TRAIN, dtype=object), np.array(TRAIN_Y), ["neg", "pos"],
                         x_val=np.array(VAL, dtype=object), y_val=np.array(VAL_Y),
                         x_test=np.array(TEST, dtype=object), y_test=np.array(TEST_Y), seed=0)
    prepared = SentenceTask(standardize="lower").prepare(None, splits, model_options=nbsvm_options(), seed=0)
    vocabulary = prepared.preprocessor.get_vocabulary()
    ratios = prepared.model_args["embedding_matrix"]
    assert ratios.shape == (len(vocabulary), 2)
    # n-grams met only outside the training part are not features at all
    assert "good plot" not in vocabulary and "bad fun" not in vocabulary and "twist" not in vocabulary
    assert {"good", "good film", "good good", "a fine"} <= set(vocabulary)

    # Wang & Manning's r by hand, from the training sentences' sets of n-grams (alpha 1): the validation
    # part's three "plot" / "good" sentences of the other class would change every one of these numbers.
    sets = [set(s.split()) | {" ".join(p) for p in zip(s.split(), s.split()[1:])} for s in TRAIN]
    features = [v for v in vocabulary[2:]]
    pos = np.array([1 + sum(f in s for s, y in zip(sets, TRAIN_Y) if y == 1) for f in features], float)
    neg = np.array([1 + sum(f in s for s, y in zip(sets, TRAIN_Y) if y == 0) for f in features], float)
    expected = np.log(pos / pos.sum()) - np.log(neg / neg.sum())
    np.testing.assert_allclose(ratios[2:, 1], expected, atol=1e-5)
    np.testing.assert_allclose(ratios[2:, 0], -expected, atol=1e-5)     # one-vs-rest of two classes
    assert (ratios[:2] == 0).all()                                      # padding and unknown weigh nothing
    plot = vocabulary.index("plot")
    assert math.isclose(float(ratios[plot, 1]), float(expected[plot - 2]), abs_tol=1e-6)   # 1 pos, 1 neg: log of |neg|/|pos|


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from cnnapp.config import ModelChoice, TrainConfig
    from cnnapp.data.text import TextRequest
    from cnnapp.tasks.sentences import SentenceTask
    from cnnapp.training.run import run
    tmp = tmp_path_factory.mktemp("nbsvm")
    outcome = run(SentenceTask(TextRequest()), model=ModelChoice("nbsvm"),
                  train=TrainConfig(name="nb", epochs=2, batch_size=32, run_dir=str(tmp / "runs"),
                                    export_base=str(tmp / "models"), verbose=0))
    return outcome


SENTENCES = ["the film is dull and lifeless", "this movie is a joy to watch !", "great", "", "très bien ☺"]


def test_trains_through_the_run_path_on_bigrams(trained):
    assert trained.result.metrics["test"]["accuracy"] >= 0.95       # templated demo phrases: NB separates them
    config = json.loads((trained.result.run_dir / "config.json").read_text())
    assert config["model"]["name"] == "nbsvm" and config["preprocessing"]["ngrams"] == 2
    assert any(" " in t for t in trained.prepared.preprocessor.get_vocabulary())   # bigrams are features
    meta = json.loads((trained.export_dir / "assets.extra" / "cnnapp.json").read_text())
    assert meta["model"] == "nbsvm" and meta["explain"]["family"] == "ngrams"


def test_the_export_on_raw_strings_predicts_as_the_model_in_memory(trained):
    import tensorflow as tf
    in_memory = trained.result.model(trained.prepared.preprocessor(tf.constant(SENTENCES)), training=False).numpy()
    result = run_cli(["predict", trained.export_dir, *SENTENCES, "--json"])
    predictions = json.loads(result.output)["predictions"]
    assert [p["top"][0]["class"] for p in predictions] == [["negative", "positive"][i] for i in in_memory.argmax(axis=1)]
    np.testing.assert_allclose([p["top"][0]["probability"] for p in predictions], in_memory.max(axis=1), atol=1e-5)
    served = tf.saved_model.load(str(trained.export_dir)).signatures["serving_default"]
    np.testing.assert_allclose(served(sentences=tf.constant(SENTENCES))["scores"].numpy(), in_memory, atol=1e-5)


def test_explain_names_the_ngrams_that_weighed_most(trained):
    import tensorflow as tf
    from cnnapp.explain import text_explanation
    explain = tf.saved_model.load(str(trained.export_dir)).signatures["explain"]
    outputs = {k: v.numpy() for k, v in explain(sentences=tf.constant(SENTENCES)).items()}
    meta = json.loads((trained.export_dir / "assets.extra" / "cnnapp.json").read_text())["explain"]
    first = text_explanation(outputs, 0, meta, top=5)
    assert first["predicted"] == "negative" and first["tokens"] == SENTENCES[0].split()
    words = SENTENCES[0].split()
    ngrams_of = {" ".join(words[i:i + w]) for w in (1, 2) for i in range(len(words) - w + 1)}
    assert first["ngrams"] and all(g["ngram"] in ngrams_of for g in first["ngrams"])
    assert {"dull", "lifeless", "dull and", "and lifeless"} & {g["ngram"] for g in first["ngrams"]}
    contributions = [g["contribution"] for g in first["ngrams"]]
    assert contributions == sorted(contributions, reverse=True) and contributions[0] > 0
    # The contributions are the model's logits: their sum plus the bias gives the served probabilities.
    bias = trained.result.model.get_layer("logits").bias.numpy()
    logits = outputs["contribution"].sum(axis=1) + bias
    np.testing.assert_allclose(tf.nn.softmax(logits).numpy(), outputs["scores"], atol=1e-5)
    # the empty sentence and unknown words have no n-gram to name
    assert text_explanation(outputs, 3, meta)["ngrams"] == [] and text_explanation(outputs, 4, meta)["ngrams"] == []


def test_the_run_checkpoint_explains_as_the_export(trained):
    from cnnapp.inspection import inspect_sentences, open_explainer
    from_run = inspect_sentences(open_explainer(trained.result.run_dir), SENTENCES[:2])
    from_export = inspect_sentences(open_explainer(trained.export_dir), SENTENCES[:2])
    assert [r["ngrams"][0]["ngram"] for r in from_run] == [r["ngrams"][0]["ngram"] for r in from_export]
    assert from_run[1]["predicted"] == "positive"
