"""Load `saved_models/<name>[/<version>]` and answer with its `serving_default` signature.

The kind of model (image or text) is read from the signature's input, so one `predict` serves
both: `image_bytes` (tf.string) takes encoded images, `sentences` (tf.string) takes raw text.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import tensorflow as tf

from cnnapp import layout
from cnnapp.errors import CnnappError, tf_error_reason
from cnnapp.inference.prediction import Prediction  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)
INPUT_KINDS = {"image_bytes": "image", "sentences": "text"}


def resolve_model_dir(path: str | Path, arg: str = "MODEL") -> Path:
    """A version folder (holds saved_model.pb) as it is; a model folder -> its highest version."""
    return layout.resolve_version_dir(path, arg=arg)


class Predictor:
    """>>> Predictor("saved_models/digits").predict([png_bytes])[0].top(3)"""

    def __init__(self, model_path: str | Path, *, signature: str = "serving_default", arg: str = "MODEL"):
        self.model_dir = resolve_model_dir(model_path, arg=arg)
        try:
            self.loaded = tf.saved_model.load(str(self.model_dir))
        except Exception as e:
            raise CnnappError(f"{arg}: cannot load the SavedModel ({str(e).splitlines()[0][:160]}). "
                              f"Received: {self.model_dir}") from None
        if signature not in self.loaded.signatures:
            raise CnnappError(f"--signature: the model has {sorted(self.loaded.signatures)}. Received: {signature}")
        self.fn = self.loaded.signatures[signature]
        inputs = self.fn.structured_input_signature[1]
        if len(inputs) != 1:
            raise CnnappError(f"{arg}: expected a one-input cnnapp signature, found {sorted(inputs)}. "
                              f"Received: {self.model_dir}")
        self.input_name = next(iter(inputs))
        self.kind = INPUT_KINDS.get(self.input_name)
        if self.kind is None:
            raise CnnappError(f"{arg}: signature input {self.input_name!r} is neither image_bytes nor "
                              f"sentences. Received: {self.model_dir}")

    def _call(self, values: list) -> tuple[np.ndarray, np.ndarray]:
        out = self.fn(**{self.input_name: tf.constant(values, dtype=tf.string)})
        return out["scores"].numpy(), out["classes"].numpy()

    def predict(self, values: list, labels: list[str] | None = None, *, chunk: int = 64) -> list[Prediction]:
        """Predict for raw inputs (bytes for images, str for text); a bad input gets `error` set
        and the others are still answered."""
        labels = labels or [str(i) for i in range(len(values))]
        results: list[Prediction] = []
        for start in range(0, len(values), chunk):
            part, names = values[start:start + chunk], labels[start:start + chunk]
            try:
                scores, classes = self._call(part)
                results += [Prediction(n, [c.decode() for c in cl], s.tolist())
                            for n, s, cl in zip(names, scores, classes)]
            except tf.errors.InvalidArgumentError:
                for value, name in zip(part, names):  # find the bad one(s); answer the rest
                    try:
                        scores, classes = self._call([value])
                        results.append(Prediction(name, [c.decode() for c in classes[0]], scores[0].tolist()))
                    except tf.errors.InvalidArgumentError as e:
                        results.append(Prediction(name, error=f"cannot decode input ({tf_error_reason(e)})"))
        return results
