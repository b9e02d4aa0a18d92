"""See what a trained CNN learned: first-layer filters and feature maps for images, and the n-grams
that won each branch's max-over-time pooling for sentences.

Works on a run directory (`runs/<name>/`): its `best.keras` checkpoint (the model the export
holds) and its `preprocessor.keras` (the very preprocessing it trained with, loaded, not rebuilt).
Layers are found by their roles in the graph (`cnnapp.models.roles`), so any registered model works.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import keras
import numpy as np

from cnnapp.errors import CnnappError
from cnnapp.models import registry, roles
from cnnapp.tasks import PREPROCESSOR_FILE, load_preprocessor

kind_of = roles.kind_of


def load_run(run_dir: str | Path) -> tuple[keras.Model, keras.Model, dict]:
    """(model, preprocessor, config.json) of a run directory."""
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
    if not (run_dir / PREPROCESSOR_FILE).is_file():
        raise CnnappError(f"RUN_DIR: no {PREPROCESSOR_FILE} (runs of cnnapp before 0.2 lack it; train again). "
                          f"Received: {run_dir}")
    registry()  # registers cnnapp's own layers (ZeroPaddingTokens), which the checkpoint names
    return keras.saving.load_model(str(path), compile=False), load_preprocessor(run_dir), config


def class_name(config: dict, index: int) -> str:
    names = config.get("resolved", {}).get("class_names")
    return names[index] if names else str(index)


# ---------------------------------------------------------------------------- images

def feature_maps(model: keras.Model, pixels: np.ndarray) -> dict[str, np.ndarray]:
    """Each conv block's activation maps (after its ReLU) for one image, by layer name."""
    layers = roles.feature_map_layers(model)
    probe = keras.Model(model.inputs, [layer.output for layer in layers])
    outs = probe([pixels[np.newaxis].astype("float32")], training=False)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    return {layer.name: np.asarray(o)[0] for layer, o in zip(layers, outs)}


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
    layer = roles.first_conv(model)
    kernel = np.asarray(layer.kernel)                     # [kh, kw, in, out]
    tiles = []
    for f in range(kernel.shape[-1]):
        k = kernel[..., f]
        k = (k - k.min()) / (np.ptp(k) or 1.0)
        tiles.append(k if k.shape[-1] == 3 else k[..., 0])
    _grid(tiles, path, f"{layer.name}: {kernel.shape[-1]} filters of {kernel.shape[0]}x{kernel.shape[1]}", "gray")
    return kernel.shape[-1]


def decode_error_reason(error: Exception) -> str:
    """The decoder's own words ('Input is empty.') from under Keras's 'Exception encountered when calling'."""
    from cnnapp.errors import tf_error_reason
    text = getattr(error, "message", None) or str(error)
    found = re.search(r"(?:InvalidArgumentError|ValueError): (.+)", text)
    if found:
        line = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", found.group(1).strip())
        return re.sub(r"\s*\[Op:.*$", "", line)[:160] or type(error).__name__
    return tf_error_reason(error)


def inspect_image(model: keras.Model, preprocessor: keras.Model, image_bytes: bytes, out_dir: Path, *, stem: str,
                  max_maps: int = 32, source: str | None = None) -> dict:
    """Write the filters and this image's feature maps as PNGs; return a summary per layer."""
    import tensorflow as tf
    try:
        pixels = np.asarray(preprocessor(tf.constant([image_bytes])))[0]
    except (tf.errors.InvalidArgumentError, ValueError) as e:
        raise CnnappError(f"INPUTS: not a readable image ({decode_error_reason(e)}). Received: {source or stem}") from None
    out_dir = Path(out_dir)
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
    branches = roles.text_branches(model)
    if not branches:
        raise CnnappError(f"RUN_DIR: not a sentence CNN (no max-over-time pooling). Received: {model.name}")
    pre_pool = [pool.input for _, pool in branches]
    probe = keras.Model(model.inputs, pre_pool + [model.output])
    outs = probe([token_ids[np.newaxis]], training=False)
    maps, probs = [np.asarray(o)[0] for o in outs[:-1]], np.asarray(outs[-1])[0]
    predicted = int(np.argmax(probs))
    kernel = np.asarray(roles.logits_layer(model).kernel)[:, predicted]
    # Windows are counted on the edge-padded sequence: window p covers tokens p - lead ... .
    lead = roles.edge_padding(model)
    found, offset = [], 0
    for (width, _), m in zip(branches, maps):
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


def inspect_sentences(model: keras.Model, preprocessor: keras.Model, config: dict, sentences: list[str], *,
                      top: int = 5) -> list[dict]:
    """N-gram evidence for each sentence, tokenised by the run's own saved vectorizer."""
    import tensorflow as tf
    vocab = preprocessor.layers[-1].get_vocabulary()
    results = []
    for sentence in sentences:
        ids = np.asarray(preprocessor(tf.constant([sentence])))[0]
        length = int(np.count_nonzero(ids))
        tokens = [str(vocab[i]) for i in ids[:length]]
        ev = ngram_evidence(model, ids, tokens, top=top)
        ev["predicted"] = class_name(config, ev["predicted_index"])
        results.append({"sentence": sentence, "tokens": tokens, **ev})
    return results


def inspect_images(model: keras.Model, preprocessor: keras.Model, config: dict, inputs, out_dir: Path) -> dict:
    """{path: inspect_image(...) + predicted class} for image files, folders or globs."""
    from cnnapp.inference.inputs import read_images   # predict's reader, and its errors
    values, paths, errors = read_images(inputs)
    if errors:
        raise CnnappError(f"INPUTS: {errors[0]['error']}. Received: {errors[0]['input']}")
    results = {}
    for data, path in zip(values, paths):
        res = inspect_image(model, preprocessor, data, out_dir, stem=Path(path).stem, source=path)
        res["predicted"] = class_name(config, int(np.argmax(res["probabilities"])))
        results[path] = res
    return results
