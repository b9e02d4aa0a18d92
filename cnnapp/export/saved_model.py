"""Export a trained classifier as a TensorFlow SavedModel that TF Serving loads unchanged.

Layout: `<export_base>/<name>/<version>/` with integer versions (TF Serving's convention). A
version is written to a hidden temporary folder beside it and renamed into place, so a crash
never leaves a half-written version that a server could pick up.

Signatures (outputs are the same for all: `scores` float32 [N, C] and `classes` string [N, C],
the class names in score order, as TF Serving's classification outputs are named):
- image models: `serving_default` takes `image_bytes` (tf.string [N], JPEG/PNG/BMP/GIF) and runs
  the training `ImageDecoder`; `serving_pixels` takes `pixels` (float32 [N, H, W, C], 0..255).
- text models: `serving_default` takes `sentences` (tf.string [N]) and runs the adapted
  `TextVectorization`; `serving_token_ids` takes the token ids directly.
`assets.extra/cnnapp.json` (ignored by TF Serving) records the kind, class names and run config.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import keras
import tensorflow as tf

from cnnapp import layout
from cnnapp.errors import CnnappError

log = logging.getLogger(__name__)


def _outputs(model, inputs, class_names):
    scores = model(inputs, training=False)
    classes = tf.tile(tf.constant(class_names)[tf.newaxis, :], [tf.shape(scores)[0], 1])
    return {"scores": tf.cast(scores, tf.float32), "classes": classes}


def write_version(archive: keras.export.ExportArchive, *, export_base, name: str, version: int | None,
                  metadata: dict) -> Path:
    """Write `archive` as the next (or given) version of `name`, atomically; return its folder."""
    model_dir = Path(export_base) / layout.check_model_name(name)
    model_dir.mkdir(parents=True, exist_ok=True)
    version = version or layout.next_version(model_dir)
    final = model_dir / str(version)
    if final.exists():
        raise CnnappError(f"--version: {final} already exists; versions are never overwritten. "
                          f"Received: version={version}")
    tmp = Path(tempfile.mkdtemp(prefix=f"{layout.TMP_PREFIX}{version}-", dir=model_dir))
    try:
        archive.write_out(str(tmp), verbose=False)
        layout.write_metadata(tmp, {**metadata, "version": version})
        os.chmod(tmp, 0o755)
        os.rename(tmp, final)   # atomic on one filesystem; fails rather than replacing a version
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("exported %s", final)
    return final


def export_image_classifier(model: keras.Model, *, decoder, class_names, export_base, name: str,
                            version: int | None = None, metadata: dict | None = None) -> Path:
    """Export an image classifier whose input is float pixels 0..255 of the decoder's size."""
    class_names = [str(c) for c in class_names]
    archive = keras.export.ExportArchive()
    archive.track(model)

    def from_bytes(image_bytes):
        return _outputs(model, decoder(image_bytes), class_names)

    def from_pixels(pixels):
        return _outputs(model, decoder.resize_pixels(pixels), class_names)

    archive.add_endpoint("serving_default", from_bytes,
                         input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    archive.add_endpoint("serving_pixels", from_pixels,
                         input_signature=[tf.TensorSpec([None, None, None, decoder.channels], tf.float32,
                                                        name="pixels")])
    meta = {"kind": "image", "class_names": class_names, "input": "image_bytes",
            "image_size": [decoder.height, decoder.width], "channels": decoder.channels, **(metadata or {})}
    return write_version(archive, export_base=export_base, name=name, version=version, metadata=meta)


def export_text_classifier(model: keras.Model, *, vectorizer, class_names, export_base, name: str,
                           version: int | None = None, metadata: dict | None = None) -> Path:
    """Export a sentence classifier with its adapted TextVectorization inside the graph."""
    class_names = [str(c) for c in class_names]
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.track(vectorizer)

    def from_sentences(sentences):
        return _outputs(model, vectorizer(sentences), class_names)

    def from_token_ids(token_ids):
        return _outputs(model, token_ids, class_names)

    archive.add_endpoint("serving_default", from_sentences,
                         input_signature=[tf.TensorSpec([None], tf.string, name="sentences")])
    archive.add_endpoint("serving_token_ids", from_token_ids,
                         input_signature=[tf.TensorSpec([None, model.input_shape[1]], tf.int64,
                                                        name="token_ids")])
    meta = {"kind": "text", "class_names": class_names, "input": "sentences",
            "sequence_length": int(model.input_shape[1]),
            "vocabulary_size": int(vectorizer.vocabulary_size()), **(metadata or {})}
    return write_version(archive, export_base=export_base, name=name, version=version, metadata=meta)
