"""The `explain` signature: the exported graph answers what the in-memory Keras model computes,
Grad-CAM points at the evidence, and `cnnapp inspect` reads the same signature."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import png_bytes, run_cli
from test_models import CLASSES, registered, tiny


def _export_image(tmp_path, model, class_names, size, channels=1, name="m"):
    from cnnapp.preprocessing.image import ImageDecoder
    from cnnapp.tasks import export_model
    from cnnapp.tasks.images import ImageTask, image_prepared
    prepared = image_prepared(ImageDecoder(height=size[0], width=size[1], channels=channels, name="image_decoder"),
                              num_classes=len(class_names))
    return export_model(ImageTask(), model, prepared, class_names=list(class_names), export_base=tmp_path,
                        name=name)


def _explain(export_dir):
    import tensorflow as tf
    loaded = tf.saved_model.load(str(export_dir))
    return loaded, loaded.signatures["explain"]


def test_exported_explain_returns_the_in_memory_models_activations(tmp_path):
    import keras
    import tensorflow as tf
    from cnnapp import layout
    from cnnapp.inspection import feature_maps
    from cnnapp.models.image_cnn import build_image_cnn
    from cnnapp.models.summary import summary_rows
    keras.utils.set_random_seed(3)
    model = build_image_cnn(input_shape=(12, 12, 1), num_classes=3, filters=(4, 6), dense_units=(8,))
    export_dir = _export_image(tmp_path, model, ["a", "b", "c"], (12, 12))
    loaded, explain = _explain(export_dir)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (12, 12, 1)).astype(np.uint8) for _ in range(3)]
    out = explain(image_bytes=tf.constant([png_bytes(p) for p in images]), class_index=tf.constant([-1, 0, 2]))
    meta = layout.read_metadata(export_dir)
    assert [m["layer"] for m in meta["explain"]["maps"]] == ["relu1", "relu2"]
    for i, pixels in enumerate(images):
        expected = feature_maps(model, pixels.astype("float32"))          # a Keras probe on the checkpoint
        for spec in meta["explain"]["maps"]:
            np.testing.assert_allclose(out[spec["output"]][i].numpy(), expected[spec["layer"]], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(out["pixels"][i].numpy(), pixels.astype("float32"))
    scores = np.asarray(model(np.stack(images).astype("float32"), training=False))
    np.testing.assert_allclose(out["scores"].numpy(), scores, rtol=1e-4, atol=1e-6)
    serving = loaded.signatures["serving_default"](image_bytes=tf.constant([png_bytes(p) for p in images]))
    np.testing.assert_allclose(out["scores"].numpy(), serving["scores"].numpy(), rtol=1e-5, atol=1e-7)
    assert out["class_index"].numpy().tolist() == [int(np.argmax(scores[0])), 0, 2]
    np.testing.assert_allclose(out["filters"][1].numpy(), np.asarray(model.get_layer("conv1").kernel))
    cam = out["gradcam"].numpy()
    assert cam.shape == (3, 12, 12) and cam.min() >= 0 and cam.max() <= 1 + 1e-6 and not np.isnan(cam).any()
    # the layer table `cnnapp summary` prints travels in the metadata, JSON-safe
    assert [r["name"] for r in meta["layers"]] == [r["name"] for r in summary_rows(model)]
    assert meta["layers"][2] == {"name": "conv1", "type": "Conv2D", "output_shape": [None, 12, 12, 4],
                                 "activations": 576, "params": 36, "macs": 5184}   # no bias before batch norm
    with pytest.raises(tf.errors.InvalidArgumentError, match="class_index"):
        explain(image_bytes=tf.constant([png_bytes(images[0])]), class_index=tf.constant([3]))


def test_exported_text_explain_matches_the_in_memory_pooling(tmp_path):
    import keras
    import tensorflow as tf
    from cnnapp import layout
    from cnnapp.models.text_cnn import build_text_cnn
    from cnnapp.preprocessing.text import make_vectorizer
    from cnnapp.tasks import export_model
    from cnnapp.tasks.sentences import SentenceTask, text_prepared
    keras.utils.set_random_seed(1)
    sentences = ["a good film", "a bad film", "great acting , great story", "dull and boring", "so so"]
    vectorizer = make_vectorizer(sentences, max_tokens=100, sequence_length=10)
    model = build_text_cnn(sequence_length=10, vocab_size=vectorizer.vocabulary_size(), num_classes=3,
                           region_sizes=(2, 3), feature_maps=5, embedding_dim=8)
    export_dir = export_model(SentenceTask(), model, text_prepared(vectorizer, num_classes=3),
                              class_names=["neg", "mid", "pos"], export_base=tmp_path, name="t")
    _, explain = _explain(export_dir)
    batch = ["great acting , dull story", "a film"]
    out = explain(sentences=tf.constant(batch))
    ids = vectorizer(tf.constant(batch))
    pooled = keras.Model(model.inputs, [model.get_layer("maxpool_w2").output, model.get_layer("maxpool_w3").output])
    expected = np.concatenate([np.asarray(p) for p in pooled(ids, training=False)], axis=1)
    np.testing.assert_allclose(out["activation"].numpy(), expected, rtol=1e-5, atol=1e-6)
    kernel = np.asarray(model.get_layer("logits").kernel)
    np.testing.assert_allclose(out["contribution"].numpy(), expected[:, :, None] * kernel[None], rtol=1e-5, atol=1e-6)
    assert out["ngram_width"].numpy()[0].tolist() == [2] * 5 + [3] * 5
    assert [t.decode() for t in out["tokens"].numpy()[1][:3]] == ["a", "film", ""]
    assert (out["token_ids"].numpy() == ids.numpy()).all()
    meta = layout.read_metadata(export_dir)["explain"]
    assert meta["edge_padding"] == 2 and [b["width"] for b in meta["branches"]] == [2, 3]
    # the window a filter reports really is the one where its activation peaks
    maps = keras.Model(model.inputs, model.get_layer("maxpool_w3").input)(ids, training=False).numpy()
    starts = out["ngram_start"].numpy()[:, 5:]
    assert (starts == maps.argmax(axis=1) - 2).all()


CORNERS = ["top-left", "top-right", "bottom-left", "bottom-right"]


def _patch_images(rng, n, *, size=16, patch=5, classes_by="corner"):
    """A bright patch in one corner over dim noise -> (images, labels, corner of each patch).

    classes_by="corner": the corner is the class. classes_by="pattern": the class is the patch's
    pattern (0 solid, 1 stripes) and its corner is random, so only the patch says which class.
    """
    x = rng.integers(0, 60, (n, size, size, 1)).astype(np.uint8)
    corners = rng.integers(0, 4, n)
    y = corners if classes_by == "corner" else rng.integers(0, 2, n)
    for img, corner, label in zip(x, corners, y):
        r = 0 if corner in (0, 1) else size - patch
        c = 0 if corner in (0, 2) else size - patch
        bright = rng.integers(200, 256, (patch, patch, 1))
        if classes_by == "pattern" and label == 1:
            bright[1::2] = 0                                  # horizontal stripes
        img[r:r + patch, c:c + patch] = bright
    return x, y, corners


def _peaks_in_corner(heatmaps, corners, size=16) -> int:
    hits = 0
    for cam, k in zip(heatmaps, corners):
        r, c = np.unravel_index(cam.argmax(), cam.shape)
        hits += bool(cam.max() > 0) and ((r < size // 2) == (k in (0, 1))) and ((c < size // 2) == (k in (0, 2)))
    return hits


def _train_and_explain(tmp_path, model, classes_by, class_names):
    import keras
    import tensorflow as tf
    x, y, _ = _patch_images(np.random.default_rng(7), 600, classes_by=classes_by)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(x.astype("float32"), y, epochs=6, batch_size=32, verbose=0)
    _, explain = _explain(_export_image(tmp_path, model, class_names, (16, 16)))
    x_test, y_test, corners = _patch_images(np.random.default_rng(99), 24, classes_by=classes_by)
    out = explain(image_bytes=tf.constant([png_bytes(p) for p in x_test]), class_index=tf.constant([-1] * 24))
    assert (out["scores"].numpy().argmax(axis=1) == y_test).mean() >= 0.9
    return out, corners


def test_gradcam_peaks_in_the_corner_that_holds_the_evidence(tmp_path):
    """A global-average-pooled head (the vgg family): the patch's pattern is the class, its corner is
    random, and Grad-CAM for the predicted class peaks in the patch's corner."""
    import keras
    from cnnapp.models.vgg import build_vgg
    keras.utils.set_random_seed(7)
    model = build_vgg(input_shape=(16, 16, 1), num_classes=2, filters=(8, 16), convs_per_block=1, dropout=0.0)
    out, corners = _train_and_explain(tmp_path, model, "pattern", ["solid", "stripes"])
    hits = _peaks_in_corner(out["gradcam"].numpy(), corners)
    assert hits >= 0.9 * len(corners), f"Grad-CAM peaked in the patch's corner for {hits}/{len(corners)} images"


def test_hirescam_peaks_in_the_corner_that_sets_the_class_with_a_flatten_head(tmp_path):
    """image_cnn (Flatten -> Dense): the corner is the class. Its logit weighs each position on its
    own, so Grad-CAM's spatially averaged gradient cancels out (seen: 13 of 24 here, most heatmaps
    all zero), while HiResCAM, the gradient times the activation, peaks in the class's corner."""
    import keras
    from cnnapp.models.image_cnn import build_image_cnn
    keras.utils.set_random_seed(7)
    model = build_image_cnn(input_shape=(16, 16, 1), num_classes=4, filters=(8, 16), dense_units=(16,),
                            batch_norm=False, dropout=0.0)
    out, corners = _train_and_explain(tmp_path, model, "corner", CORNERS)
    hits = _peaks_in_corner(out["hirescam"].numpy(), corners)
    assert hits >= 0.9 * len(corners), f"HiResCAM peaked in the class's corner for {hits}/{len(corners)} images"


def test_inspect_reads_an_exports_explain_signature(model_base, tmp_path):
    from cnnapp.explain import encode_png
    pixels = np.zeros((8, 8, 1), np.uint8)
    pixels[2:6, 2:6] = 255
    image = tmp_path / "square.png"
    image.write_bytes(encode_png(pixels[..., 0]))        # cnnapp's own PNG writer, read by TensorFlow
    doc = json.loads(run_cli(["inspect", model_base / "tiny_image", image, "--json", "--out", tmp_path / "out",
                              "--class", "two"]).output)
    res = doc[str(image)]
    assert set(res["layers"]) == {"relu1", "relu2"} and res["gradcam"]["class"] == "two"
    assert res["predicted"] in ("zero", "one", "two")
    for path in [res["filters_plot"], res["gradcam"]["plot"], *(layer["plot"] for layer in res["layers"].values())]:
        assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    result = run_cli(["inspect", model_base / "tiny_image", image, "--class", "seven"], expect_exit=1)
    assert "--class: not a class of this model" in result.output and "'seven'" in result.output
    [text] = json.loads(run_cli(["inspect", model_base / "tiny_text" / "1", "a good film", "--json"]).output)
    assert text["tokens"] == ["a", "good", "film"] and text["predicted"] in ("negative", "positive")
    assert len(text["token_scores"]) == 3


@pytest.mark.parametrize("name, options", [*((n, {}) for n in registered()),
                                           ("text_cnn", {"embedding_mode": "multichannel"})])
def test_every_registered_model_explains(name, options):
    """The explain function of every registered family (and Kim's multichannel mode), run in memory."""
    import keras
    import tensorflow as tf
    from cnnapp.models import registry
    from cnnapp.tasks.images import ImageTask
    from cnnapp.tasks.sentences import SentenceTask
    model, prepared, raw = tiny(name)
    if options:
        keras.utils.set_random_seed(0)
        vocab = prepared.model_args["vocab_size"]
        matrix = np.random.default_rng(0).uniform(-1, 1, (vocab, 8)).astype("float32")
        model = registry()[name].build({**prepared.model_args, "embedding_matrix": matrix},
                                       {**options, "embedding_dim": 8, "feature_maps": 4})
    task = ImageTask() if registry()[name].kind == "image" else SentenceTask()
    explainer = task.endpoints(prepared, model, [f"c{i}" for i in range(CLASSES)])["explain"]
    raw = tf.constant(raw)
    expected = np.asarray(model(prepared.preprocessor(raw), training=False))
    if task.kind == "image":
        out = explainer.fn(raw, tf.fill([len(raw)], -1))
        for spec in explainer.metadata["maps"]:
            assert list(out[spec["output"]].shape[1:]) == spec["shape"]
        for key in ("gradcam", "hirescam"):
            cam = out[key].numpy()
            assert cam.shape == (len(raw), 16, 16) and np.isfinite(cam).all() and 0 <= cam.min() <= cam.max() <= 1
    else:
        out = explainer.fn(raw)
        length = out["token_ids"].shape[1]
        if explainer.metadata.get("family") == "ngrams":   # one contribution per n-gram position
            assert out["contribution"].shape == (len(raw), length, CLASSES)
            assert (out["ngram_width"].numpy() >= 1).all() and (out["ngram_width"].numpy() <= explainer.metadata["ngrams"]).all()
            lead = 0
        else:
            features = sum(b["filters"] for b in explainer.metadata["branches"])
            assert out["contribution"].shape == (len(raw), features, CLASSES)
            lead = explainer.metadata["edge_padding"]
        assert (out["ngram_start"].numpy() >= -lead).all() and (out["ngram_start"].numpy() < length).all()
    np.testing.assert_allclose(out["scores"].numpy(), expected, rtol=1e-4, atol=1e-6)


def test_explain_scores_follow_the_exports_test_time_augmentation(tmp_path):
    """With --tta flip the export averages the image and its mirror: explain's scores and top class
    are serving_default's, while its maps and heatmaps are the image's own."""
    import keras
    import tensorflow as tf
    from cnnapp.inspection import feature_maps
    from cnnapp.models.image_cnn import build_image_cnn
    from cnnapp.preprocessing.image import ImageDecoder
    from cnnapp.tasks import export_model
    from cnnapp.tasks.images import ImageTask, image_prepared
    keras.utils.set_random_seed(5)
    model = build_image_cnn(input_shape=(8, 8, 1), num_classes=3, filters=(4, 8), dense_units=(8,))
    prepared = image_prepared(ImageDecoder(height=8, width=8, channels=1, name="image_decoder"), num_classes=3)
    export_dir = export_model(ImageTask(), model, prepared, class_names=["a", "b", "c"], export_base=tmp_path,
                              name="tta", tta="flip")
    loaded, explain = _explain(export_dir)
    pixels = np.random.default_rng(1).integers(0, 256, (8, 8, 1)).astype(np.uint8)
    images = tf.constant([png_bytes(pixels)])
    out = explain(image_bytes=images, class_index=tf.constant([-1]))
    served = loaded.signatures["serving_default"](image_bytes=images)["scores"].numpy()
    np.testing.assert_allclose(out["scores"].numpy(), served, rtol=1e-5, atol=1e-7)
    assert int(out["class_index"][0]) == int(served[0].argmax())
    np.testing.assert_allclose(out["maps_1"][0].numpy(), feature_maps(model, pixels.astype("float32"))["relu1"],
                               rtol=1e-4, atol=1e-5)
