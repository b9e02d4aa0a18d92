"""A LiteRT (TensorFlow Lite) model beside every export: `<version>/assets.extra/litert/`.

    model.tflite      the network on the model's own input: pixels float32 [N, H, W, C] in 0..255, or
                      token ids int64 [N, sequence_length]; output `probabilities` float32 [N, classes]
                      (with the run's test-time augmentation averaged inside, as in the SavedModel)
    meta.json         what a runtime needs beside it: class names, the input, and the preprocessing the
                      SavedModel runs in its graph (image size, channels, resize; the text standardization,
                      split, n-grams and sequence length), the quantization, the converter's version
    vocabulary.txt    sentence models: the vocabulary, one token a line (line i is token id i)

TF Serving reads only `saved_model.pb`, `variables/` and `assets/` to load a version, and of
`assets.extra/` only `tf_serving_warmup_requests`; a sub-folder of `assets.extra/` is ignored, so the
SavedModel it serves is unchanged. The folder is written inside the hidden temporary version and
renamed with it: a version has its LiteRT model from the moment it exists.

`cnnapp predict` runs it with `ai-edge-litert` (cnnapp.inference.litert), decoding and tokenising
without TensorFlow. `quantize="int8"` writes dynamic-range quantization (int8 weights, float
activations): about a quarter of the size.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import keras
import tensorflow as tf

from cnnapp.config import STANDARDIZE
from cnnapp.layout import LITERT_DIR, LITERT_META

log = logging.getLogger(__name__)
MODEL_FILE, VOCABULARY_FILE = "model.tflite", "vocabulary.txt"
QUANTIZATIONS = ("float", "int8", "none")   # `--litert`: what to write (none: no LiteRT model)
FORMAT = 1                                  # meta.json's layout version


def runtime_meta(*, kind: str, metadata: dict, preprocessor) -> tuple[dict, list[str] | None]:
    """(meta.json's preprocessing facts, the vocabulary or None), from the layer the raw-input signature
    runs (an ImageDecoder or a TextVectorization) and the export's metadata; a ValueError says why this
    export has no LiteRT equivalent."""
    config = preprocessor.get_config() if hasattr(preprocessor, "get_config") else {}
    if kind == "image":
        if not {"height", "width", "channels"} <= set(config):
            raise ValueError(f"the image preprocessing {type(preprocessor).__name__} is not an ImageDecoder")
        resample = config.get("resample", "bilinear")   # decoders saved before `resample` resize bilinearly
        if resample not in ("bilinear", "area"):
            raise ValueError(f"resample={resample!r} is not reproduced outside TensorFlow")
        return {"input": "pixels", "image_size": [int(config["height"]), int(config["width"])],
                "channels": int(config["channels"]), "resample": resample, "scale": [0.0, 255.0]}, None
    if not isinstance(preprocessor, keras.layers.TextVectorization):
        raise ValueError(f"the text preprocessing {type(preprocessor).__name__} is not a TextVectorization")
    if config.get("split") != "whitespace" or config.get("output_mode") != "int":
        raise ValueError(f"split={config.get('split')!r}, output_mode={config.get('output_mode')!r}: only "
                         f"whitespace/int is reproduced outside TensorFlow")
    ngrams = config.get("ngrams")
    if ngrams is not None and not isinstance(ngrams, int):
        raise ValueError(f"ngrams={ngrams!r}: only an int (widths 1..n) is reproduced outside TensorFlow")
    standardize = metadata.get("standardize", "none")
    if standardize not in STANDARDIZE:      # cnnapp.inference.tokens reproduces each of them
        raise ValueError(f"standardize={standardize!r} is not reproduced outside TensorFlow")
    vocabulary = [str(t) for t in preprocessor.get_vocabulary()]
    if any("\n" in t for t in vocabulary):
        raise ValueError("a vocabulary token holds a line break")
    return {"input": "token_ids", "sequence_length": int(config["output_sequence_length"]),
            "standardize": standardize, "split": "whitespace", "ngrams": ngrams,
            "vocabulary_size": len(vocabulary), "vocabulary": VOCABULARY_FILE}, vocabulary


def convert(scores_fn, input_spec: tf.TensorSpec, *, quantize: str = "float") -> bytes:
    """A LiteRT flatbuffer of `scores_fn(model_input) -> probabilities` (TFLite built-in ops only: the
    runtime has no TensorFlow kernels)."""
    fn = tf.function(lambda x: {"probabilities": scores_fn(x)}, input_signature=[input_spec])
    concrete = fn.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], fn)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]   # dynamic range: int8 weights, float activations
    # The converter saves the function on the way and logs TensorFlow's CollectionDef warnings about it.
    loggers = [logging.getLogger(n) for n in ("absl", "tensorflow")]
    previous = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with _converter_log_filtered():
            return converter.convert()
    finally:
        for logger, level in zip(loggers, previous):
            logger.setLevel(level)


def _converter_log_filtered():
    """The converter's C++ info and warning lines on fd 2 ("Ignored output_format.", "Starting new session",
    "Number of eligible GPUs") are dropped; anything else it writes there (an error) still reaches stderr."""
    from cnnapp.quiet import fd2_filtered
    return fd2_filtered()


def write_litert(version_dir: Path, *, model: keras.Model, scores_fn, class_names, metadata: dict, preprocessor,
                 quantize: str = "float") -> Path | None:
    """Write `assets.extra/litert/` into a (temporary) version folder: `scores_fn(model input)` converted, and
    what `preprocessor` (the layer the raw-input signature runs) does, for a runtime to redo. None when
    `quantize` is 'none' or the model has no LiteRT equivalent (logged: the SavedModel is still exported
    and predict uses it)."""
    if quantize == "none":
        return None
    if quantize not in QUANTIZATIONS:
        from cnnapp.errors import CnnappError
        raise CnnappError(f"--litert: choose from {', '.join(QUANTIZATIONS)}. Received: {quantize}")
    kind = metadata.get("kind")
    try:
        facts, vocabulary = runtime_meta(kind=kind, metadata=metadata, preprocessor=preprocessor)
        spec = model.inputs[0]
        input_spec = tf.TensorSpec([None, *spec.shape[1:]], spec.dtype, name=facts["input"])
        flatbuffer = convert(scores_fn, input_spec, quantize=quantize)
    except Exception as e:   # noqa: BLE001 — a model the converter cannot take is still exported
        log.warning("no LiteRT model for this export (%s); predict will use the SavedModel",
                    str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__)
        return None
    folder = Path(version_dir) / LITERT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MODEL_FILE).write_bytes(flatbuffer)
    if vocabulary is not None:
        (folder / VOCABULARY_FILE).write_text("\n".join(vocabulary) + "\n", encoding="utf-8")
    meta = {"format": FORMAT, "kind": kind, "model": MODEL_FILE, "quantization": quantize,
            "class_names": [str(c) for c in class_names], "output": "probabilities",
            "input_dtype": input_spec.dtype.name, "input_shape": [None, *input_spec.shape[1:]],
            "tta": metadata.get("tta", "none"), "converter": f"tensorflow {tf.__version__}", **facts}
    (Path(version_dir) / LITERT_META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return folder
