"""Answer with the export's LiteRT model (`assets.extra/litert/`), without importing TensorFlow.

The SavedModel decodes images and tokenises sentences in its graph; here the same steps run in
numpy (cnnapp.inference.pixels, cnnapp.inference.tokens) and `ai-edge-litert` runs the network on
the pixels or token ids. The interface is `Predictor`'s: `.kind`, `.model_dir`, `.predict(values, labels)`.

>>> LiteRTPredictor("saved_models/digits/1").predict([png_bytes])[0].top(3)
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

import numpy as np

from cnnapp import layout
from cnnapp.errors import CnnappError
from cnnapp.inference.prediction import Prediction

FORMATS = (1,)   # meta.json layouts this runtime reads
# The runtime's C++ start-up line on fd 2 ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.").
_STARTUP_NOISE = re.compile(r"^INFO: (Created TensorFlow Lite .*delegate|Initialized TensorFlow Lite runtime)")


def _startup_lines_dropped():
    """fd 2 filtered while the interpreter starts: its start-up line dropped, anything else kept."""
    from cnnapp.quiet import fd2_filtered
    return fd2_filtered(lambda line: bool(_STARTUP_NOISE.match(line)))


def has_litert(version_dir: str | Path) -> bool:
    return (Path(version_dir) / layout.LITERT_META).is_file()


class LiteRTPredictor:
    def __init__(self, version_dir: str | Path, *, arg: str = "MODEL", num_threads: int | None = None):
        self.model_dir = Path(version_dir)
        folder = self.model_dir / layout.LITERT_DIR
        try:
            self.meta = json.loads((self.model_dir / layout.LITERT_META).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise CnnappError(f"{arg}: cannot read its LiteRT metadata ({e}); use --runtime savedmodel. "
                              f"Received: {self.model_dir}") from None
        if self.meta.get("format") not in FORMATS or self.meta.get("kind") not in ("image", "text"):
            raise CnnappError(f"{arg}: its LiteRT model is of a format this version does not read "
                              f"(format {self.meta.get('format')!r}); use --runtime savedmodel. Received: {self.model_dir}")
        self.kind = self.meta["kind"]
        self.class_names = [str(c) for c in self.meta["class_names"]]
        from ai_edge_litert.interpreter import Interpreter
        try:
            with _startup_lines_dropped():
                self.interpreter = Interpreter(model_path=str(folder / self.meta["model"]), num_threads=num_threads)
        except (OSError, ValueError, RuntimeError) as e:
            raise CnnappError(f"{arg}: cannot load its LiteRT model ({str(e).splitlines()[0][:160]}); use "
                              f"--runtime savedmodel. Received: {self.model_dir}") from None
        self.input_index = self.interpreter.get_input_details()[0]["index"]
        self.input_dtype = self.interpreter.get_input_details()[0]["dtype"]
        self.output_index = self.interpreter.get_output_details()[0]["index"]
        self.shape = None
        if self.kind == "text":
            from cnnapp.inference.tokens import Tokenizer
            vocabulary = (folder / self.meta["vocabulary"]).read_text(encoding="utf-8").split("\n")[:self.meta["vocabulary_size"]]
            self.tokenizer = Tokenizer(vocabulary=vocabulary, sequence_length=self.meta["sequence_length"],
                                       standardize=self.meta["standardize"], ngrams=self.meta.get("ngrams"))
        else:
            self.tokenizer = None

    @property
    def sequence_length(self) -> int | None:
        return self.meta.get("sequence_length")

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Model input [N, ...] -> probabilities [N, classes]."""
        if batch.shape != self.shape:
            self.interpreter.resize_tensor_input(self.input_index, list(batch.shape), strict=False)
            with _startup_lines_dropped() if self.shape is None else contextlib.nullcontext():
                self.interpreter.allocate_tensors()    # the first one applies the XNNPACK delegate
            self.shape = batch.shape
        self.interpreter.set_tensor(self.input_index, batch.astype(self.input_dtype, copy=False))
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output_index).copy()

    def _decode(self, values, labels) -> tuple[list, list[Prediction | None]]:
        from cnnapp.inference.pixels import DecodeError, decode
        height, width = self.meta["image_size"]
        inputs, slots = [], []
        for value, label in zip(values, labels):
            try:
                inputs.append(decode(value, height=height, width=width, channels=self.meta["channels"],
                                     resample=self.meta.get("resample", "bilinear")))
                slots.append(None)
            except DecodeError as e:
                slots.append(Prediction(label, error=f"cannot decode input ({e})"))
        return inputs, slots

    def predict(self, values: list, labels: list[str] | None = None, *, chunk: int = 64) -> list[Prediction]:
        """Predict for raw inputs (bytes for images, str for text); an image that cannot be decoded gets
        `error` set and the others are still answered."""
        labels = labels or [str(i) for i in range(len(values))]
        results: list[Prediction] = []
        for start in range(0, len(values), chunk):
            part, names = values[start:start + chunk], labels[start:start + chunk]
            if self.kind == "image":
                inputs, slots = self._decode(part, names)
                batch = np.stack(inputs) if inputs else None
            else:
                batch, slots = self.tokenizer(part), [None] * len(part)
            scores = iter(self.run(batch) if batch is not None else ())
            results += [slot or Prediction(name, self.class_names, next(scores).tolist())
                        for name, slot in zip(names, slots)]
        return results
