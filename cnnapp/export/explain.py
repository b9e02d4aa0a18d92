"""The `explain` signature: what a model computed for an input, as named tensors, inside the graph.

Exported beside `serving_default` on the same raw input, so TF Serving serves it unchanged, and
called in memory by `cnnapp inspect` on a run's checkpoint (the very same function), so the CLI,
the `:explain` route and the page cannot disagree.

Images, inputs `image_bytes` string [N] and `class_index` int32 [N] (-1: the top class; a
signature cannot have optional inputs):
    scores [N, C], classes [N, C]         as serving_default
    class_index int32 [N]                 the class Grad-CAM explains (the top one for -1)
    gradcam float32 [N, H, W]             Grad-CAM (Selvaraju et al. 2017) on the last conv block,
                                          at the input size, 0..1 (1 at each image's peak)
    hirescam float32 [N, H, W]            HiResCAM (Draelos & Carin 2020): gradient x activation
                                          summed over channels; same scale and size
    pixels float32 [N, H, W, ch]          the decoded, resized input the model saw (0..255)
    maps_1 ... maps_K float32 [N, h, w, c]  each conv block's activations after its ReLU
    filters float32 [N, kh, kw, in, out]  the first convolution's kernels (repeated per example,
                                          so TF Serving's row format can answer it)

Sentences, input `sentences` string [N]:
    scores, classes                       as serving_default
    token_ids int64 [N, L], tokens string [N, L]   the vectorised sentence and its words ('' = padding)
    ngram_width int32 [N, F]              the region size of each filter (F: all branches' filters)
    ngram_start int32 [N, F]              the first token of the window that won max-over-time
                                          pooling (may be negative or run past the sentence: edge padding)
    activation float32 [N, F]             that window's activation (the pooled feature)
    contribution float32 [N, F, C]        activation x the filter's weight in the logits layer

The n-gram family (cnnapp.models.nbsvm) answers the same outputs, F being the sentence's n-grams
(the vectorizer's positions: its unigrams, then its bigrams, ...): `tokens` are its words, each
n-gram has its width and first word, `activation` is 1 where it counts (its first occurrence, known
in training) and `contribution` is what it adds to each class's logit (NB ratio x learned weight).

`explain_metadata` says which layer each output comes from (the metadata file keeps it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import keras
import tensorflow as tf

from cnnapp.models import roles

SIGNATURE = "explain"


@dataclass(frozen=True)
class Explainer:
    """A signature with its own inputs and outputs: `fn(*inputs) -> {name: tensor}`."""

    input_signature: list
    fn: Callable
    metadata: dict


def _has_nested_models(model: keras.Model) -> bool:
    return any(isinstance(layer, keras.Model) for layer in model.layers)


def explainable(model: keras.Model) -> str | None:
    """None when `model` can be explained, else why not (an ensemble averages several networks)."""
    if _has_nested_models(model):
        return "an ensemble: feature maps, filters and n-grams belong to one network, not to an average"
    return None


def image_explainer(model: keras.Model, decoder: Callable, class_names, tta: Callable | None = None) -> Explainer:
    """The explain function of an image model; `decoder` maps image bytes [N] to pixels [N, H, W, ch].

    With test-time augmentation (`tta(pixels) -> [views]`, the first the image itself) `scores`
    and the top class are the views' average, as serving_default answers; the maps and heatmaps
    are those of the image itself.
    """
    map_layers = roles.feature_map_layers(model)
    if not map_layers:
        raise ValueError(f"model {model.name} has no conv block activation maps to explain")
    logits = roles.logits_layer(model)
    conv = roles.first_conv(model)
    probe = keras.Model(model.inputs, [layer.output for layer in map_layers] + [logits.output, model.outputs[0]],
                        name=f"{model.name}_explain")
    num_classes = len(class_names)
    names = tf.constant([str(c) for c in class_names])
    height, width = int(model.inputs[0].shape[1]), int(model.inputs[0].shape[2])

    def explain(image_bytes, class_index):
        pixels = tf.cast(decoder(image_bytes), tf.float32)
        checks = [tf.debugging.assert_less(class_index, num_classes,
                                           message=f"class_index must be -1 (the top class) or below {num_classes}"),
                  tf.debugging.assert_greater_equal(class_index, -1,
                                                    message=f"class_index must be -1 (the top class) or below {num_classes}")]
        with tf.control_dependencies(checks):   # else the gather below may fail first, with its own message
            class_index = tf.identity(class_index)
        with tf.GradientTape() as tape:
            *maps, logit_values, scores = probe(pixels, training=False)
            last = maps[-1]
            tape.watch(last)
            if tta is not None:     # the other views' scores: no gradient needed through them
                views = tta(pixels)[1:]
                scores = (tf.cast(scores, tf.float32) + tf.add_n(
                    [tf.stop_gradient(tf.cast(model(v, training=False), tf.float32)) for v in views])) / (1 + len(views))
            top = tf.argmax(scores, axis=-1, output_type=tf.int32)
            chosen = tf.where(class_index >= 0, class_index, top)
            # Selvaraju et al. use the score before the softmax: the logit of the class.
            target = tf.gather(tf.cast(logit_values, tf.float32), chosen, batch_dims=1)
        grads = tf.cast(tape.gradient(target, last), tf.float32)        # [N, h, w, c]
        scores = tf.cast(scores, tf.float32)
        last = tf.cast(last, tf.float32)
        weights = tf.reduce_mean(grads, axis=[1, 2])                     # alpha_c: global average of the gradient
        cam = _heatmap(tf.einsum("nhwc,nc->nhw", last, weights), height, width)
        # HiResCAM: the gradient times the activation at each position, summed over channels. With a
        # global-average-pooled head it is Grad-CAM up to scale; with Flatten -> Dense (image_cnn),
        # where each position has its own weights, the averaged gradient cancels out and only this
        # one still shows where the logit came from.
        hires = _heatmap(tf.reduce_sum(grads * last, axis=-1), height, width)
        n = tf.shape(scores)[0]
        kernel = tf.cast(conv.kernel, tf.float32)
        out = {
            "scores": tf.cast(scores, tf.float32),
            "classes": tf.tile(names[tf.newaxis, :], [n, 1]),
            "class_index": chosen,
            "gradcam": cam,
            "hirescam": hires,
            "pixels": pixels,
            "filters": tf.tile(kernel[tf.newaxis], [n, 1, 1, 1, 1]),
        }
        for i, m in enumerate(maps, start=1):
            out[f"maps_{i}"] = tf.cast(m, tf.float32)
        return out

    metadata = {"signature": SIGNATURE, "inputs": ["image_bytes", "class_index"],
                "maps": [{"output": f"maps_{i}", "layer": layer.name,
                          "shape": [int(d) for d in layer.output.shape[1:]]}
                         for i, layer in enumerate(map_layers, start=1)],
                "filters_layer": conv.name, "gradcam_layer": map_layers[-1].name, "logits_layer": logits.name}
    return Explainer([tf.TensorSpec([None], tf.string, name="image_bytes"),
                      tf.TensorSpec([None], tf.int32, name="class_index")], explain, metadata)


def _heatmap(cam, height: int, width: int):
    """ReLU, upsample [N, h, w] to the input size, scale each example's peak to 1 (all 0 when nothing is positive)."""
    cam = tf.image.resize(tf.nn.relu(cam)[..., tf.newaxis], (height, width), method="bilinear")[..., 0]
    return tf.math.divide_no_nan(cam, tf.reduce_max(cam, axis=[1, 2], keepdims=True))


def text_explainer(model: keras.Model, vectorizer, class_names) -> Explainer:
    """The explain function of a sentence CNN (or of the n-gram family: `ngram_explainer`); `vectorizer` is
    its adapted TextVectorization layer."""
    if roles.ngram_contribution(model) is not None:
        return ngram_explainer(model, vectorizer, class_names)
    branches = roles.text_branches(model)
    if not branches:
        raise ValueError(f"model {model.name} has no max-over-time pooling to explain")
    logits = roles.logits_layer(model)
    counts = [int(pool.input.shape[-1]) for _, pool in branches]
    if int(logits.kernel.shape[0]) != sum(counts):
        raise ValueError(f"model {model.name}: the logits layer takes {logits.kernel.shape[0]} features, "
                         f"not the {sum(counts)} pooled filters")
    probe = keras.Model(model.inputs, [pool.input for _, pool in branches] + [model.outputs[0]],
                        name=f"{model.name}_explain")
    lead = roles.edge_padding(model)
    names = tf.constant([str(c) for c in class_names])
    vocabulary = tf.constant([str(t) for t in vectorizer.get_vocabulary()])

    def explain(sentences):
        token_ids = tf.cast(vectorizer(sentences), tf.int64)
        *maps, scores = probe(token_ids, training=False)
        starts, widths, activations = [], [], []
        for (width, _), m in zip(branches, maps):
            m = tf.cast(m, tf.float32)                                   # [N, T, F]
            # Window p of the edge-padded sequence starts at token p - lead.
            starts.append(tf.argmax(m, axis=1, output_type=tf.int32) - lead)
            activations.append(tf.reduce_max(m, axis=1))
            widths.append(tf.fill(tf.shape(starts[-1]), tf.constant(width, tf.int32)))
        activation = tf.concat(activations, axis=1)                      # [N, F]
        kernel = tf.cast(logits.kernel, tf.float32)                      # [F, C]
        n = tf.shape(scores)[0]
        return {
            "scores": tf.cast(scores, tf.float32),
            "classes": tf.tile(names[tf.newaxis, :], [n, 1]),
            "token_ids": token_ids,
            "tokens": tf.gather(vocabulary, token_ids),
            "ngram_width": tf.concat(widths, axis=1),
            "ngram_start": tf.concat(starts, axis=1),
            "activation": activation,
            "contribution": activation[:, :, tf.newaxis] * kernel[tf.newaxis],
        }

    metadata = {"signature": SIGNATURE, "inputs": ["sentences"], "edge_padding": lead, "logits_layer": logits.name,
                "branches": [{"width": w, "layer": pool.name, "filters": c} for (w, pool), c in zip(branches, counts)]}
    return Explainer([tf.TensorSpec([None], tf.string, name="sentences")], explain, metadata)


def ngram_explainer(model: keras.Model, vectorizer, class_names) -> Explainer:
    """The explain function of the n-gram family: each position of the vectorised sentence is one n-gram
    (all unigrams first, then all bigrams, ...), with its contribution to every class's logit."""
    layer = roles.ngram_contribution(model)
    probe = keras.Model(model.inputs, [layer.output, model.outputs[0]], name=f"{model.name}_explain")
    widest = vectorizer.get_config().get("ngrams") or 1
    widest = max(widest) if isinstance(widest, (tuple, list)) else int(widest)
    names = tf.constant([str(c) for c in class_names])
    vocabulary = tf.constant([str(t) for t in vectorizer.get_vocabulary()])

    def explain(sentences):
        ngram_ids = tf.cast(vectorizer(sentences), tf.int64)                       # [N, L]
        contribution, scores = probe(ngram_ids, training=False)
        contribution = tf.cast(contribution, tf.float32)                           # [N, L, C]
        # A sentence of n words has k n - k (k - 1) / 2 n-grams of widths 1..k (n >= k; the formula below
        # also holds for shorter ones), so n follows from the count (exact unless the sentence was cut).
        count = tf.math.count_nonzero(ngram_ids, axis=1, keepdims=True, dtype=tf.int32)
        words = (count + widest * (widest - 1) // 2) // widest                    # [N, 1]
        position = tf.range(tf.shape(ngram_ids)[1], dtype=tf.int32)[tf.newaxis]   # [1, L]
        width, start, offset = tf.ones_like(ngram_ids, tf.int32), position + 0 * words, tf.zeros_like(words)
        for w in range(1, widest + 1):       # the block of width-w n-grams follows those of width w - 1
            size = tf.maximum(words - w + 1, 0)
            inside = (position >= offset) & (position < offset + size)
            width, start = tf.where(inside, w, width), tf.where(inside, position - offset, start)
            offset += size
        is_word = position < words
        token_ids = tf.where(is_word, ngram_ids, tf.zeros_like(ngram_ids))
        n = tf.shape(scores)[0]
        return {
            "scores": tf.cast(scores, tf.float32),
            "classes": tf.tile(names[tf.newaxis, :], [n, 1]),
            "token_ids": token_ids,
            "tokens": tf.where(is_word, tf.gather(vocabulary, ngram_ids), ""),
            "ngram_width": width,
            "ngram_start": start,
            "activation": tf.cast(tf.reduce_any(tf.not_equal(contribution, 0.0), axis=-1), tf.float32),
            "contribution": contribution,
        }

    metadata = {"signature": SIGNATURE, "inputs": ["sentences"], "family": "ngrams", "ngrams": widest,
                "contribution_layer": layer.name}
    return Explainer([tf.TensorSpec([None], tf.string, name="sentences")], explain, metadata)
