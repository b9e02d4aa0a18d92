"""See what a trained CNN learned: first-layer filters and feature maps for images, and the n-grams
that won each branch's max-over-time pooling for sentences.

Works on a run directory (`runs/<name>/`): its `best.keras` checkpoint, which is the model the
export holds, plus `vocabulary.txt` for text runs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import keras
import numpy as np

from cnnapp.errors import CnnappError


def load_run(run_dir: str | Path) -> tuple[keras.Model, dict]:
    run_dir = Path(run_dir)
    path = run_dir / "best.keras"
    if not path.is_file():
        raise CnnappError(f"RUN_DIR: no best.keras checkpoint (is this a runs/<name> folder?). Received: {run_dir}")
    config_path = run_dir / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    members = config.get("resolved", {}).get("members")
    if members:  # filters and n-grams belong to one network, not to an average of several
        raise CnnappError(f"RUN_DIR: {run_dir} is an ensemble of {len(members)} models; inspect one of them, "
                          f"{members[0]} ... {members[-1]}. Received: {run_dir}")
    import cnnapp.models  # noqa: F401  registers cnnapp's own layers (ZeroPaddingTokens), which the checkpoint names
    return keras.saving.load_model(str(path), compile=False), config


def kind_of(model: keras.Model) -> str:
    return "text" if model.inputs[0].dtype in ("int32", "int64") else "image"


# ---------------------------------------------------------------------------- images

def conv_layers(model: keras.Model) -> list[keras.layers.Layer]:
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]


def feature_maps(model: keras.Model, pixels: np.ndarray) -> dict[str, np.ndarray]:
    """Activations after each conv block's ReLU (or the conv itself when there is none), for one image."""
    names = [layer.name for layer in model.layers if layer.name.startswith("relu")] or \
            [layer.name for layer in conv_layers(model)]
    probe = keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    outs = probe([pixels[np.newaxis].astype("float32")], training=False)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    return {n: np.asarray(o)[0] for n, o in zip(names, outs)}


def _grid(images: list[np.ndarray], path: Path, title: str, cmap="viridis", labels=None) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cols = min(8, len(images))
    rows = math.ceil(len(images) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.3, rows * 1.3 + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (i, img) in zip(axes.flat, enumerate(images)):
        ax.imshow(img, cmap=None if img.ndim == 3 else cmap)
        ax.set_title(str(labels[i] if labels is not None else i), fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_first_filters(model: keras.Model, path: Path) -> int:
    """The first conv layer's kernels, one tile per filter (RGB when the input has 3 channels)."""
    layer = conv_layers(model)[0]
    kernel = np.asarray(layer.kernel)                     # [kh, kw, in, out]
    tiles = []
    for f in range(kernel.shape[-1]):
        k = kernel[..., f]
        k = (k - k.min()) / (np.ptp(k) or 1.0)
        tiles.append(k if k.shape[-1] == 3 else k[..., 0])
    _grid(tiles, path, f"{layer.name}: {kernel.shape[-1]} filters of {kernel.shape[0]}x{kernel.shape[1]}", "gray")
    return kernel.shape[-1]


def inspect_image(model: keras.Model, image_bytes: bytes, out_dir: Path, *, stem: str, max_maps: int = 32) -> dict:
    """Write the filters and this image's feature maps as PNGs; return a summary per layer."""
    from cnnapp.preprocessing.image import ImageDecoder
    import tensorflow as tf
    h, w, c = model.input_shape[1:]
    decoder = ImageDecoder(height=h, width=w, channels=c)
    pixels = decoder(tf.constant([image_bytes])).numpy()[0]
    probs = np.asarray(model(pixels[np.newaxis], training=False))[0]
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_first_filters(model, out_dir / "filters.png")
    layers = {}
    for name, maps in feature_maps(model, pixels).items():
        strongest = np.argsort(maps.max(axis=(0, 1)))[::-1][:max_maps]
        path = out_dir / f"{stem}_{name}.png"
        _grid([maps[..., i] for i in strongest], path,
              f"{name}: {maps.shape[0]}x{maps.shape[1]}, the {len(strongest)} most active of {maps.shape[-1]} maps",
              labels=[int(i) for i in strongest])
        layers[name] = {"shape": list(maps.shape), "active_fraction": round(float((maps > 0).mean()), 3),
                        "strongest_maps": strongest[:5].tolist(), "plot": str(path)}
    return {"probabilities": probs.tolist(), "layers": layers, "filters_plot": str(out_dir / "filters.png")}


# ---------------------------------------------------------------------------- sentences

def ngram_evidence(model: keras.Model, token_ids: np.ndarray, tokens: list[str], *, top: int = 5) -> dict:
    """For one sentence: the predicted class, and the n-grams whose filters added most to its logit.

    Each filter's max-over-time value comes from one window of the sentence; its contribution to
    the predicted class is that value times the filter's weight in the softmax layer.
    """
    widths = sorted(int(layer.name[len("maxpool_w"):]) for layer in model.layers
                    if layer.name.startswith("maxpool_w"))
    if not widths:
        raise CnnappError(f"RUN_DIR: not a cnnapp sentence CNN (no maxpool_w* layers). Received: {model.name}")
    # The widths in concatenation order are the order the branches were built in.
    order = [int(layer.name[len("maxpool_w"):]) for layer in model.layers if layer.name.startswith("maxpool_w")]
    pre_pool = [model.get_layer(f"maxpool_w{w}").input for w in order]
    probe = keras.Model(model.inputs, pre_pool + [model.output])
    outs = probe([token_ids[np.newaxis]], training=False)
    maps, probs = [np.asarray(o)[0] for o in outs[:-1]], np.asarray(outs[-1])[0]
    predicted = int(np.argmax(probs))
    kernel = np.asarray(model.get_layer("logits").kernel)[:, predicted]
    # Windows are counted on the edge-padded sequence: window p covers tokens p - lead ... .
    lead = (model.get_layer("edge_padding").padding[0]
            if any(layer.name == "edge_padding" for layer in model.layers) else 0)
    found, offset = [], 0
    for width, m in zip(order, maps):
        positions, values = m.argmax(axis=0), m.max(axis=0)
        for f, (pos, value) in enumerate(zip(positions, values)):
            contribution = float(value * kernel[offset + f])
            start = int(pos) - lead
            # padding dropped: only the window's real tokens are shown
            words = [tokens[i] for i in range(max(start, 0), min(start + width, len(tokens)))]
            found.append({"ngram": " ".join(words), "width": width, "filter": f, "start": start,
                          "activation": round(float(value), 4), "contribution": round(contribution, 4),
                          "padding_only": not words})
        offset += m.shape[-1]
    best: dict[str, dict] = {}
    for item in sorted(found, key=lambda d: -d["contribution"]):
        if item["contribution"] <= 0 or item["padding_only"]:
            continue
        key = item["ngram"]
        if key in best:
            best[key]["contribution"] = round(best[key]["contribution"] + item["contribution"], 4)
            best[key]["filters"] += 1
        else:
            best[key] = {**item, "filters": 1}
    ranked = sorted(best.values(), key=lambda d: -d["contribution"])[:top]
    return {"predicted_index": predicted, "probabilities": probs.tolist(), "ngrams": ranked}


def inspect_sentences(model: keras.Model, config: dict, run_dir: Path, sentences: list[str], *, top: int = 5):
    """N-gram evidence for each sentence, tokenised exactly as in training (same vocabulary and rules)."""
    from cnnapp.preprocessing.text import make_vectorizer
    vocab_path = Path(run_dir) / "vocabulary.txt"
    if not vocab_path.is_file():
        raise CnnappError(f"RUN_DIR: no vocabulary.txt (a text run writes one). Received: {run_dir}")
    vocabulary = vocab_path.read_text(encoding="utf-8").split("\n")
    sequence_length = int(model.input_shape[1])
    vectorizer = make_vectorizer(None, max_tokens=None, sequence_length=sequence_length,
                                 standardize=config.get("standardize", "kim"), vocabulary=vocabulary[2:])
    vocab = vectorizer.get_vocabulary()
    class_names = config.get("resolved", {}).get("class_names")
    results = []
    for sentence in sentences:
        ids = np.asarray(vectorizer([sentence]))[0]
        length = int(np.count_nonzero(ids))
        tokens = [vocab[i] for i in ids[:length]]
        ev = ngram_evidence(model, ids, tokens, top=top)
        ev["predicted"] = class_names[ev["predicted_index"]] if class_names else str(ev["predicted_index"])
        results.append({"sentence": sentence, "tokens": tokens, **ev})
    return results
