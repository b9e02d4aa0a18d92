"""See what a trained CNN learned: first-layer filters, feature maps and Grad-CAM for images, and the
n-grams that won each branch's max-over-time pooling for sentences.

Everything comes from the `explain` function (cnnapp.export.explain), the one the export holds as
its `explain` signature and the server's `:explain` route and page call: on a run directory
(`runs/<name>/`) it is built from the `best.keras` checkpoint and the `preprocessor.keras` the run
trained with, as the export builds it; on an exported model (`saved_models/<name>[/<version>]`) it
is the SavedModel's signature itself. Layers are found by their roles in the graph
(`cnnapp.models.roles`), so any registered model works.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import keras
import numpy as np

from cnnapp.errors import CnnappError
from cnnapp.models import import_models, roles
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
    import_models()  # registers cnnapp's own layers (ZeroPaddingTokens), which the checkpoint names
    return keras.saving.load_model(str(path), compile=False), load_preprocessor(run_dir), config


# ---------------------------------------------------------------------------- images

def feature_maps(model: keras.Model, pixels: np.ndarray) -> dict[str, np.ndarray]:
    """Each conv block's activation maps (after its ReLU) for one image, by layer name: a plain Keras
    probe, independent of the explain function (tests/test_explain.py compares the two)."""
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


def write_image_explanation(outputs: dict, i: int, explain_meta: dict, out_dir: Path, *, stem: str,
                            max_maps: int = 32) -> dict:
    """Write example `i`'s filters, feature maps and Grad-CAM overlay as PNGs; return a summary."""
    from cnnapp.explain import encode_png, gradcam_overlay, image_explanation, upscale
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    res = image_explanation(outputs, i, explain_meta, max_maps=max_maps, images="array")
    kernel = outputs["filters"][i]
    tiles = []
    for f in range(kernel.shape[-1]):
        k = kernel[..., f]
        k = (k - k.min()) / (np.ptp(k) or 1.0)
        tiles.append(k if k.shape[-1] == 3 else k[..., 0])
    filters_plot = out_dir / "filters.png"
    _grid(tiles, filters_plot, f"{explain_meta.get('filters_layer')}: {kernel.shape[-1]} filters of "
                               f"{kernel.shape[0]}x{kernel.shape[1]}", "gray")
    layers = {}
    for layer in res["layers"]:
        name, shown = layer["name"], layer["maps"]
        path = out_dir / f"{stem}_{name}.png"
        _grid([np.asarray(m["values"]) for m in shown], path,
              f"{name}: {layer['shape'][0]}x{layer['shape'][1]}, the {len(shown)} most active of "
              f"{layer['shape'][-1]} maps", labels=[m["index"] for m in shown])
        layers[name] = {"shape": layer["shape"], "active_fraction": layer["active_fraction"],
                        "strongest_maps": [m["index"] for m in shown[:5]], "plot": str(path)}
    heatmaps = {}
    for key in ("gradcam", "hirescam"):
        cam = res[key]
        cam_path = out_dir / f"{stem}_{key}_{_safe(cam['class'])}.png"
        cam_path.write_bytes(encode_png(upscale(gradcam_overlay(outputs["pixels"][i], outputs[key][i]))))
        heatmaps[key] = {"class": cam["class"], "class_index": cam["class_index"], "layer": cam["layer"],
                         "peak": cam["peak"], "empty": cam["empty"], "plot": str(cam_path)}
    return {"probabilities": res["scores"], "predicted": res["predicted"], "layers": layers,
            "filters_plot": str(filters_plot), **heatmaps}


def _safe(text: str) -> str:
    """A class name as part of a file name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:40] or "class"


# ---------------------------------------------------------------------------- sentences

def ngram_evidence(model: keras.Model, token_ids: np.ndarray, tokens: list[str], *, top: int = 5) -> dict:
    """For one vectorised sentence: the predicted class and the n-grams whose filters added most to
    its logit, through the same explain function (here fed token ids, with `tokens` as their words)."""
    import tensorflow as tf
    from cnnapp.explain import text_explanation
    from cnnapp.export.explain import text_explainer
    if not roles.text_branches(model):
        raise CnnappError(f"RUN_DIR: not a sentence CNN (no max-over-time pooling). Received: {model.name}")
    vocabulary = [""] * int(max(int(np.max(token_ids)) + 1, 2))
    for i, word in zip(token_ids, tokens):
        vocabulary[int(i)] = word

    class _Ids:   # the ids are already vectorised: a pass-through "vectorizer" that knows their words
        def __call__(self, ids):
            return ids

        def get_vocabulary(self):
            return vocabulary

    num_classes = int(model.outputs[0].shape[-1])
    built = text_explainer(model, _Ids(), [str(c) for c in range(num_classes)])
    outputs = {k: np.asarray(v) for k, v in built.fn(tf.constant(np.asarray(token_ids)[np.newaxis])).items()}
    return text_explanation(outputs, 0, built.metadata, top=top)


def inspect_sentences(explainer: "Explainer", sentences: list[str], *, top: int = 5) -> list[dict]:
    """N-gram evidence for each sentence, from the explain function (tokenised by the model's own vectorizer)."""
    from cnnapp.explain import text_explanation
    if explainer.kind != "text":
        raise CnnappError(f"INPUTS: {explainer.source} is an image model; give image files. Received: {sentences[:1]}")
    outputs = explainer(sentences)
    return [{"sentence": sentence, **text_explanation(outputs, i, explainer.metadata, top=top)}
            for i, sentence in enumerate(sentences)]


def inspect_images(explainer: "Explainer", inputs, out_dir: Path, *, class_name: str | None = None) -> dict:
    """{path: summary} for image files, folders or globs: plots of filters, maps and Grad-CAM.

    `class_name` picks the class Grad-CAM explains (default: each image's top class).
    """
    from cnnapp.inference.inputs import read_images   # predict's reader, and its errors
    if explainer.kind != "image":
        raise CnnappError(f"INPUTS: {explainer.source} is a sentence model; give sentences. Received: {inputs[:1]}")
    class_index = explainer.class_index(class_name)
    values, paths, errors = read_images(inputs)
    if errors:
        raise CnnappError(f"INPUTS: {errors[0]['error']}. Received: {errors[0]['input']}")
    results = {}
    for data, path in zip(values, paths):
        outputs = explainer([data], class_index=class_index, label=path)
        results[path] = write_image_explanation(outputs, 0, explainer.metadata, out_dir, stem=Path(path).stem)
    return results


def decode_error_reason(error: Exception) -> str:
    """The decoder's own words ('Input is empty.') from under Keras's 'Exception encountered when calling'."""
    from cnnapp.errors import tf_error_reason
    text = getattr(error, "message", None) or str(error)
    found = re.search(r"(?:InvalidArgumentError|ValueError): (.+)", text)
    if found:
        line = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", found.group(1).strip())
        return re.sub(r"\s*\[Op:.*$", "", line)[:160] or type(error).__name__
    return tf_error_reason(error)


class Explainer:
    """The explain function of a run's checkpoint (built as the export builds it) or of an export's signature.

    >>> explainer = open_explainer("runs/digits")          # or "saved_models/digits[/1]"
    >>> outputs = explainer([png_bytes])                    # {output name: numpy array}
    """

    def __init__(self, fn, *, kind: str, class_names: list[str], metadata: dict, source: str, keep=None):
        self.fn, self.kind, self.class_names, self.metadata, self.source = fn, kind, class_names, metadata, source
        self._keep = keep     # a loaded SavedModel must stay alive while its signature is called

    def class_index(self, name: str | None) -> int:
        if name is None:
            return -1
        if name not in self.class_names:
            raise CnnappError(f"--class: not a class of this model ({', '.join(self.class_names[:20])}). "
                              f"Received: {name!r}")
        return self.class_names.index(name)

    def __call__(self, raw: list, *, class_index: int = -1, label: str = "") -> dict:
        import tensorflow as tf
        try:
            if self.kind == "image":
                out = self.fn(image_bytes=tf.constant(raw, tf.string),
                              class_index=tf.fill([len(raw)], tf.constant(class_index, tf.int32)))
            else:
                out = self.fn(sentences=tf.constant(raw, tf.string))
        except (tf.errors.InvalidArgumentError, ValueError) as e:
            raise CnnappError(f"INPUTS: not a readable image ({decode_error_reason(e)}). Received: {label}") from None
        return {k: np.asarray(v) for k, v in out.items()}


def open_explainer(path: str | Path) -> Explainer:
    """A run directory (runs/<name>: its best.keras and preprocessor.keras) or an exported model
    (saved_models/<name>[/<version>]: its `explain` signature)."""
    from cnnapp import layout
    path = Path(path)
    if not (path / "best.keras").is_file() and (layout.has_saved_model(path) or layout.version_dirs(path)):
        return _export_explainer(layout.resolve_version_dir(path, "RUN_DIR"))
    model, preprocessor, config = load_run(path)
    from cnnapp.export.explain import image_explainer, text_explainer
    names = config.get("resolved", {}).get("class_names") or [str(i) for i in range(model.outputs[0].shape[-1])]
    kind = kind_of(model)
    if kind == "image":
        built = image_explainer(model, preprocessor, names)
        fn = lambda image_bytes, class_index: built.fn(image_bytes, class_index)  # noqa: E731
    else:
        built = text_explainer(model, preprocessor.layers[-1], names)
        fn = lambda sentences: built.fn(sentences)  # noqa: E731
    return Explainer(fn, kind=kind, class_names=list(names), metadata=built.metadata, source=str(path))


def _export_explainer(version_dir: Path) -> Explainer:
    import tensorflow as tf
    from cnnapp import layout
    from cnnapp.export.explain import SIGNATURE
    meta = layout.read_metadata(version_dir)
    loaded = tf.saved_model.load(str(version_dir))
    if SIGNATURE not in loaded.signatures or not meta.get("explain"):
        raise CnnappError(f"RUN_DIR: {version_dir} has no '{SIGNATURE}' signature (exported before cnnapp had one, "
                          f"or an ensemble); inspect its run directory or export it again. Received: {version_dir}")
    return Explainer(loaded.signatures[SIGNATURE], kind=meta.get("kind", "image"),
                     class_names=list(meta.get("class_names", [])), metadata=meta["explain"], source=str(version_dir),
                     keep=loaded)
