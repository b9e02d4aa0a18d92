"""Export a trained classifier as a TensorFlow SavedModel that TF Serving loads unchanged.

One function for every kind of model: the task says which raw inputs the signatures take and
which preprocessing they run (`endpoints`); the layout (`<export_base>/<name>/<version>/`, the
metadata file) is `cnnapp.layout`'s. A version is written to a hidden temporary folder beside it
and renamed into place, so a crash never leaves a half-written version a server could pick up.

Every signature returns `scores` float32 [N, C] and `classes` string [N, C] (the class names in
score order, as TF Serving's classification outputs are named). The first endpoint is
`serving_default` and takes the raw input (`image_bytes` or `sentences`); the others take what
the model takes after preprocessing (`pixels`, `token_ids`). An endpoint may instead be an
`Explainer` (cnnapp.export.explain) with its own inputs and named outputs: the `explain`
signature. `assets.extra/cnnapp.json` (ignored by TF Serving) records the kind, class names, run
facts, the layer table `cnnapp summary` prints (`layers`) and what the explain outputs are (`explain`),
so a server reads them without Keras. `assets.extra/tf_serving_warmup_requests` holds one real
request per signature in TF Serving's warm-up format (TFRecords of PredictionLog), which TF Serving
and `cnnapp serve` replay before a version is AVAILABLE. `assets.extra/litert/` holds the same
network as a LiteRT model for `cnnapp predict` without TensorFlow (cnnapp.export.litert).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

import keras
import tensorflow as tf

from cnnapp import layout
from cnnapp.atomic import sync_tree
from cnnapp.errors import CnnappError
from cnnapp.export.explain import Explainer

log = logging.getLogger(__name__)
STARTED = time.time()   # exports left half-written before this process started are stale


def _scores(model, inputs, tta=None):
    """float32 [N, C] probabilities of the model input, averaged over the test-time augmentation views."""
    views = tta(inputs) if tta else [inputs]
    scores = model(views[0], training=False) if len(views) == 1 else \
        tf.add_n([tf.cast(model(v, training=False), tf.float32) for v in views]) / len(views)
    return tf.cast(scores, tf.float32)


def _outputs(model, inputs, class_names, tta=None):
    scores = _scores(model, inputs, tta)
    classes = tf.tile(tf.constant(class_names)[tf.newaxis, :], [tf.shape(scores)[0], 1])
    return {"scores": scores, "classes": classes}


def layer_table(model: keras.Model) -> list[dict]:
    """`cnnapp summary`'s rows as JSON values (shapes as lists, None for the batch dimension)."""
    from cnnapp.models.summary import summary_rows
    return [{**row, "output_shape": [None if d is None else int(d) for d in row["output_shape"]],
             "activations": int(row["activations"]), "params": int(row["params"]), "macs": int(row["macs"])}
            for row in summary_rows(model)]


WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
WARMUP_SENTENCE = "a short sentence to warm up the model"


def _warmup_value(spec, metadata: dict):
    """One example for a signature input (TensorInfo proto), as a numpy array with the batch
    dimension; None when no generic example exists (a free non-batch dimension)."""
    import numpy as np
    dims = [d.size for d in spec.tensor_shape.dim]
    dtype = tf.as_dtype(spec.dtype)
    if dtype == tf.string:
        if metadata.get("kind") == "image":
            height, width = metadata.get("image_size") or (8, 8)
            pixels = tf.fill([height, width, metadata.get("channels", 1)], tf.constant(128, tf.uint8))
            value = tf.io.encode_png(pixels).numpy()
        else:
            value = WARMUP_SENTENCE.encode()
        return np.full([1] + [max(d, 1) for d in dims[1:]], value, dtype=object)
    if spec.tensor_shape.unknown_rank:
        return None
    if metadata.get("kind") == "image" and len(dims) == 4:    # pixels [N, H, W, C] of free H, W: the model's size
        height, width = metadata.get("image_size") or (8, 8)
        dims = [1, height, width, dims[3] if dims[3] > 0 else metadata.get("channels", 1)]
    if any(d < 0 for d in dims[1:]):
        return None
    return np.zeros([1, *dims[1:]] if dims else [], dtype=dtype.as_numpy_dtype)


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (wire type 2)."""
    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
            n >>= 7
            if not n:
                return bytes(out)
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def predict_log_record(model_name: str, signature_name: str, inputs: dict) -> bytes:
    """A serialized tensorflow.serving.PredictionLog { predict_log { request { model_spec, inputs } } }
    (tensorflow_serving/apis/prediction_log.proto, predict.proto, model.proto field numbers), written
    by hand: tensorflow-serving-api is an optional install, the warm-up file is in every export."""
    spec = _field(1, model_name.encode()) + _field(3, signature_name.encode())     # ModelSpec name, signature_name
    request = _field(1, spec) + b"".join(                                           # PredictRequest model_spec
        _field(2, _field(1, n.encode()) + _field(2, tf.make_tensor_proto(v).SerializeToString()))   # inputs map
        for n, v in sorted(inputs.items()))
    return _field(6, _field(1, request))                                            # PredictionLog.predict_log


def write_warmup_requests(export_dir: Path, *, name: str, metadata: dict) -> int:
    """Write TF Serving's `assets.extra/tf_serving_warmup_requests` for the SavedModel in
    `export_dir`: one PredictRequest per signature, built from the signature's own inputs (an
    encoded image for `image_bytes`, a sentence for `sentences`, zeros for tensors). Returns the
    number of requests written (signatures with a free non-batch dimension are left out)."""
    from tensorflow.core.protobuf import saved_model_pb2
    saved_model = saved_model_pb2.SavedModel.FromString((export_dir / "saved_model.pb").read_bytes())
    graph = next(g for g in saved_model.meta_graphs if "serve" in g.meta_info_def.tags)
    records = []
    for sig_name, sig in sorted(graph.signature_def.items()):
        if sig_name.startswith("__"):
            continue        # __saved_model_init_op is no signature a client calls
        values = {n: _warmup_value(spec, metadata) for n, spec in sig.inputs.items()}
        if any(v is None for v in values.values()):
            log.debug("no warm-up request for signature %s (a free non-batch dimension)", sig_name)
            continue
        records.append(predict_log_record(name, sig_name, values))
    path = export_dir / WARMUP_FILE
    path.parent.mkdir(exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)
    return len(records)


def write_version(archive: keras.export.ExportArchive, *, export_base, name: str, version: int | None,
                  metadata: dict, extra: Callable[[Path], None] | None = None) -> Path:
    """Write `archive` as the next (or given) version of `name`, atomically; return its folder.
    `extra(folder)` writes more files into the version before it is renamed into place (the LiteRT model)."""
    model_dir = Path(export_base) / layout.check_model_name(name)
    model_dir.mkdir(parents=True, exist_ok=True)
    for stale in layout.stale_tmp_dirs(model_dir, older_than=STARTED):   # left by a killed export
        log.info("removing %s, an export that never finished", stale)
        shutil.rmtree(stale, ignore_errors=True)
    version = version or layout.next_version(model_dir)
    final = model_dir / str(version)
    if final.exists():
        raise CnnappError(f"--version: {final} already exists; versions are never overwritten. "
                          f"Received: version={version}")
    tmp = Path(tempfile.mkdtemp(prefix=f"{layout.TMP_PREFIX}{version}-", dir=model_dir))
    try:
        logging.getLogger("tensorflow").setLevel(logging.WARNING)   # not "Assets written to: .tmp-..."
        archive.write_out(str(tmp), verbose=False)
        layout.write_metadata(tmp, {**metadata, "version": version})
        write_warmup_requests(tmp, name=name, metadata=metadata)
        if extra is not None:
            extra(tmp)
        sync_tree(tmp)   # on disk before it is renamed into place: never a version with empty files
        os.chmod(tmp, 0o755)
        os.rename(tmp, final)   # atomic on one filesystem; fails rather than replacing a version
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.debug("exported %s", final)
    return final


def export_classifier(model: keras.Model, *, endpoints: dict[str, tuple[tf.TensorSpec, Callable] | Explainer],
                      track: tuple = (), class_names, export_base, name: str, version: int | None = None,
                      metadata: dict | None = None, tta=None, litert: str = "float") -> Path:
    """Export `model` with one signature per endpoint `{name: (raw input spec, raw -> model input)}`.

    `track` lists the preprocessing layers the endpoints call (their variables and assets, e.g. a
    vocabulary, are saved with the graph). `tta(model_input) -> [views]` averages the scores over
    test-time augmentation views inside the graph, as the run's evaluation did. `litert` ('float', 'int8'
    or 'none') is the LiteRT model written beside it (cnnapp.export.litert).
    """
    class_names = [str(c) for c in class_names]
    archive = keras.export.ExportArchive()
    archive.track(model)
    for obj in track:
        archive.track(obj)
    def endpoint(to_model_input):   # a closure: tf.function would trace a default argument as an input
        return lambda raw: _outputs(model, to_model_input(raw), class_names, tta)

    explain = {}
    for signature, value in endpoints.items():
        if isinstance(value, Explainer):
            archive.add_endpoint(signature, value.fn, input_signature=value.input_signature)
            explain = value.metadata
            continue
        spec, to_model_input = value
        archive.add_endpoint(signature, endpoint(to_model_input), input_signature=[spec])
    meta = {"class_names": class_names, "layers": layer_table(model), "explain": explain or None,
            **(metadata or {})}
    from cnnapp.export.litert import write_litert

    raw = endpoints.get("serving_default")   # (raw input spec, the preprocessing layer it runs)

    def write_extra(folder: Path) -> None:
        write_litert(folder, model=model, scores_fn=lambda x: _scores(model, x, tta), class_names=class_names,
                     metadata=meta, preprocessor=raw[1] if isinstance(raw, tuple) else None, quantize=litert)
    return write_version(archive, export_base=export_base, name=name, version=version, metadata=meta,
                         extra=write_extra)
