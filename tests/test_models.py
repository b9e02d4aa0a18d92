"""Contracts of every registered model, parametrised over the registry: a new family is tested the
moment its file exists. Tiny inputs, the factory's own defaults."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import png_bytes

IMAGE_SHAPE, TEXT_LENGTH, CLASSES = (16, 16, 1), 12, 3
SENTENCES = ["a good film", "a bad film", "great acting , great story", "dull and boring", "so so", "", "très bien"]


def registered():
    from cnnapp.models import registry
    return sorted(registry())


def tiny(name):
    """(model, Prepared, raw inputs) for a registered model on tiny data."""
    import keras
    from cnnapp.models import registry
    spec = registry()[name]
    keras.utils.set_random_seed(0)
    if spec.kind == "image":
        from cnnapp.preprocessing.image import ImageDecoder
        from cnnapp.tasks.images import image_prepared
        prepared = image_prepared(ImageDecoder(height=IMAGE_SHAPE[0], width=IMAGE_SHAPE[1], channels=IMAGE_SHAPE[2],
                                               name="image_decoder"), num_classes=CLASSES)
        rng = np.random.default_rng(0)
        raw = [png_bytes(rng.integers(0, 256, (h, w, 1))) for h, w in ((16, 16), (23, 9), (40, 40))]
    else:
        from cnnapp.preprocessing.text import make_vectorizer
        from cnnapp.tasks.sentences import text_prepared
        prepared = text_prepared(make_vectorizer(SENTENCES, max_tokens=50, sequence_length=TEXT_LENGTH),
                                 num_classes=CLASSES)
        raw = SENTENCES
    return spec.build(prepared.model_args), prepared, raw


@pytest.mark.parametrize("name", registered())
def test_builds_with_its_defaults_and_gives_probabilities(name):
    import tensorflow as tf
    model, prepared, raw = tiny(name)
    assert model.output_shape == (None, CLASSES)
    probs = np.asarray(model(prepared.preprocessor(tf.constant(raw)), training=False))
    assert probs.shape == (len(raw), CLASSES) and np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("name", registered())
def test_save_and_reload_give_the_same_outputs(name, tmp_path):
    import keras
    import tensorflow as tf
    model, prepared, raw = tiny(name)
    inputs = prepared.preprocessor(tf.constant(raw))
    model.save(str(tmp_path / "m.keras"))
    reloaded = keras.saving.load_model(str(tmp_path / "m.keras"), compile=False)
    np.testing.assert_allclose(np.asarray(reloaded(inputs, training=False)), np.asarray(model(inputs, training=False)),
                               atol=1e-6)


@pytest.mark.parametrize("name", registered())
@pytest.mark.slow   # make test-slow (CI runs it): make test stays near 8 minutes
def test_export_reloaded_in_a_fresh_process_answers_raw_inputs_like_the_model(name, tmp_path):
    import tensorflow as tf
    from cnnapp.models import registry
    from cnnapp.tasks import export_model
    from cnnapp.tasks.images import ImageTask
    from cnnapp.tasks.sentences import SentenceTask
    model, prepared, raw = tiny(name)
    expected = np.asarray(model(prepared.preprocessor(tf.constant(raw)), training=False))
    task = ImageTask() if registry()[name].kind == "image" else SentenceTask()
    export_dir = export_model(task, model, prepared, class_names=["a", "b", "c"], export_base=tmp_path, name="m")
    (tmp_path / "raw.json").write_text(json.dumps(
        [r.hex() for r in raw] if isinstance(raw[0], bytes) else raw))
    script = textwrap.dedent(f"""
        import json, tensorflow as tf
        raw = json.load(open({str(tmp_path / "raw.json")!r}))
        fn = tf.saved_model.load({str(export_dir)!r}).signatures["serving_default"]
        name = list(fn.structured_input_signature[1])[0]
        values = [bytes.fromhex(r) for r in raw] if name == "image_bytes" else raw
        print(json.dumps(fn(**{{name: tf.constant(values)}})["scores"].numpy().tolist()))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180,
                          env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    np.testing.assert_allclose(np.asarray(json.loads(proc.stdout.strip().splitlines()[-1])), expected, atol=1e-5)


@pytest.mark.parametrize("name", registered())
def test_inspect_finds_its_layers_by_role(name):
    from cnnapp.models import registry, roles
    model, _, _ = tiny(name)
    if roles.ngram_contribution(model) is not None:   # the n-gram family: no convolution; explain reads this layer
        assert roles.ngram_contribution(model).output.shape[-1] == CLASSES
        return
    assert roles.first_conv(model) is not None and roles.logits_layer(model).units == CLASSES
    if registry()[name].kind == "image":
        maps = roles.feature_map_layers(model)
        assert maps and all(len(layer.output.shape) == 4 for layer in maps)
    else:
        assert roles.text_branches(model)


def test_an_unknown_model_is_one_line_listing_the_valid_ones(tmp_path):
    from conftest import run_cli
    result = run_cli(["train-image", "--model", "nope", "--run-dir", tmp_path], expect_exit=1)
    assert result.output.startswith("Error: --model: unknown image model; choose from ")
    assert "image_cnn" in result.output and "text_cnn" not in result.output and "Received: nope" in result.output
    result = run_cli(["train-text", "--model", "image_cnn", "--run-dir", tmp_path], expect_exit=1)
    assert "unknown text model" in result.output


def test_an_option_the_model_does_not_take_is_one_line(tmp_path):
    from conftest import run_cli
    result = run_cli(["train-image", "--model-arg", "depth=3", "--run-dir", tmp_path], expect_exit=1)
    assert result.output.startswith("Error: --model-arg depth: model image_cnn takes no 'depth'") and "Received: depth=3" in result.output


def test_models_command_lists_every_registered_model():
    from conftest import run_cli
    out = run_cli(["models"]).output
    for name in registered():
        assert any(line.startswith(name + " ") for line in out.splitlines()), out
    doc = json.loads(run_cli(["models", "--json"]).output)
    assert {m["name"] for m in doc} == set(registered()) and {m["kind"] for m in doc} == {"image", "text"}


@pytest.mark.parametrize("name", registered())
def test_the_registry_read_from_source_agrees_with_the_factory(name):
    """`registry()` reads names, kinds and keyword defaults from the source, without importing Keras;
    the imported factory must say the same."""
    import inspect

    from cnnapp.models import DATA_ARGUMENTS, registry
    spec = registry()[name]
    assert spec.factory.registered_as == (name, spec.kind)
    params = inspect.signature(spec.factory).parameters
    expected = {n: p.default for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY
                and n not in DATA_ARGUMENTS[spec.kind] and n != "name"}
    assert spec.options() == expected
    assert spec.description


@pytest.mark.parametrize("name", registered())
def test_model_options_are_typed_from_the_signature(name):
    from cnnapp.errors import CnnappError
    from cnnapp.models import registry
    spec = registry()[name]
    for key, default in spec.options().items():
        if isinstance(default, bool) or default is None or isinstance(default, str):
            continue
        with pytest.raises(CnnappError, match=f"Received: {key}="):
            spec.check_options({key: "abc"})
        if isinstance(default, float):
            with pytest.raises(CnnappError, match="finite"):
                spec.check_options({key: float("nan")})
    assert spec.check_options({}) == {}
